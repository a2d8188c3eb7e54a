"""Retrieval metrics through ranx, and document-level rankings from passage-level ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ranx import Qrels, Run, evaluate

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def document_scores(ranking: Sequence[tuple[str, float]], chunk_to_doc: Mapping[str, str]) -> dict[str, float]:
    """A document's score is the max over its passages' scores."""
    scores: dict[str, float] = {}
    for chunk_id, score in ranking:
        doc = chunk_to_doc[chunk_id]
        if doc not in scores or score > scores[doc]:
            scores[doc] = score
    return scores


def retrieval_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = METRICS,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean of each metric, per-query values) over every query in ``qrels``; a query with no
    retrieved document scores 0 rather than being dropped."""
    run = {q: (dict(run[q]) if run.get(q) else {"__nothing__": 0.0}) for q in qrels}
    ranx_qrels = Qrels({q: dict(d) for q, d in qrels.items()})
    ranx_run = Run(run)
    means = evaluate(ranx_qrels, ranx_run, list(metrics), make_comparable=True)
    if not isinstance(means, dict):  # ranx answers a bare number when asked for one metric
        means = {metrics[0]: means}
    per_query = {
        m: dict(zip(ranx_run.keys(), map(float, ranx_run.scores[m].values()), strict=True))
        if isinstance(ranx_run.scores.get(m), dict)
        else {}
        for m in metrics
    }
    return {m: float(means[m]) for m in metrics}, per_query
