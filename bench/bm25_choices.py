"""Choose the BM25 defaults by nDCG@10 (ranx), and time BM25 queries at 100k chunks.

    python bench/bm25_choices.py [--latency-chunks 100000]

Quality: every variant × tokeniser option on scifact and squad-dev-a, whole documents (title + text),
beside rank_bm25 over str.split (what LangChain's BM25Retriever does). Speed: p50/p95 of one query
at a time over N chunks of real text (sentence pairs of scifact and squad-dev-a, repeated with a
marker when the corpora hold fewer; labelled in the output). Prints tables, writes
bench/results/bm25_choices.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ranx import Qrels, Run, evaluate

from bench.common import (
    DATASETS,
    RESULTS,
    percentiles_ms,
    print_table,
    read_jsonl,
    read_qrels,
    replicated_passages,
    write_result,
)
from rag.index.bm25 import BM25Index, BM25Params
from rag.index.bm25_tokenizer import make_tokenizer
from rag.settings import Settings

VARIANTS = [
    ("okapi", 1.5, 0.75),  # rank_bm25's defaults
    ("okapi", 1.2, 0.75),
    ("lucene", 1.2, 0.75),  # Lucene / Elasticsearch / bm25s defaults
    ("lucene", 0.9, 0.4),  # Anserini's defaults
]
TOKENISERS = [(False, "none"), (True, "none"), (False, "english"), (True, "english")]


def ndcg_for(dataset: str, rankings: dict[str, dict[str, float]]) -> dict[str, float]:
    qrels = read_qrels(DATASETS / dataset / "qrels" / "test.tsv")
    run = {q: r for q, r in rankings.items() if q in qrels}
    return evaluate(Qrels(qrels), Run(run), ["ndcg@10", "recall@100"])


def quality() -> list[dict]:
    rows = []
    for dataset in ("scifact", "squad-dev-a"):
        docs = read_jsonl(DATASETS / dataset / "corpus.jsonl")
        qrels = read_qrels(DATASETS / dataset / "qrels" / "test.tsv")
        queries = [q for q in read_jsonl(DATASETS / dataset / "queries.jsonl") if q["_id"] in qrels]
        ids = [d["_id"] for d in docs]
        texts = [f"{d['title']} {d['text']}" for d in docs]
        for stop, stem in [(None, "split"), *TOKENISERS]:
            tokenize = (lambda t: t.split()) if stem == "split" else make_tokenizer(bool(stop), stem)
            corpus = [tokenize(t) for t in texts]
            variants = [("okapi", 1.5, 0.75)] if stem == "split" else VARIANTS
            for variant, k1, b in variants:
                index = BM25Index.build(corpus, BM25Params(variant, k1, b))  # type: ignore[arg-type]
                rankings = {}
                for q in queries:
                    r, s = index.search(tokenize(q["text"]), 100)
                    rankings[q["_id"]] = {ids[i]: float(v) for i, v in zip(r, s, strict=True)} or {ids[0]: 0.0}
                metrics = ndcg_for(dataset, rankings)
                rows.append(
                    {
                        "dataset": dataset,
                        "tokeniser": "str.split (LangChain)"
                        if stem == "split"
                        else f"stopwords={bool(stop)} stem={stem}",
                        "variant": f"{variant} k1={k1} b={b}",
                        "ndcg@10": metrics["ndcg@10"],
                        "recall@100": metrics["recall@100"],
                    }
                )
    return rows


def replicated_index(n_chunks: int) -> tuple[BM25Index, Callable[[str], list[str]], dict[str, Any]]:
    """BM25 with the default settings over ``n_chunks`` passages of real text (replicated_passages), its
    tokeniser, and how it was made (chunks, real text, copies, build seconds)."""
    passages, real, copies = replicated_passages(n_chunks)
    settings = Settings()  # the defaults this bench chose
    tokenize = make_tokenizer(settings.bm25_stopwords, settings.bm25_stemmer)
    start = time.perf_counter()
    corpus = [tokenize(p) for p in passages]
    index = BM25Index.build(corpus, BM25Params(settings.bm25_variant, settings.bm25_k1, settings.bm25_b))
    made = {"chunks": len(passages), "real_text_chunks": min(real, n_chunks), "repeated_copies": copies}
    return index, tokenize, {**made, "build_s": time.perf_counter() - start}


def latency_queries() -> list[str]:
    """The 300 scifact and first 700 squad-dev-a questions."""
    queries = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")]
    return queries + [q["text"] for q in read_jsonl(DATASETS / "squad-dev-a" / "queries.jsonl")[:700]]


def latency(n_chunks: int) -> dict:
    """Build time, one-query-at-a-time latency and size on disk of BM25 over ``n_chunks`` passages of real text."""
    index, tokenize, made = replicated_index(n_chunks)
    queries = latency_queries()
    for q in queries[:20]:
        index.search(tokenize(q), 100)
    samples = []
    for q in queries:
        t = time.perf_counter()
        index.search(tokenize(q), 100)
        samples.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return {
        **made,
        "queries": len(queries),
        "latency_ms": percentiles_ms(samples),
        "bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-chunks", type=int, default=100_000)
    parser.add_argument("--latency-only", action="store_true", help="skip the quality grid, keep its last result")
    args = parser.parse_args()
    if args.latency_only:
        previous = json.loads((RESULTS / "bm25_choices.json").read_text())
        rows = previous["quality"]
    else:
        rows = quality()
    print_table(rows, ["dataset", "tokeniser", "variant", "ndcg@10", "recall@100"])
    speed = latency(args.latency_chunks)
    print(
        f"\nBM25 query latency over {speed['chunks']} chunks ({speed['real_text_chunks']} distinct real passages, "
        f"{speed['repeated_copies']} marked repeats): p50 {speed['latency_ms']['p50']:.2f} ms, "
        f"p95 {speed['latency_ms']['p95']:.2f} ms (goal p50 <= 5 ms); build {speed['build_s']:.1f} s"
    )
    mean: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        mean.setdefault((row["tokeniser"], row["variant"]), []).append(row["ndcg@10"])
    best = max(mean, key=lambda key: float(np.mean(mean[key])))
    print(f"best mean nDCG@10 over both sets: {best[0]}, {best[1]} ({np.mean(mean[best]):.4f})")
    write_result(
        "bm25_choices",
        {
            "quality": rows,
            "latency": speed,
            "best": {"tokeniser": best[0], "variant": best[1], "mean_ndcg@10": float(np.mean(mean[best]))},
        },
    )


if __name__ == "__main__":
    main()
