"""Query-path latency per stage, one query at a time after warm-up, and local generation's first token.

    python bench/query_latency.py --index DIR --dataset scifact [--generate-index DIR --generate-n 20]

Retrieval: every query of the dataset through ``Pipeline.retrieve`` (encode, dense, BM25, RRF, MaxSim
of the fused top 100, store fetch). Generation: the first token of the local generator, measured from
the question (retrieval, evidence and prompt processing included). Prints tables, writes
bench/results/query_latency.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import DATASETS, peak_rss_mib, percentiles_ms, print_table, read_jsonl, write_result
from rag.index.snapshot import Snapshot
from rag.pipeline import Pipeline
from rag.settings import Settings

STAGES = ["encode", "dense", "bm25", "rrf", "maxsim", "fetch", "retrieval_total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--generate-index", type=Path, default=None, help="index for the generation run")
    parser.add_argument("--generate-dataset", default="squad-dev-a")
    parser.add_argument("--generate-n", type=int, default=20)
    args = parser.parse_args()

    settings = Settings()
    pipeline = Pipeline(Snapshot.load(args.index, settings), settings)
    queries = [q["text"] for q in read_jsonl(DATASETS / args.dataset / "queries.jsonl")]
    for q in queries[: args.warmup]:
        pipeline.retrieve(q)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for q in queries:
        timings = pipeline.retrieve(q).timings_ms
        for stage in STAGES:
            samples[stage].append(timings.get(stage, 0.0) / 1000)
    retrieval = {s: percentiles_ms(v) for s, v in samples.items()}
    without_encode = [t - e for t, e in zip(samples["retrieval_total"], samples["encode"], strict=True)]
    retrieval["retrieval_without_encode"] = percentiles_ms(without_encode)
    rows = [{"stage": s, "p50 ms": v["p50"], "p95 ms": v["p95"], "mean ms": v["mean"]} for s, v in retrieval.items()]
    print(
        f"\n{args.dataset}: {len(queries)} queries over {len(pipeline.snapshot)} chunks, "
        f"candidate depth {settings.candidate_depth}, maxsim mode {settings.maxsim_mode}"
    )
    print_table(rows, ["stage", "p50 ms", "p95 ms", "mean ms"])

    generation: dict[str, Any] | None = None
    if args.generate_index is not None:
        gen_pipeline = Pipeline(Snapshot.load(args.generate_index, settings), settings)
        questions = [q["text"] for q in read_jsonl(DATASETS / args.generate_dataset / "queries.jsonl")]
        gen_pipeline.answer(questions[0])  # loads the model
        first, total, prompt_tokens = [], [], []
        for question in questions[1 : 1 + args.generate_n]:
            answer = gen_pipeline.answer(question)
            first.append(answer.timings_ms["first_token"] / 1000)
            total.append(answer.timings_ms["total"] / 1000)
            prompt_tokens.append(sum(gen_pipeline.generator().count_tokens(e.snippet) for e in answer.evidence))
        generation = {
            "first_token_ms": percentiles_ms(first),
            "total_ms": percentiles_ms(total),
            "n": len(first),
            "evidence_tokens_mean": sum(prompt_tokens) / len(prompt_tokens),
            "generator": gen_pipeline.generator().name,
        }
        print(
            f"\nlocal generation ({generation['generator']}, {len(first)} questions): first token p50 "
            f"{generation['first_token_ms']['p50']:.0f} ms, p95 {generation['first_token_ms']['p95']:.0f} ms; "
            f"whole answer p50 {generation['total_ms']['p50']:.0f} ms"
        )
    write_result(
        "query_latency",
        {
            "dataset": args.dataset,
            "queries": len(queries),
            "chunks": len(pipeline.snapshot),
            "settings": {
                "candidate_depth": settings.candidate_depth,
                "maxsim_mode": settings.maxsim_mode,
                "query_blas_threads": settings.query_blas_threads,
            },
            "retrieval_ms": retrieval,
            "generation": generation,
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
