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

    ``query`` (n_q, dim); ``tokens`` (n_tokens, dim) float; ``offsets`` (n_docs + 1,). One matrix product
    over all candidate tokens, then a segmented max. Returns (n_docs,); a document without tokens scores 0.
    """
    if len(tokens) == 0:
        return np.zeros(len(offsets) - 1, np.float32)
    return segment_maxsim(token_similarities(query, tokens), offsets, query_weights)


def token_similarities(query: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """(n_tokens, n_q) float32 inner products of float16/float32 ``tokens`` with the ``query`` tokens."""
    # torch widens float16 and multiplies several times faster than numpy here (docs/benchmarks.md)
    sims = torch.from_numpy(np.ascontiguousarray(tokens)).float() @ torch.from_numpy(np.array(query, np.float32)).T
    return sims.numpy()


def segment_maxsim(
    similarities: np.ndarray, offsets: np.ndarray, query_weights: np.ndarray | None = None
) -> np.ndarray:
    """``score[d] = sum_i w_i * max_{t in d} similarities[t, i]`` for (n_tokens, n_q) ``similarities`` of
    packed documents (document ``d`` owns rows ``offsets[d]:offsets[d + 1]``, ``offsets[-1]`` the row
    count). Returns (n_docs,) float32; a document without tokens scores 0."""
    n_docs = len(offsets) - 1
    n_q = similarities.shape[1] if similarities.ndim == 2 else 0
    weights = np.ones(n_q, np.float32) if query_weights is None else np.asarray(query_weights, np.float32)
    if n_docs <= 0 or len(similarities) == 0:
        return np.zeros(max(n_docs, 0), np.float32)
    rows = torch.from_numpy(np.ascontiguousarray(similarities, np.float32))
    starts = torch.from_numpy(np.asarray(offsets[:-1], np.int64))
    # embedding_bag's max over each document's rows (an empty one gives 0): the same maxima as numpy's
    # maximum.reduceat in about the same time, but without the GIL, which a server's other threads need
    # (docs/benchmarks.md, stop 53)
    best = torch.nn.functional.embedding_bag(torch.arange(len(rows)), rows, starts, mode="max").numpy()
    return (best @ weights).astype(np.float32)
