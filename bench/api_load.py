"""Load on the API: N concurrent clients send retrieval-only queries (SciFact) for a fixed time.

Starts ``rag serve`` on an index of SciFact (build it with ``rag index build --input
../shared/datasets/scifact --index data/scifact-index``), rate limit off, then runs the clients in this
process (asyncio + httpx, a closed loop: each client sends its next query when the last is answered).
Prints requests/s, p50/p95/p99 and errors; writes bench/results/api_load.json.

    python bench/api_load.py --index data/scifact-index --clients 32 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATASETS, print_table, read_jsonl, write_result
from tests.servers import start_api


async def client_loop(
    client: httpx.AsyncClient, questions: list[str], offset: int, stop_at: float, out: list[tuple[float, int]]
) -> None:
    i = offset
    while time.monotonic() < stop_at:
        question = questions[i % len(questions)]
        i += 1
        start = time.perf_counter()
        try:
            r = await client.post("/query", json={"question": question, "generate": False, "top_k": 10})
            status = r.status_code
        except httpx.HTTPError:
            status = -1
        out.append((time.perf_counter() - start, status))


async def run_load(base_url: str, questions: list[str], clients: int, seconds: float) -> list[tuple[float, int]]:
    results: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(client, questions, k * 37, stop_at, results) for k in range(clients)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("data/scifact-index"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--warmup", type=float, default=10)
    args = parser.parse_args()
    questions = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")]
    log = Path(tempfile.mkdtemp()) / "server.log"
    server = start_api(args.index, log, {"RAG_API_RATE_LIMIT_PER_S": "0"})
    try:
        asyncio.run(run_load(server.base_url, questions, args.clients, args.warmup))
        started = time.perf_counter()
        results = asyncio.run(run_load(server.base_url, questions, args.clients, args.seconds))
        wall = time.perf_counter() - started
        metrics = httpx.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()
    latencies = np.array([t for t, s in results if s == 200]) * 1000
    statuses = Counter(s for _, s in results)
    errors = sum(n for s, n in statuses.items() if s != 200)
    row = {
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": len(results),
        "req_per_s": len(results) / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "errors": errors,
    }
    print_table([row], list(row))
    stage_lines = [line for line in metrics.splitlines() if line.startswith("rag_query_stage_ms_sum")]
    write_result(
        "api_load",
        {
            "index": str(args.index),
            "query": {"generate": False, "top_k": 10},
            "result": row,
            "statuses": {str(k): v for k, v in statuses.items()},
            "server_stage_ms_sums": stage_lines,
            "goal": {"errors": 0, "p95_ms": 150},
        },
    )


if __name__ == "__main__":
    main()
