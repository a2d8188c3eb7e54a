"""Choosing an index's final stage without labels, from held-out inverse-cloze pseudo-queries.

For a seeded sample of passages, one sentence becomes a query and its passage is scored as if that
sentence were not in it: its dense vector, BM25 score and token vectors come from the rest of the
passage. The query is then about its passage without repeating it word for word — closer to a real
information need than a copied sentence, which every path finds. Each candidate final stage (RRF alone,
and every MaxSim mode) ranks the queries through the real recipe (:func:`rag.retrieval.retrieve`, over
an engine that swaps the held-out passage in); the score is nDCG@10 of the passage's document.

The choice starts at RRF and climbs a ladder (:data:`LADDER`): a mode replaces the current choice only
when its paired gain over it on these queries is clear of their noise (mean gain minus ``MARGIN_SE``
standard errors above 0). The choice must never be worse than RRF on a collection nobody tuned for,
so doubt keeps the safer rung. Where the ladder ends on ``fuse`` or ``scores``, MaxSim's weight in it
(1) is challenged the same way by :data:`WEIGHTS`. Validated on the developer sets in docs/final-stage.md.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.pseudo_queries import PseudoQuery, inverse_cloze_queries
from indexer.writer import IndexWriter
from rag.index.engine import LocalEngine
from rag.index.manifest import FinalStageChoice
from rag.index.qdrant_engine import QdrantEngine
from rag.objects import Filters, MaxSimMode, Stage
from rag.pipeline import Pipeline
from rag.retrieval import MODE_STAGES, Ranking, Recipe, restaged, retrieve
from rag.settings import Settings

MARGIN_SE = 2.0  # standard errors of the mean gain a mode needs over the current choice (~97.7 % one-sided)
# The order modes challenge the current choice, RRF first. scores leads: it had the best worst case on
# the developer sets (docs/final-stage.md); fuse and replace then take over only where clearly better.
LADDER: tuple[MaxSimMode, ...] = ("scores", "fuse", "replace")
# MaxSim weights that challenge weight 1 once fuse or scores is chosen, in this order: 2 and 3 lifted
# fuse on scifact and squad-dev-a but lowered it on cisi (docs/final-stage.md), so each index tells.
WEIGHTS: tuple[float, ...] = (2.0, 0.5)
WEIGHTED: tuple[MaxSimMode, ...] = ("fuse", "scores")
CUTOFF = 10  # nDCG@10, as evaluation reports


@dataclass(frozen=True)
class HeldOutPassage:
    """A sampled passage as it scores without its query sentence."""

    row: int
    document: str
    dense: np.ndarray  # (dim,)
    bm25_tokens: list[str]
    tokens: np.ndarray  # (n, dim) token vectors as the writer would store them


class HeldOutEngine:
    """The local engine with one passage replaced by its held-out form (same row, new scores)."""

    def __init__(self, inner: LocalEngine | QdrantEngine, held: HeldOutPassage) -> None:
        self.inner = inner
        self.held = held

    def scope(self, filters: Filters | None) -> Any:
        return self.inner.scope(filters)

    def dense(self, queries: np.ndarray, n: int, scope: Any) -> list[Ranking]:
        found = self.inner.dense(queries, n, scope)
        return [_swapped(r, self.held.row, float(q @ self.held.dense), n) for q, r in zip(queries, found, strict=True)]

    def bm25(self, question: str, n: int, scope: Any) -> Ranking:
        snapshot = self.inner.snapshot
        score = snapshot.sparse.score_outside(snapshot.bm25_tokenize(question), self.held.bm25_tokens)
        return _swapped(self.inner.bm25(question, n, scope), self.held.row, score if score > 0 else None, n)

    def maxsim(self, query_tokens: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> Ranking:
        others = candidates[candidates != self.held.row]
        ranking = self.inner.maxsim(query_tokens, others, weights)
        if len(others) == len(candidates):
            return ranking
        score = self.inner.maxsim_outside(query_tokens, self.held.tokens, weights)
        return _swapped(ranking, self.held.row, score, len(candidates))


def _swapped(ranking: Ranking, row: int, score: float | None, n: int) -> Ranking:
    """``ranking`` with ``row`` at ``score`` (left out when None), best first, at most ``n``."""
    kept = [(r, s) for r, s in ranking if r != row]
    if score is not None:
        kept.append((row, score))
        kept.sort(key=lambda item: -item[1])  # stable: an equal score ranks after the ones already there
    return kept[:n]


def document_ndcg(ranking: Ranking, doc_ids: np.ndarray, relevant: str, cutoff: int = CUTOFF) -> float:
    """nDCG@cutoff of one relevant document, passages ranked by ``ranking`` and counted per document."""
    seen: set[str] = set()
    for row, _ in ranking:
        document = str(doc_ids[row])
        if document in seen:
            continue
        seen.add(document)
        if document == relevant:
            return 1.0 / math.log2(len(seen) + 1)
        if len(seen) >= cutoff:
            break
    return 0.0


def held_out_queries(pipeline: Pipeline, n_queries: int, seed: int) -> list[tuple[PseudoQuery, HeldOutPassage]]:
    """Up to ``n_queries`` inverse-cloze queries (sentence removed from the passage), seeded."""
    snapshot = pipeline.snapshot
    rng = random.Random(seed)
    live = snapshot.live_rows().tolist()
    rows = sorted(rng.sample(live, min(len(live), 2 * n_queries)))
    chunk_ids = [str(snapshot.chunk_ids[r]) for r in rows]
    stored = snapshot.store.get_chunks(chunk_ids, snapshot.generation)
    present = [(r, stored[c]) for r, c in zip(rows, chunk_ids, strict=True) if c in stored]
    chunks = dict(present)
    texts = [c.text for _, c in present]
    no_titles = [""] * len(present)  # titles repeat across a document's passages: sentences only
    queries = inverse_cloze_queries([r for r, _ in present], no_titles, texts, [False] * len(present), rng, 0.0)
    queries = queries[:n_queries]
    rest = []
    for query in queries:
        chunk = chunks[query.row]
        start, end = query.removed
        body = (chunk.text[:start] + " " + chunk.text[end:]).strip()
        rest.append(f"{chunk.title}\n{body}" if chunk.title else body)
    encoded = pipeline.encoder.encode(rest)
    tokens = pipeline.passage_tokens(rest, encoded)
    doc_ids = np.asarray(snapshot.doc_ids)
    return [
        (
            query,
            HeldOutPassage(
                query.row, str(doc_ids[query.row]), encoded.dense[i], snapshot.bm25_tokenize(rest[i]), tokens[i]
            ),
        )
        for i, query in enumerate(queries)
    ]


def candidate(mode: str, weight: float = 1.0) -> str:
    """A candidate final stage's name: the mode, and MaxSim's weight where it is not 1 (``fuse@2``)."""
    return mode if weight == 1.0 else f"{mode}@{weight:g}"


def stage_scores(pipeline: Pipeline, n_queries: int, seed: int, show_progress: bool = False) -> dict[str, list[float]]:
    """Per candidate final stage (``off`` = RRF, each MaxSim mode, and fuse and scores at each of
    :data:`WEIGHTS`), each held-out query's nDCG@10."""
    held = held_out_queries(pipeline, n_queries, seed)
    questions = pipeline.encoder.encode_questions([q.text for q, _ in held])
    recipe = replace(Recipe.from_settings(pipeline.settings), maxsim_mode="off")
    recipe = replace(recipe, weights={**recipe.weights, Stage.MAXSIM: 1.0})  # the rungs' weight; WEIGHTS challenge it
    weighted = {w: replace(recipe, weights={**recipe.weights, Stage.MAXSIM: w}) for w in WEIGHTS}
    doc_ids = np.asarray(pipeline.snapshot.doc_ids)
    names: Mapping[str, str] = {"off": Stage.RRF, **MODE_STAGES}
    scores: dict[str, list[float]] = {name: [] for name in names}
    scores.update({candidate(mode, w): [] for w in WEIGHTS for mode in WEIGHTED})
    for i, (query, passage) in enumerate(
        tqdm(held, desc="choosing the final stage", unit="q", disable=not show_progress, dynamic_ncols=True)
    ):
        engine = HeldOutEngine(pipeline.engine, passage)
        question = pipeline.query_input(query.text, questions.dense[i], questions.tokens[i])
        ranked = retrieve(engine, question, recipe, alternative=True)
        for mode, stage in names.items():
            scores[mode].append(document_ndcg(ranked.stages.get(stage, []), doc_ids, passage.document))
        maxsim_ran = Stage.MAXSIM in ranked.stages  # not when no path found a candidate
        for w, weighted_recipe in weighted.items():
            for mode in WEIGHTED:
                ranking = restaged(ranked.stages, mode, weighted_recipe) if maxsim_ran else []
                scores[candidate(mode, w)].append(document_ndcg(ranking, doc_ids, passage.document))
    return scores


def choose(scores: Mapping[str, list[float]], margin_se: float = MARGIN_SE) -> tuple[MaxSimMode, float, str]:
    """A challenge ladder from RRF (``off``): each mode of :data:`LADDER` in turn replaces the current
    choice only if its paired gain over it on the held-out queries is clear of noise (mean minus
    ``margin_se`` standard errors above 0); then, if that is fuse or scores, each of :data:`WEIGHTS`
    challenges MaxSim's weight 1 in it the same way. Returns the mode, the weight and why, in words."""
    current, mode, weight = "off", "off", 1.0
    steps: list[str] = []

    def challenge(name: str) -> bool:
        if name not in scores or len(scores[name]) < 2:
            return False
        gain = np.asarray(scores[name], np.float64) - np.asarray(scores[current], np.float64)
        mean, se = float(gain.mean()), float(gain.std(ddof=1) / math.sqrt(len(gain)))
        won = mean - margin_se * se > 0
        against = "rrf" if current == "off" else current
        steps.append(f"{name} vs {against} {mean * 100:+.2f} ± {se * 100:.2f} ({'taken' if won else 'kept'})")
        return won

    for rung in LADDER:
        if challenge(rung):
            current = mode = rung
    if mode in WEIGHTED:
        for w in WEIGHTS:
            if challenge(candidate(mode, w)):
                current, weight = candidate(mode, w), w
    reason = (
        f"on {len(scores['off'])} held-out pseudo-queries, nDCG@10 points, a mode or MaxSim weight is taken "
        f"when its gain clears {margin_se:g} standard errors: " + "; ".join(steps)
    )
    return mode, weight, reason  # type: ignore[return-value]


def choose_final_stage(
    pipeline: Pipeline,
    n_queries: int,
    seed: int = 13,
    show_progress: bool = False,
    margin_se: float = MARGIN_SE,
) -> FinalStageChoice:
    """Score every candidate final stage on held-out pseudo-queries and choose (:func:`choose`)."""
    started = time.perf_counter()
    scores = stage_scores(pipeline, n_queries, seed, show_progress)
    mode, weight, reason = choose(scores, margin_se)
    return FinalStageChoice(
        mode=mode,
        reason=reason,
        ndcg={m: float(np.mean(v)) if v else 0.0 for m, v in scores.items()},
        queries=len(scores["off"]),
        seed=seed,
        seconds=time.perf_counter() - started,
        adapted=pipeline.adapted,
        maxsim_weight=weight,
    )


def record_final_stage(writer: IndexWriter, settings: Settings, show_progress: bool = False) -> FinalStageChoice | None:
    """Choose the final stage for the writer's live snapshot and commit the choice to its manifest.
    None (and nothing committed) when choosing is off or the index is too small to tell."""
    snapshot = writer.snapshot
    if snapshot is None or settings.final_stage_queries == 0 or len(snapshot) < settings.final_stage_min_passages:
        return None
    pipeline = Pipeline(snapshot, settings, encoder=writer.encoder)
    choice = choose_final_stage(pipeline, settings.final_stage_queries, show_progress=show_progress)
    writer.set_final_stage(choice)
    return choice
