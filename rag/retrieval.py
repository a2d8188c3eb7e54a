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
from rag.score_fusion import score_fusion
from rag.settings import Settings

Ranking = list[tuple[int, float]]  # (row, score), best first
Scope = TypeVar("Scope")  # an engine's own form of a query's filters (a row mask, a payload filter)

# Each MaxSim mode's ranking by name; on request the modes a recipe does not use are produced too
# (evaluation, and choosing an index's final stage).
MODE_STAGES: dict[str, Stage] = {
    "replace": Stage.MAXSIM_REPLACE,
    "fuse": Stage.MAXSIM_FUSE,
    "scores": Stage.MAXSIM_SCORES,
}


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


FALLBACK_MODE: MaxSimMode = "scores"  # auto on an index with no choice: the best worst case (docs/final-stage.md)


def resolve_mode(setting: str, chosen: str | None) -> MaxSimMode:
    """The MaxSim mode in use: the setting, unless it is ``auto``, then the index's choice or the fallback."""
    mode = setting if setting != "auto" else (chosen or FALLBACK_MODE)
    if mode not in ("replace", "fuse", "scores", "off"):
        raise ValueError(f"unknown MaxSim mode {mode!r}")
    return mode  # type: ignore[return-value]


def resolve_weight(setting: float | str, chosen: float | None) -> float:
    """MaxSim's weight in ``fuse`` and ``scores``: the setting, unless it is ``auto``, then the index's
    choice or 1."""
    return float(setting) if setting != "auto" else (1.0 if chosen is None else chosen)


@dataclass(frozen=True)
class Recipe:
    """The search-time knobs of the recipe; they come from settings at query time, never from an index."""

    depth: int = 100  # how many each path retrieves, and how many MaxSim reranks
    rrf_k: int = RRF_K
    weights: Mapping[str, float] = field(default_factory=dict)  # per path; a missing path weighs 1
    maxsim_mode: MaxSimMode = "replace"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        depth: int | None = None,
        chosen: str | None = None,
        chosen_weight: float | None = None,
    ) -> Recipe:
        """``chosen`` and ``chosen_weight``: the final stage and MaxSim weight chosen for the index,
        which ``maxsim_mode=auto`` and ``weight_maxsim=auto`` use."""
        return cls(
            depth=settings.candidate_depth if depth is None else depth,
            rrf_k=settings.rrf_k,
            weights={
                Stage.DENSE: settings.weight_dense,
                Stage.BM25: settings.weight_bm25,
                Stage.MAXSIM: resolve_weight(settings.weight_maxsim, chosen_weight),
            },
            maxsim_mode=resolve_mode(settings.maxsim_mode, chosen),
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
    scope: Scope | None = None,
) -> Rankings:
    """Run the recipe. ``alternative`` adds every MaxSim mode not in use, each under its name in
    :data:`MODE_STAGES`; ``dense`` is the dense path already searched and ``scope`` the filters'
    scope it was searched in (a caller that searched many queries at once)."""
    clock = clock or StageClock()
    if dense is None or scope is None:
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
    mode = recipe.maxsim_mode
    if (mode == "off" and not alternative) or not fused:
        return Rankings(stages, Stage.RRF, _contributions(fused))
    candidates = np.fromiter((f.id for f in fused), np.int64, len(fused))
    query_tokens, token_weights = query.late()
    stages[Stage.MAXSIM] = engine.maxsim(query_tokens, candidates, token_weights)
    modes = [m for m in MODE_STAGES if m == mode or alternative]
    finals = {m: _final_stage(m, stages, paths, fused, recipe) for m in modes}
    clock.mark(Stage.MAXSIM)
    for other in modes:
        if other != mode:
            stages[MODE_STAGES[other]] = _ranking(finals[other])
    if mode == "off":
        return Rankings(stages, Stage.RRF, _contributions(fused))
    stages[Stage.FINAL] = _ranking(finals[mode])
    return Rankings(stages, Stage.FINAL, _contributions(finals[mode]))


def restaged(stages: Mapping[str, Ranking], mode: MaxSimMode, recipe: Recipe) -> Ranking:
    """The ranking ``mode`` gives under ``recipe``'s weights, from the dense, BM25 and MaxSim rankings
    of a recipe already run (``stages``): another MaxSim weight tried without searching again."""
    paths: dict[str, list[int]] = {path: [r for r, _ in stages[path]] for path in (Stage.DENSE, Stage.BM25)}
    return _ranking(_final_stage(mode, stages, paths, _fuse(paths, recipe), recipe))


def _final_stage(
    mode: str, stages: Mapping[str, Ranking], paths: Mapping[str, list[int]], fused: list[Fused[int]], recipe: Recipe
) -> list[Fused[int]]:
    """One MaxSim mode's ranking of the fused candidates. ``replace`` keeps each candidate's RRF
    shares as its explanation (its MaxSim score is the maxsim stage's)."""
    maxsim = stages[Stage.MAXSIM]
    if mode == "replace":
        shares = {f.id: f.contributions for f in fused}
        return [Fused(row, score, shares[row]) for row, score in maxsim]
    if mode == "fuse":
        return _fuse({**paths, Stage.MAXSIM: [r for r, _ in maxsim]}, recipe)
    three: dict[str, Ranking] = {Stage.DENSE: stages[Stage.DENSE], Stage.BM25: stages[Stage.BM25], Stage.MAXSIM: maxsim}
    return score_fusion(three, [f.id for f in fused], recipe.weights)


def _fuse(paths: Mapping[str, Sequence[int]], recipe: Recipe) -> list[Fused[int]]:
    return rrf(paths, k=recipe.rrf_k, weights=recipe.weights)[: recipe.depth]


def _ranking(fused: Sequence[Fused[int]]) -> Ranking:
    return [(f.id, f.score) for f in fused]


def _contributions(fused: Sequence[Fused[int]]) -> dict[int, dict[str, float]]:
    return {f.id: dict(f.contributions) for f in fused}
