"""Memory of ``rag serve --workers N`` on one memory-mapped snapshot: what each extra worker costs.

For each N, starts ``rag serve --workers N`` on the index, sends every scifact question once over new
connections (so that every worker pages the snapshot in), then reads each process's ``/proc/PID/smaps``:
RSS, PSS (shared pages divided among the processes that map them) and USS (pages only that process
has), in all and for the mappings of the index's own files. A worker that copied the snapshot would show
its arrays in USS; one that shares the pages shows them in RSS at full size and in PSS divided by N.

    python -m bench.serve_memory --index data/scifact-index --workers 1,2,3
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATASETS, print_table, read_jsonl, write_result
from tests.servers import free_port, rag_command, start_server

MIB = 1024 * 1024


MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")  # a mapping's header: address perms offset dev inode [path]
FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss"}


def smaps(pid: int, index_dir: Path) -> dict[str, float]:
    """RSS, PSS and USS of one process, MiB, in all and for the mappings of files under ``index_dir``."""
    totals = dict.fromkeys(("rss", "pss", "uss", "index_rss", "index_pss", "index_uss"), 0.0)
    inside = False
    prefix = str(index_dir.resolve())
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if MAPPING.match(line):
                parts = line.split(maxsplit=5)
                inside = len(parts) == 6 and parts[5].strip().startswith(prefix)
                continue
            field, _, rest = line.partition(":")
            name = FIELDS.get(field)
            if name is None:
                continue
            mib = float(rest.split()[0]) / 1024  # the kernel writes kB
            totals[name] += mib
            if inside:
                totals[f"index_{name}"] += mib
    return totals


def measure(index: Path, workers: int, questions: list[str]) -> dict[str, Any]:
    port = free_port()
    argv = [*rag_command(), "serve", "--index", str(index), "--port", str(port), "--log-level", "warning"]
    argv += ["--workers", str(workers)]
    log = Path(tempfile.mkdtemp()) / "serve.log"
    server = start_server(argv, f"http://127.0.0.1:{port}/readyz", log, {"RAG_API_RATE_LIMIT_PER_S": "0"})
    try:
        started = time.perf_counter()
        for question in questions:  # a new connection each: the kernel spreads them over the workers
            body = {"question": question, "generate": False, "top_k": 10}
            response = httpx.post(f"{server.base_url}/query", json=body, timeout=60)
            response.raise_for_status()
        elapsed = time.perf_counter() - started
        supervisor = psutil.Process(server.proc.pid)
        children = supervisor.children(recursive=True)
        processes = children if workers > 1 else [supervisor]
        serving = [p for p in processes if "resource_tracker" not in " ".join(p.cmdline())]
        per_process = [smaps(p.pid, index) for p in serving]
        total = {key: sum(p[key] for p in per_process) for key in per_process[0]}
        # the supervisor holds imports but no snapshot; it is counted in the total
        supervisor_pss = smaps(supervisor.pid, index)["pss"] if workers > 1 else 0.0
    finally:
        server.stop()
    index_bytes = sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) / MIB
    return {
        "workers": workers,
        "index MiB on disk": round(index_bytes, 1),
        "RSS per worker MiB": round(total["rss"] / len(per_process), 1),
        "USS per worker MiB": round(total["uss"] / len(per_process), 1),
        "index RSS per worker MiB": round(total["index_rss"] / len(per_process), 1),
        "index PSS per worker MiB": round(total["index_pss"] / len(per_process), 1),
        "index USS per worker MiB": round(total["index_uss"] / len(per_process), 1),
        "PSS total MiB": round(total["pss"] + supervisor_pss, 1),
        "questions/s (one client)": round(len(questions) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("data/scifact-index"))
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--name", default="serve_memory", help="bench/results/NAME.json")
    args = parser.parse_args()
    questions = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")]
    rows = [measure(args.index, int(n), questions) for n in args.workers.split(",")]
    base = rows[0]
    for row in rows[1:]:
        extra = row["workers"] - base["workers"]
        row["PSS per extra worker MiB"] = round((row["PSS total MiB"] - base["PSS total MiB"]) / extra, 1)
    print_table(rows, list(rows[-1]))
    command = " ".join(["python -m bench.serve_memory", *sys.argv[1:]])
    write_result(args.name, {"command": command, "index": str(args.index), "rows": rows})


if __name__ == "__main__":
    main()
