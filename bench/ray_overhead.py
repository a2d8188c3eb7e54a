"""The Ray path's overhead on this machine: the same index build and the same eval, in one process and on
a local Ray cluster (RAG_COMPUTE=ray, 2 encoder actors with one torch thread each).

    python bench/ray_overhead.py [--dataset squad-dev-a] [--limit-docs 0] [--queries 300]

Prints a table and writes bench/results/ray_overhead.json. On 2 cores no speed-up is expected (the
actors share the cores the single process uses); what is measured is what Ray costs: cluster start,
actor start (each loads the encoder), and moving vectors through the object store.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import DATASETS, print_table, write_result
from eval.runner import EvalOptions, run_eval
from indexer.loaders import load_documents
from indexer.writer import IndexWriter
from rag.compute.ray_cluster import ray_module
from rag.index.snapshot import Snapshot
from rag.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="squad-dev-a")
    parser.add_argument("--limit-docs", type=int, default=0, help="first N documents only (0: all)")
    parser.add_argument("--queries", type=int, default=300, help="eval sample (seeded)")
    args = parser.parse_args()

    local = Settings(final_stage_queries=0)  # the final-stage choice is not what is compared
    on_ray = local.model_copy(update={"compute": "ray"})
    documents = load_documents(DATASETS / args.dataset)
    if args.limit_docs:
        documents = documents[: args.limit_docs]
    start = time.perf_counter()
    ray_module(on_ray)
    cluster_s = time.perf_counter() - start

    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-ray-"))
    rows = []
    try:
        for name, settings in (("local", local), ("ray", on_ray)):
            index = workdir / name
            start = time.perf_counter()
            with IndexWriter(index, settings, show_progress=False) as writer:
                writer.upsert(documents, args.dataset)
            build_s = time.perf_counter() - start
            chunks = len(Snapshot.load(index, settings))
            start = time.perf_counter()
            options = EvalOptions(DATASETS / args.dataset, workdir / f"{name}-eval", index, args.queries)
            report = run_eval(replace(options, show_progress=False), settings)
            eval_s = time.perf_counter() - start
            rows.append(
                {
                    "compute": name,
                    "chunks": chunks,
                    "build_s": build_s,
                    "passages_per_s": chunks / build_s,
                    "eval_s": eval_s,
                    "queries": report["n_queries"],
                    "ndcg@10": report["stages"][report["final_stage"]]["ndcg@10"],
                }
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows, ["compute", "chunks", "build_s", "passages_per_s", "eval_s", "queries", "ndcg@10"])
    print(f"local Ray cluster started in {cluster_s:.1f} s (not in build_s)")
    write_result(
        "ray_overhead",
        {"dataset": args.dataset, "cluster_start_s": cluster_s, "actors": on_ray.ray_actors, "rows": rows},
    )


if __name__ == "__main__":
    main()
