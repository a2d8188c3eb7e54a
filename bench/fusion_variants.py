"""Final-stage variants over the same candidates: rank fusion, score fusion and MaxSim reranking.

For one dataset and its index, every test query's dense, BM25 and MaxSim rankings (MaxSim over the
RRF top 100) are computed once; each variant then orders the same candidates, so differences come
from the fusion alone. nDCG@10 per variant, and its gain over RRF.

    python -m bench.fusion_variants --index data/cisi-index --dataset ../shared/datasets/cisi

Prints a table and writes ``bench/results/fusion_variants_<dataset>.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from bench.common import write_result
from eval.datasets import load_dataset
from eval.metrics import document_scores, retrieval_metrics
from eval.runner import ensure_index
from rag.fusion import rrf
from rag.pipeline import Pipeline
from rag.score_fusion import score_fusion
from rag.settings import Settings

Ranking = list[tuple[str, float]]
Paths = dict[str, Ranking]


def _ids(ranking: Ranking) -> list[str]:
    return [c for c, _ in ranking]


def _rank_fusion(weight: float) -> Callable[[Paths], Ranking]:
    def fuse(paths: Paths) -> Ranking:
        lists = {p: _ids(paths[p]) for p in ("dense", "bm25")}
        if weight:
            lists["maxsim"] = _ids(paths["maxsim"])
        return [(f.id, f.score) for f in rrf(lists, weights={"maxsim": weight})]

    return fuse


def _minmax(ranking: Ranking) -> dict[str, float]:
    scores = [s for _, s in ranking]
    lo, hi = min(scores, default=0.0), max(scores, default=0.0)
    return {c: (s - lo) / (hi - lo) if hi > lo else 1.0 for c, s in ranking}


def _score_fusion(maxsim_weight: float) -> Callable[[Paths], Ranking]:
    def fuse(paths: Paths) -> Ranking:
        rows = {c: i for i, c in enumerate({c for r in paths.values() for c, _ in r})}
        names = {i: c for c, i in rows.items()}
        as_rows = {p: [(rows[c], s) for c, s in r] for p, r in paths.items()}
        fused = score_fusion(as_rows, [rows[c] for c in _ids(paths["maxsim"])], {"maxsim": maxsim_weight})
        return [(names[f.id], f.score) for f in fused]

    return fuse


def _minmax_fusion(paths: Paths) -> Ranking:
    norm = {p: _minmax(r) for p, r in paths.items()}
    totals = {c: sum(n.get(c, 0.0) for n in norm.values()) for c in _ids(paths["maxsim"])}
    return sorted(totals.items(), key=lambda item: -item[1])


def _rerank_top(k: int) -> Callable[[Paths], Ranking]:
    def rerank(paths: Paths) -> Ranking:
        order = _ids(_rank_fusion(0.0)(paths))[:100]
        maxsim_rank = {c: i for i, c in enumerate(_ids(paths["maxsim"]))}
        top = sorted(order[:k], key=lambda c: maxsim_rank.get(c, len(maxsim_rank)))
        merged = top + order[k:]
        return [(c, float(len(merged) - i)) for i, c in enumerate(merged)]

    return rerank


VARIANTS: dict[str, Callable[[Paths], Ranking]] = {
    "rrf (off)": _rank_fusion(0.0),
    "maxsim replace": lambda paths: paths["maxsim"],
    "rrf + maxsim, w 1 (fuse)": _rank_fusion(1.0),
    "rrf + maxsim, w 2": _rank_fusion(2.0),
    "z-score sum (scores)": _score_fusion(1.0),
    "z-score sum, maxsim w 2": _score_fusion(2.0),
    "min-max sum": _minmax_fusion,
    "maxsim reranks rrf top 10": _rerank_top(10),
    "maxsim reranks rrf top 30": _rerank_top(30),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="built from the dataset's corpus if missing")
    parser.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    longest = max(len(q.text) for q in dataset.queries)
    settings = Settings().model_copy(update={"max_question_chars": max(Settings().max_question_chars, longest)})
    snapshot = ensure_index(dataset, args.index, settings, show_progress=True)
    pipeline = Pipeline(snapshot, settings)
    chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in VARIANTS}
    for query in tqdm(dataset.queries, desc="queries", unit="q", dynamic_ncols=True):
        rankings = pipeline.retrieve(query.text, top_k=10, alternative=True).rankings
        paths = {p: rankings[p] for p in ("dense", "bm25", "maxsim")}
        for name, variant in VARIANTS.items():
            runs[name][query.id] = document_scores(variant(paths), chunk_to_doc)
    ndcg = {name: retrieval_metrics(dataset.qrels, run, ["ndcg@10"])[0]["ndcg@10"] for name, run in runs.items()}
    base = ndcg["rrf (off)"]
    print(f"{dataset.name}, {len(dataset.queries)} queries\n{'variant':28s} {'nDCG@10':>8s} {'vs rrf':>8s}")
    for name, value in ndcg.items():
        print(f"{name:28s} {value:8.4f} {(value - base) * 100:+8.2f}")
    write_result(
        f"fusion_variants_{dataset.name}", {"dataset": dataset.name, "queries": len(dataset.queries), "ndcg@10": ndcg}
    )


if __name__ == "__main__":
    main()
