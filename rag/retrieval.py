"""The retrieval recipe, owned once: dense + BM25 paths → RRF → MaxSim over the fused candidates.

The pipeline, evaluation and `rag adapt`'s negative mining all call :func:`retrieve`; none of them
fuses or reranks on its own. It runs against an :class:`Engine` — the embedded snapshot
(:class:`rag.index.engine.LocalEngine`) or a distributed one — that answers three questions: the
dense top N, the BM25 top N (both within the query's filters) and MaxSim over a candidate set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from rag.fusion import RRF_K, Fused, rrf
from rag.objects import Filters, MaxSimMode, Stage
from rag.settings import Settings

Ranking = list[tuple[int, float]]  # (row, score), best first
Scope = TypeVar("Scope")  # an engine's own form of a query's filters (a row mask, a payload filter)

# The MaxSim mode a recipe does not use, produced on request under this name (for evaluation).
ALTERNATIVE: dict[str, Stage] = {"replace": Stage.MAXSIM_FUSE, "fuse": Stage.MAXSIM_REPLACE}


class Engine(Protocol[Scope]):
    """What an index engine answers for the recipe; row ids are the index's own, from 0."""

    def scope(self, filters: Filters | None) -> Scope:
        """The filters in the engine's own form, computed once per query for both paths."""
        ...

    def dense(self, queries: np.ndarray, n: int, scope: Scope) -> list[Ranking]:
        """Top ``n`` rows by inner product for each (dim,) query of ``queries`` (q, dim)."""
        ...

    def bm25(self, question: str, n: int, scope: Scope) -> Ranking:
        """Top ``n`` rows by BM25 of the question (the engine tokenises it as it indexed)."""
        ...

    def maxsim(self, query_tokens: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> Ranking:
        """Every candidate row by MaxSim of (n_q, dim) query token vectors (per-token ``weights`` or
        uniform), best first; exact ties keep the candidates' order."""
        ...


@dataclass(frozen=True)
class Recipe:
    """The search-time knobs of the recipe; they come from settings at query time, never from an index."""

    depth: int = 100  # how many each path retrieves, and how many MaxSim reranks
    rrf_k: int = RRF_K
    weights: Mapping[str, float] = field(default_factory=dict)  # per path; a missing path weighs 1
    maxsim_mode: MaxSimMode = "replace"

    @classmethod
    def from_settings(cls, settings: Settings, depth: int | None = None) -> Recipe:
        return cls(
            depth=settings.candidate_depth if depth is None else depth,
            rrf_k=settings.rrf_k,
            weights={
                Stage.DENSE: settings.weight_dense,
                Stage.BM25: settings.weight_bm25,
                Stage.MAXSIM: settings.weight_maxsim,
            },
            maxsim_mode=settings.maxsim_mode,
        )


@dataclass(frozen=True)
class QueryInput:
    """One question as the recipe needs it; the late-interaction side is computed only if MaxSim runs."""

    text: str
    dense: np.ndarray  # (dim,)
    late: Callable[[], tuple[np.ndarray, np.ndarray | None]]  # → (query token vectors, token weights or None)


class StageClock:
    """Per-stage milliseconds (``timings``) and milliseconds since the start (``elapsed``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.elapsed: dict[str, float] = {}
        self.restart()

    def restart(self) -> None:
        self.start = self.last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = (now - self.last) * 1000
        self.elapsed[stage] = (now - self.start) * 1000
        self.last = now


@dataclass(frozen=True)
class Rankings:
    """Every stage's ranking in the order the stages ran, the final one named by ``final``."""

    stages: dict[str, Ranking]
    final: Stage
    contributions: dict[int, dict[str, float]]  # row → each path's RRF share, of the fusion behind ``final``


def retrieve(
    engine: Engine[Scope],
    query: QueryInput,
    recipe: Recipe,
    filters: Filters | None = None,
    clock: StageClock | None = None,
    alternative: bool = False,
    dense: Ranking | None = None,
) -> Rankings:
    """Run the recipe. ``alternative`` adds the MaxSim mode not configured (:data:`ALTERNATIVE`);
    ``dense`` is the dense path already searched (a caller that searched many queries at once)."""
    clock = clock or StageClock()
    scope = engine.scope(filters)
    clock.mark("filter")
    if dense is None:
        dense = engine.dense(query.dense[None, :], recipe.depth, scope)[0]
    clock.mark(Stage.DENSE)
    bm25 = engine.bm25(query.text, recipe.depth, scope)
    clock.mark(Stage.BM25)
    paths: dict[str, list[int]] = {Stage.DENSE: [r for r, _ in dense], Stage.BM25: [r for r, _ in bm25]}
    fused = _fuse(paths, recipe)
    clock.mark(Stage.RRF)
    stages: dict[str, Ranking] = {Stage.DENSE: dense, Stage.BM25: bm25, Stage.RRF: _ranking(fused)}
    if recipe.maxsim_mode == "off" or not fused:
        return Rankings(stages, Stage.RRF, _contributions(fused))
    candidates = np.fromiter((f.id for f in fused), np.int64, len(fused))
    query_tokens, token_weights = query.late()
    stages[Stage.MAXSIM] = engine.maxsim(query_tokens, candidates, token_weights)
    refused = (
        _fuse({**paths, Stage.MAXSIM: [r for r, _ in stages[Stage.MAXSIM]]}, recipe)
        if recipe.maxsim_mode == "fuse" or alternative
        else []
    )
    if recipe.maxsim_mode == "replace":
        stages[Stage.FINAL], contributions = stages[Stage.MAXSIM], _contributions(fused)
    else:
        stages[Stage.FINAL], contributions = _ranking(refused), _contributions(refused)
    if alternative:
        other = stages[Stage.MAXSIM] if recipe.maxsim_mode == "fuse" else _ranking(refused)
        stages[ALTERNATIVE[recipe.maxsim_mode]] = other
    clock.mark(Stage.MAXSIM)
    return Rankings(stages, Stage.FINAL, contributions)


def _fuse(paths: Mapping[str, Sequence[int]], recipe: Recipe) -> list[Fused[int]]:
    return rrf(paths, k=recipe.rrf_k, weights=recipe.weights)[: recipe.depth]


def _ranking(fused: Sequence[Fused[int]]) -> Ranking:
    return [(f.id, f.score) for f in fused]


def _contributions(fused: Sequence[Fused[int]]) -> dict[int, dict[str, float]]:
    return {f.id: dict(f.contributions) for f in fused}
