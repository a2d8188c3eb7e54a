"""Which ColBERT head and MaxSim options to default to: nDCG@10 of MaxSim over the same RRF candidates.

For one dataset and its (raw, un-adapted) index: the fused top-100 of every test query is fixed once;
then each variant reranks those candidates with MaxSim, so differences come from the head and the
query weights alone. Heads are trained on pseudo-queries from the corpus (never the test queries).

    python -m bench.adapt_sweep --index data/scifact-index --dataset ../shared/datasets/scifact
    python -m bench.adapt_sweep --index data/squad-index --dataset ../shared/datasets/squad-dev-a --limit 1000

Prints a table and writes ``bench/results/adapt_sweep_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_result
from eval.datasets import load_dataset
from eval.metrics import METRICS, document_scores, retrieval_metrics
from eval.runner import sample_queries
from indexer.adapt import AdaptOptions, initial_projection, make_training_data, train_projection
from rag.encode.projection import project_tokens
from rag.index.snapshot import Snapshot
from rag.maxsim import maxsim_packed
from rag.pipeline import Pipeline
from rag.settings import Settings

HEADS: dict[str, dict[str, Any] | None] = {
    "raw token vectors": None,
    "128-d principal directions, untrained": {"dim": 128, "max_steps": 0},
    "128-d, 1000 steps at 5e-4": {"dim": 128, "max_steps": 1000, "learning_rate": 5e-4},
    "128-d, 400 steps at 1e-4": {"dim": 128, "max_steps": 400, "learning_rate": 1e-4},
    "384-d, 400 steps at 1e-4 (default)": {},
}
WEIGHTS = {"uniform": ("uniform", False), "idf": ("idf", False), "skip punctuation": ("uniform", True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="a seeded sample of N test queries (0: all)")
    args = parser.parse_args()
    settings = Settings()
    snapshot = Snapshot.load(args.index, settings)
    dataset = load_dataset(args.dataset)
    pipelines = {
        name: Pipeline(
            snapshot,
            settings.model_copy(update={"maxsim_query_weights": mode, "maxsim_skip_punctuation": skip}),
            adapted=False,
        )
        for name, (mode, skip) in WEIGHTS.items()
    }
    base = pipelines["uniform"]
    for p in pipelines.values():
        p.encoder = base.encoder
    row_of = {str(c): i for i, c in enumerate(snapshot.chunk_ids)}
    chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))
    fixed = []
    queries = sample_queries(dataset.queries, args.limit, seed=13)
    for query in queries:
        retrieval = base.retrieve(query.text)
        tokens = base.encoder.encode_questions([query.text]).tokens[0]
        rows = np.array([row_of[c] for c, _ in retrieval.rankings["rrf"]], np.int64)
        weights = {name: p.query_weights(query.text, len(tokens)) for name, p in pipelines.items()}
        fixed.append((query.id, rows, tokens, weights, retrieval.rankings["rrf"]))
    qrels = {q.id: dataset.qrels[q.id] for q in queries}
    mv = snapshot.multivector
    offsets = np.asarray(mv.offsets)

    def ndcg(weight: np.ndarray | None, weighting: str) -> float:
        vectors = mv.codes if mv.codec.name == "float16" else mv.decode_range(0, mv.n_vectors).astype(np.float16)
        if weight is not None:  # the whole index once, in blocks (as `rag adapt` re-projects it)
            vectors = np.empty((mv.n_vectors, len(weight)), np.float16)
            for start in range(0, mv.n_vectors, 1 << 16):
                block = mv.decode_range(start, start + (1 << 16))
                vectors[start : start + len(block)] = project_tokens(block, weight)
        run = {}
        for qid, rows, tokens, weights, _ in fixed:
            candidates = np.concatenate([vectors[offsets[r] : offsets[r + 1]] for r in rows])
            packed = np.concatenate([[0], np.cumsum(offsets[rows + 1] - offsets[rows])])
            query = tokens if weight is None else project_tokens(tokens, weight)
            scores = maxsim_packed(query, candidates, packed, weights[weighting])
            order = np.lexsort((np.arange(len(rows)), -scores))
            ranking = [(str(snapshot.chunk_ids[rows[i]]), float(scores[i])) for i in order]
            run[qid] = document_scores(ranking, chunk_to_doc)
        return float(retrieval_metrics(qrels, run, METRICS)[0]["ndcg@10"])

    rrf_run = {qid: document_scores(ranking, chunk_to_doc) for qid, _, _, _, ranking in fixed}
    rows_out: list[dict[str, Any]] = [
        {
            "variant": "rrf (no MaxSim)",
            "weights": "-",
            "ndcg@10": retrieval_metrics(qrels, rrf_run, METRICS)[0]["ndcg@10"],
        }
    ]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:  # unused: the sweep runs on the embedded engine
        data = make_training_data(snapshot, base.encoder, settings, AdaptOptions(show_progress=False), Path(work))
    passages = snapshot.multivector
    data_s = time.perf_counter() - started
    for name, overrides in HEADS.items():
        train_s, steps = 0.0, 0
        weight = None
        if overrides is not None:
            options = replace(AdaptOptions(show_progress=False, checkpoint_every_s=1e9, minutes=120), **overrides)
            if options.max_steps == 0:
                weight = initial_projection(passages, options)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    weight, steps, train_s, _ = train_projection(passages, data, options, Path(tmp) / "state.pt")
        for weighting in WEIGHTS if overrides is None or not overrides else ("uniform",):
            rows_out.append(
                {
                    "variant": name,
                    "weights": weighting,
                    "ndcg@10": ndcg(weight, weighting),
                    "train_s": train_s,
                    "steps": steps,
                }
            )
            print(
                f"{name:40s} {weighting:17s} nDCG@10 {rows_out[-1]['ndcg@10']:.4f}  train {train_s:5.0f} s", flush=True
            )
    result = {
        "dataset": dataset.name,
        "queries": len(queries),
        "pseudo_queries": len(data),
        "data_s": data_s,
        "rows": rows_out,
    }
    print(f"\n{dataset.name}: {len(data)} pseudo-queries made in {data_s:.0f} s")
    print("| variant | query weights | nDCG@10 | training s |\n|---|---|---:|---:|")
    for row in rows_out:
        print(f"| {row['variant']} | {row['weights']} | {row['ndcg@10']:.4f} | {row.get('train_s', 0):.0f} |")
    write_result(f"adapt_sweep_{dataset.name}", result)


if __name__ == "__main__":
    main()
