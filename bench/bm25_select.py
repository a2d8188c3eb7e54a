"""BM25 top 100 at scale, the search path (compiled sum and bounded selection, rag/index/bm25_select.py)
against the exhaustive one: latency, and whether the rankings and scores are the same, bit for bit.

Real text replicated with a marker token per copy (bench/common.py ``replicated_passages``), the
default BM25 settings, 1,000 scifact and squad-dev-a questions one at a time.

    python -m bench.bm25_select --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bm25_choices import latency_queries, replicated_index
from bench.common import percentiles_ms, print_table, write_result
from rag.index.bm25 import top_n


def measure(n_chunks: int, depth: int = 100) -> dict[str, Any]:
    index, tokenize, made = replicated_index(n_chunks)
    queries = [tokenize(q) for q in latency_queries()]
    _ = index.impacts  # computed once per snapshot, not per query
    search_s, exhaustive_s, different = [], [], 0
    for query in queries[:20]:
        index.search(query, depth)
    for query in queries:
        t = time.perf_counter()
        rows, scores = index.search(query, depth)
        search_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        all_rows, all_scores = index.scores(query)
        expected_rows, expected_scores = top_n(all_scores, all_rows, depth)
        exhaustive_s.append(time.perf_counter() - t)
        same = rows.tolist() == expected_rows.tolist() and scores.tobytes() == expected_scores.tobytes()
        different += not same
    return {
        **made,
        "queries": len(queries),
        "search ms": percentiles_ms(search_s),
        "exhaustive ms": percentiles_ms(exhaustive_s),
        "queries whose top 100 differ": different,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    results = [measure(int(size)) for size in args.sizes.split(",")]
    rows = [
        {
            "chunks": r["chunks"],
            "build s": round(r["build_s"], 1),
            "exhaustive p50 / p95 ms": f"{r['exhaustive ms']['p50']:.2f} / {r['exhaustive ms']['p95']:.2f}",
            "search p50 / p95 ms": f"{r['search ms']['p50']:.2f} / {r['search ms']['p95']:.2f}",
            "differ": r["queries whose top 100 differ"],
        }
        for r in results
    ]
    print_table(rows, list(rows[0]))
    write_result("bm25_select", {"command": " ".join(["python -m bench.bm25_select", *sys.argv[1:]]), "sizes": results})


if __name__ == "__main__":
    main()
