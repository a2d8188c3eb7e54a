"""Reciprocal Rank Fusion (Cormack, Clarke and Büttcher, SIGIR 2009), in array operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

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
    top: int | None = None,
) -> list[Fused[Id]]:
    """Fuse ranked id lists: ``score(d) = sum_p w_p / (k + rank_p(d))``, ranks counted from 1.

    A path lists each id once (its best rank counts, later repeats are ignored); ``depth`` keeps
    only each list's first ``depth`` entries; ``top`` keeps the best ``top`` fused. Ties are broken by
    the best single rank, then by id.
    """
    if k < 0:
        raise ValueError("RRF k must be >= 0")
    paths = list(rankings)
    lists = [list(rankings[p])[:depth] if depth is not None else list(rankings[p]) for p in paths]
    every = [item for items in lists for item in items]
    if every and all(isinstance(item, int | np.integer) for item in every):
        universe: list[Id] = []
        codes = [np.asarray(items, np.int64) for items in lists]
    else:  # ids of another kind become their position in sorted order, so ties still break by id
        universe = sorted(set(every))
        code_of = {item: i for i, item in enumerate(universe)}
        codes = [np.fromiter((code_of[item] for item in items), np.int64, len(items)) for items in lists]
    path_weights = [1.0 if weights is None else float(weights.get(p, 1.0)) for p in paths]
    ids, scores, shares, ranked = fuse_arrays(codes, path_weights, k, top)
    out: list[Fused[Id]] = []
    for i, code in enumerate(ids.tolist()):
        contributions = {paths[p]: float(shares[i, p]) for p in range(len(paths)) if ranked[i, p]}
        out.append(Fused(universe[code] if universe else code, float(scores[i]), contributions))
    return out


def fuse_arrays(
    rankings: Sequence[np.ndarray], weights: Sequence[float], k: int = RRF_K, top: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RRF of int64 id arrays (best first): (ids, scores, shares (n, paths), ranked (n, paths) bool), best
    first. Each id's score adds its paths' shares in path order, as a running sum would: the same floats."""
    entry_ids, entry_paths, entry_ranks = [], [], []
    for path, ranking in enumerate(rankings):
        _, first = np.unique(ranking, return_index=True)
        first.sort()  # each id's first place in the list; a repeat keeps its place's rank but counts once
        entry_ids.append(ranking[first])
        entry_paths.append(np.full(len(first), path, np.int64))
        entry_ranks.append(first + 1)
    if not entry_ids or not sum(len(e) for e in entry_ids):
        empty = np.zeros((0, len(rankings)))
        return np.zeros(0, np.int64), np.zeros(0), empty, empty.astype(bool)
    all_ids, paths, ranks = np.concatenate(entry_ids), np.concatenate(entry_paths), np.concatenate(entry_ranks)
    share = np.asarray(weights, np.float64)[paths] / (k + ranks)
    ids, inverse = np.unique(all_ids, return_inverse=True)
    scores = np.bincount(inverse, weights=share, minlength=len(ids))  # in entry order: path by path
    best = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(best, inverse, ranks)
    order = np.lexsort((ids, best, -scores))[:top]
    position = np.empty(len(ids), np.int64)
    position[order] = np.arange(len(order))
    kept = np.isin(inverse, order, assume_unique=False) if top is not None else np.ones(len(inverse), bool)
    shares = np.zeros((len(order), len(rankings)))
    ranked = np.zeros((len(order), len(rankings)), bool)
    shares[position[inverse[kept]], paths[kept]] = share[kept]
    ranked[position[inverse[kept]], paths[kept]] = True
    return ids[order], scores[order], shares, ranked
