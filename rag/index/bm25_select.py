"""Exact BM25 top-n of a query with many postings: the postings summed in compiled code, then only the
rows that can be in the top n sorted.

Each query term's postings are added into one accumulator by SciPy's compiled sparse kernel
(``csc_matvec``: ``y += A x`` for the term's column, ``x`` its count in the question), on views of the
index's arrays, in the query's order: the exhaustive path's order and arithmetic, so every score is its
float, bit for bit. A lower bound on the n-th best score, taken from a sample of rows, keeps the
selection to the few rows above it instead of every row the query touched (docs/benchmarks.md: BM25 at
1M chunks). Building one sparse matrix of the query's postings first, as this did before, copied them
all and cost 2-3 times as much.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse._sparsetools import csc_matvec

# Rows whose scores bound the n-th best from below: any n real scores do, and a few tens of thousands
# leave about n x (rows / SAMPLE_ROWS) rows above the bound to sort.
SAMPLE_ROWS = 1 << 16


def summed_impacts(
    indptr: np.ndarray, rows: np.ndarray, impacts: np.ndarray, n_rows: int, terms: Sequence[tuple[int, int]]
) -> np.ndarray:
    """(n_rows,) float64: ``sum count * impact`` over the query ``terms`` ((term id, count), in query
    order), 0 where a row has none of them."""
    summed = np.zeros(n_rows, np.float64)
    count_of = np.zeros(1, np.float64)
    for term, count in terms:
        lo, hi = int(indptr[term]), int(indptr[term + 1])
        term_rows = rows[lo:hi]
        count_of[0] = count
        # y += A x for the term's one column, on views of the postings: nothing is copied
        csc_matvec(n_rows, 1, np.array([0, hi - lo], term_rows.dtype), term_rows, impacts[lo:hi], count_of, summed)
    return summed


def rows_that_can_reach(scores: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The rows (allowed, score > 0) whose score is at least a lower bound on the n-th best: a superset
    of the top n, ties at the cut included. Scores must be positive where a row matched."""
    sample = scores[:SAMPLE_ROWS]
    if allowed is not None:
        sample = sample[allowed[:SAMPLE_ROWS]]
    sample = sample[sample > 0]
    if len(sample) >= n:
        bound = float(np.partition(sample, len(sample) - n)[len(sample) - n])
        found = np.flatnonzero(scores >= bound)
    else:
        found = np.flatnonzero(scores > 0)
    return found if allowed is None else found[allowed[found]]
