"""Per-token weights of a query in MaxSim: uniform, or the BM25 IDF of the word each token belongs to.

A word piece takes the IDF of its whole word's BM25 term, so "hypo ##thy ##roid ##ism" all weigh
as rare as "hypothyroidism" is in the corpus, and frequent words count less. Punctuation can be
left out of the sum altogether. Weights are scaled to mean 1 so scores stay comparable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")


def query_token_weights(
    question: str,
    offsets: Sequence[tuple[int, int]],
    idf: Callable[[str], float | None],
    mode: str = "uniform",
    skip_punctuation: bool = False,
) -> np.ndarray:
    """Weights for tokens with char ``offsets`` into ``question`` (special tokens have (0, 0)).

    ``idf(word)`` gives the corpus IDF of a word, or None when the word has no BM25 term (a stopword,
    one letter); such words and special tokens weigh the query's median IDF under ``mode="idf"``.
    """
    n = len(offsets)
    weights = np.ones(n, np.float64)
    word_of = np.full(n, -1)
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(question)]
    for t, (a, b) in enumerate(offsets):
        if a == b:
            continue
        for w, (start, end, _) in enumerate(words):
            if start <= a < end:
                word_of[t] = w
                break
    if mode == "idf":
        word_idf = [idf(word) for _, _, word in words]
        known = [v for v in word_idf if v is not None]
        fallback = float(np.median(known)) if known else 1.0
        weights = np.array([fallback if w < 0 or word_idf[w] is None else word_idf[w] for w in word_of], np.float64)
        weights = np.maximum(weights, 1e-3)
    elif mode != "uniform":
        raise ValueError(f"unknown query weighting {mode!r}: use 'uniform' or 'idf'")
    if skip_punctuation:
        punctuation = np.array([a != b and word_of[t] < 0 for t, (a, b) in enumerate(offsets)], bool)
        if not punctuation.all():
            weights[punctuation] = 0.0
    mean = weights[weights > 0].mean() if (weights > 0).any() else 1.0
    return (weights / mean).astype(np.float32)
