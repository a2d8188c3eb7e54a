from __future__ import annotations

import numpy as np

from rag.maxsim import maxsim, maxsim_packed


def naive_maxsim(query: np.ndarray, document: np.ndarray) -> float:
    total = 0.0
    for q in query:
        best = -np.inf
        for d in document:
            best = max(best, float(np.dot(q, d)))
        total += best if document.size else 0.0
    return total


def test_batched_forms_equal_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    query = rng.standard_normal((7, 16)).astype(np.float32)
    docs = [rng.standard_normal((n, 16)).astype(np.float32) for n in (5, 1, 0, 9, 3)]
    expected = np.array([naive_maxsim(query, d) for d in docs])

    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    packed = maxsim_packed(query, np.concatenate(docs), offsets)
    assert np.allclose(packed, expected, atol=1e-4)

    width = max(len(d) for d in docs)
    padded = np.zeros((len(docs), width, 16), np.float32)
    mask = np.zeros((len(docs), width), bool)
    for i, d in enumerate(docs):
        padded[i, : len(d)] = d
        mask[i, : len(d)] = True
    assert np.allclose(maxsim(query, padded, None, mask), expected, atol=1e-4)


def test_query_mask_and_weights() -> None:
    rng = np.random.default_rng(1)
    query = rng.standard_normal((4, 8)).astype(np.float32)
    docs = rng.standard_normal((2, 3, 8)).astype(np.float32)
    qmask = np.array([True, False, True, True])
    weights = np.array([0.5, 9.0, 2.0, 1.0], np.float32)
    got = maxsim(query, docs, qmask, None, weights)
    for i in range(2):
        per_token = (query @ docs[i].T).max(axis=1)
        assert np.isclose(got[i], (per_token * weights * qmask).sum(), atol=1e-4)
    offsets = np.array([0, 3, 6])
    assert np.allclose(maxsim_packed(query, docs.reshape(6, 8), offsets, weights * qmask), got, atol=1e-4)
