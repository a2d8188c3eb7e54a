"""Exact BM25 top-n that skips most postings: term-at-a-time MaxScore (Turtle and Flood, 1995).

Each term's score in a passage is at most its largest posting impact, so once the terms still to add
could lift an unseen passage no higher than the n-th best score so far (a lower bound on the final
n-th best), no unseen passage can enter the top n. From there only the passages already seen that
can still reach it are scored, by binary search into each remaining term's postings (sorted by row),
not by a pass over them: common words, whose postings cover most of a large index, cost ``O(c log p)``
for ``c`` candidates instead of ``O(p)``. The survivors are scored again term by term in the query's
order, so their scores are the exhaustive path's floats, bit for bit, and so are the ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rounding slack of the bounds: they are sums in another order than the final scores. A candidate kept
# by the slack is scored exactly like the others, so it can only cost time, never change the result.
SLACK = 1e-9


def nth_best(scores: np.ndarray, n: int) -> float:
    """The n-th largest score (0 when there are fewer: nothing is safe to skip yet)."""
    if len(scores) < n:
        return 0.0
    return float(np.partition(scores, len(scores) - n)[len(scores) - n])


def term_scores(
    indptr: np.ndarray, rows: np.ndarray, impacts: np.ndarray, term: int, count: int, candidates: np.ndarray
) -> np.ndarray:
    """``count`` × the term's impact in each candidate row (sorted), 0 where it does not occur."""
    lo, hi = int(indptr[term]), int(indptr[term + 1])
    posting_rows = rows[lo:hi]
    at = np.searchsorted(posting_rows, candidates)
    inside = at < hi - lo
    found = np.zeros(len(candidates), bool)
    found[inside] = posting_rows[at[inside]] == candidates[inside]
    out = np.zeros(len(candidates), np.float64)
    hit = impacts[lo:hi][at[found]]
    out[found] = hit if count == 1 else count * hit
    return out


def pruned_top_n(
    indptr: np.ndarray,
    rows: np.ndarray,
    impacts: np.ndarray,
    max_impact: np.ndarray,
    n_rows: int,
    terms: Sequence[tuple[int, int]],
    n: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``n`` candidates of the query ``terms`` ((term id, count), in query order) with their
    exhaustive scores: (rows, scores), unordered, a superset of the top ``n`` (ties at the cut
    included). Impacts must be positive (an okapi term with idf ≤ 0 is the exhaustive path's)."""
    bound = {term: count * float(max_impact[term]) for term, count in terms}
    order = sorted(terms, key=lambda tc: -bound[tc[0]])  # MaxScore: the terms that can add most first
    remaining = sum(bound.values())
    scores = np.zeros(n_rows, np.float64)
    seen: list[np.ndarray] = []
    threshold = 0.0
    taken = 0
    # Phase 1: every posting of the strongest terms, until the rest cannot lift an unseen row to the cut.
    for term, count in order:
        lo, hi = int(indptr[term]), int(indptr[term + 1])
        term_rows = rows[lo:hi]
        scores[term_rows] += impacts[lo:hi] if count == 1 else count * impacts[lo:hi]
        seen.append(term_rows)
        remaining -= bound[term]
        taken += 1
        # The n-th best among one term's rows (each once) bounds the final n-th best from below.
        in_scope = term_rows if allowed is None else term_rows[allowed[term_rows]]
        threshold = max(threshold, nth_best(scores[in_scope], n))
        if remaining < threshold * (1 - SLACK):
            break
    few = sum(len(r) for r in seen) * 8 < n_rows  # few rows seen: sort them rather than scan every row
    candidates = np.unique(np.concatenate(seen).astype(np.int64)) if few else np.flatnonzero(scores)
    if allowed is not None:
        candidates = candidates[allowed[candidates]]
    partial = scores[candidates]
    # Phase 2: the other terms, for the candidates that can still reach the cut only.
    for term, count in order[taken:]:
        alive = partial + remaining >= threshold * (1 - SLACK)
        candidates, partial = candidates[alive], partial[alive]
        partial = partial + term_scores(indptr, rows, impacts, term, count, candidates)
        remaining -= bound[term]
        threshold = max(threshold, nth_best(partial, n))
    candidates = candidates[partial >= threshold * (1 - SLACK)]
    # The survivors' scores again, term by term in the query's order: the exhaustive sum's floats.
    exact = np.zeros(len(candidates), np.float64)
    for term, count in terms:
        exact += term_scores(indptr, rows, impacts, term, count, candidates)
    return candidates, exact
