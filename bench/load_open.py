"""Open-loop load on ``POST /query``: arrival rates stepped up until p90 passes 150 ms, ours and the peer.

The load generator is Debian's ``wrk`` (C, one thread: a few percent of one core at these rates), driven
by a Lua script that paces requests to a fixed arrival rate (a schedule of send times, kept whatever the
answers take, over up to ``--connections`` connections, two per request a second) and sends the scifact
questions in turn. Each step runs ``--seconds``; a rate is *sustained* when wrk delivered ≥ 95 % of it
with p90 ≤ 150 ms and no error. The same steps are run against ``rag serve`` on defaults (retrieval
only, ``top_k`` 10) and against LangChain's EnsembleRetriever behind a minimal FastAPI app
(bench/peer_app.py), one at a time.

    python -m bench.load_open --index data/scifact-index --rates 25,50,100,150,200,250,300
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATASETS, print_table, read_jsonl, write_result
from tests.servers import Server, free_port, rag_command, start_server

P90_GOAL_MS = 150.0

LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rag_timespec;
int clock_gettime(int clock, rag_timespec *tp);
]]
local now_ts = ffi.new("rag_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

local bodies = BODIES
local interval_ms = 1000.0 / RATE
local next_at = nil
local turn = 0

function delay()
  -- the next free slot of the schedule: arrivals keep their times however long the answers take
  local now = now_ms()
  if next_at == nil then next_at = now end
  local wait = next_at - now
  next_at = next_at + interval_ms
  if wait < 0 then return 0 end
  return wait
end

function request()
  turn = turn + 1
  return wrk.format("POST", "/query", {["Content-Type"] = "application/json"}, bodies[(turn % #bodies) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def lua_script(questions: list[str], rate: float, top_k: int) -> str:
    bodies = [json.dumps({"question": q, "generate": False, "top_k": top_k}) for q in questions]
    table = "{" + ",".join(json.dumps(b) for b in bodies) + "}"  # JSON strings are Lua strings here
    return LUA.replace("BODIES", table).replace("RATE", repr(float(rate)))


def run_step(base_url: str, questions: list[str], rate: float, seconds: float, connections: int, top_k: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua_script(questions, rate, top_k))
    # Enough connections for the arrivals in flight, few enough that none idles past uvicorn's 5 s keep-alive
    # (a connection the server closed counts as a read error): each sends about every 2 s or more often.
    connections = max(2, min(connections, int(2 * rate)))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", handle.name, base_url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    Path(handle.name).unlink()
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    delivered = result["requests"] / (result["duration_us"] / 1e6)
    return {
        "offered req/s": rate,
        "delivered req/s": round(delivered, 1),
        "requests": result["requests"],
        "errors": errors,
        **{k: round(result[k], 1) for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")},
        "sustained": delivered >= 0.95 * rate and result["p90_ms"] <= P90_GOAL_MS and errors == 0,
    }


def step_up(name: str, server: Server, questions: list[str], args: argparse.Namespace) -> dict[str, Any]:
    run_step(server.base_url, questions, args.rates[0], args.warmup, args.connections, args.top_k)  # warm up
    steps = []
    for rate in args.rates:
        step = run_step(server.base_url, questions, rate, args.seconds, args.connections, args.top_k)
        steps.append(step)
        print(f"{name}: {rate:g} req/s offered → {step['delivered req/s']} delivered, p90 {step['p90_ms']} ms")
        if step["p90_ms"] > P90_GOAL_MS:
            break
    best = max((s["offered req/s"] for s in steps if s["sustained"]), default=0.0)
    return {"system": name, "steps": steps, "sustained req/s": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("data/scifact-index"))
    parser.add_argument("--rates", default="25,50,100,150,200,250,300,400")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="rag serve --workers")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for rag serve (e.g. RAG_QUERY_CACHE_SIZE=0)"
    )
    parser.add_argument("--name", default="load_open", help="bench/results/NAME.json")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    questions = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")]
    logs = Path(tempfile.mkdtemp())
    env = {"RAG_API_RATE_LIMIT_PER_S": "0", **dict(pair.split("=", 1) for pair in args.env)}
    results = []
    port = free_port()
    argv = [*rag_command(), "serve", "--index", str(args.index), "--port", str(port), "--log-level", "warning"]
    argv += ["--workers", str(args.workers)] if args.workers > 1 else []
    label = f"rag-late, defaults, {args.workers} worker{'s' if args.workers > 1 else ''}"
    label += "".join(f", {pair}" for pair in args.env)
    server = start_server(argv, f"http://127.0.0.1:{port}/readyz", logs / "rag.log", env)
    try:
        results.append(step_up(label, server, questions, args))
    finally:
        server.stop()
    if not args.skip_peer:
        port = free_port()
        argv = [sys.executable, "-m", "bench.peer_app", "--index", str(args.index), "--port", str(port)]
        peer = start_server(argv, f"http://127.0.0.1:{port}/healthz", logs / "peer.log")
        try:
            results.append(step_up("LangChain EnsembleRetriever (FastAPI, uvicorn)", peer, questions, args))
        finally:
            peer.stop()
    for result in results:
        print(f"\n{result['system']}: highest sustained rate {result['sustained req/s']:g} req/s")
        print_table(result["steps"], list(result["steps"][0]))
    if len(results) == 2 and results[1]["sustained req/s"]:
        print(f"\nours ÷ peer, sustained: {results[0]['sustained req/s'] / results[1]['sustained req/s']:.1f}×")
    command = " ".join(["python -m bench.load_open", *sys.argv[1:]])
    write_result(args.name, {"command": command, "index": str(args.index), "results": results})


if __name__ == "__main__":
    main()
