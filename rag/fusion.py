"""Reciprocal Rank Fusion (Cormack, Clarke and Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

RRF_K = 60  # the paper's constant: dampens the weight of the very top ranks

Id = TypeVar("Id", int, str)  # row ids inside the service; any orderable id elsewhere


@dataclass(frozen=True)
class Fused(Generic[Id]):
    """One fused candidate: its RRF score and each path's share of it (path -> weight / (k + rank))."""

    id: Id
    score: float
    contributions: Mapping[str, float]


def rrf(
    rankings: Mapping[str, Sequence[Id]],
    k: int = RRF_K,
    weights: Mapping[str, float] | None = None,
    depth: int | None = None,
) -> list[Fused[Id]]:
    """Fuse ranked id lists: ``score(d) = sum_p w_p / (k + rank_p(d))``, ranks counted from 1.

    A path lists each id once (its best rank counts, later repeats are ignored); ``depth`` keeps
    only each list's first ``depth`` entries. Ties are broken by the best single rank, then by id.
    """
    if k < 0:
        raise ValueError("RRF k must be >= 0")
    scores: dict[Id, float] = {}
    contributions: dict[Id, dict[str, float]] = {}
    best_rank: dict[Id, int] = {}
    for path, ranking in rankings.items():
        weight = 1.0 if weights is None else float(weights.get(path, 1.0))
        seen: set[Id] = set()
        for rank, item in enumerate(ranking[:depth] if depth is not None else ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            share = weight / (k + rank)
            scores[item] = scores.get(item, 0.0) + share
            contributions.setdefault(item, {})[path] = share
            best_rank[item] = min(best_rank.get(item, rank), rank)
    order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))
    return [Fused(i, scores[i], contributions[i]) for i in order]
