"""MaxSim late interaction (ColBERT): each query token takes its best-matching document token."""

from __future__ import annotations

import numpy as np
import torch


def maxsim(
    query: np.ndarray,
    documents: np.ndarray,
    query_mask: np.ndarray | None = None,
    document_mask: np.ndarray | None = None,
    query_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Padded batch form: ``score[d] = sum_i w_i * max_j <q_i, D[d, j]>`` over unmasked tokens.

    ``query`` (n_q, dim); ``documents`` (n_docs, n_tokens, dim); masks are bool, True = real token;
    ``query_weights`` (n_q,) defaults to 1. Returns (n_docs,) float32.
    """
    q = np.asarray(query, np.float32)
    docs = np.asarray(documents, np.float32)
    sims = np.einsum("qd,ntd->nqt", q, docs)  # (n_docs, n_q, n_tokens)
    if document_mask is not None:
        sims = np.where(document_mask[:, None, :], sims, -np.inf)
    best = sims.max(axis=2)  # (n_docs, n_q)
    best = np.where(np.isfinite(best), best, 0.0)
    weights = np.ones(len(q), np.float32) if query_weights is None else np.asarray(query_weights, np.float32)
    if query_mask is not None:
        weights = weights * np.asarray(query_mask, np.float32)
    return (best @ weights).astype(np.float32)


def maxsim_packed(
    query: np.ndarray,
    tokens: np.ndarray,
    offsets: np.ndarray,
    query_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Packed form, no padding: document ``d`` owns ``tokens[offsets[d]:offsets[d + 1]]``.

    ``query`` (n_q, dim); ``tokens`` (n_tokens, dim); ``offsets`` (n_docs + 1,). One matrix product
    over all candidate tokens, then a segmented max: the fast path for reranking. Returns (n_docs,).
    A document without tokens scores 0.
    """
    q = np.asarray(query, np.float32)
    n_docs = len(offsets) - 1
    weights = np.ones(len(q), np.float32) if query_weights is None else np.asarray(query_weights, np.float32)
    if n_docs == 0:
        return np.zeros(0, np.float32)
    starts = np.asarray(offsets[:-1], np.int64)
    lengths = np.diff(np.asarray(offsets, np.int64))
    nonempty = lengths > 0
    scores = np.zeros(n_docs, np.float32)
    if not nonempty.any():
        return scores
    # torch converts float16 and multiplies several times faster than numpy here (bench/query_latency.py)
    sims = (torch.from_numpy(q) @ torch.from_numpy(np.ascontiguousarray(tokens)).float().T).numpy()
    best = np.maximum.reduceat(sims, starts[nonempty], axis=1)  # (n_q, n_nonempty)
    scores[nonempty] = weights @ best
    return scores
