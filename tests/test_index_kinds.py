"""The three index kinds share one shape (rag.index.protocol.IndexKind): the same calls mean the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.index.bm25 import BM25Index, BM25Params
from rag.index.codecs import make_codec
from rag.index.dense import DenseIndex, DenseParams
from rag.index.multivector import MultiVectorIndex, MultiVectorParams
from rag.index.protocol import IndexKind

RNG = np.random.default_rng(3)
DIM = 16
TEXTS = [["oil", "price", "march"], ["oil", "crisis"], ["maxsim", "token"], ["price", "of", "oil"], ["late", "token"]]


def _unit(n: int) -> np.ndarray:
    vectors = RNG.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_every_kind_adds_deletes_searches_saves_and_loads_alike(tmp_path: Path) -> None:
    vectors = _unit(len(TEXTS))
    tokens = [_unit(int(n)) for n in RNG.integers(2, 7, len(TEXTS))]
    dense: IndexKind[np.ndarray, np.ndarray, np.ndarray | None, DenseParams] = DenseIndex.build(
        vectors[:2], DenseParams()
    )
    sparse: IndexKind[list[list[str]], list[str], np.ndarray | None, BM25Params] = BM25Index.build(
        TEXTS[:2], BM25Params()
    )
    late: IndexKind[list[np.ndarray], np.ndarray, np.ndarray, MultiVectorParams] = MultiVectorIndex.empty(
        make_codec("float16", DIM)
    ).add(tokens[:2])
    dense, sparse, late = dense.add(vectors[2:]), sparse.add(TEXTS[2:]), late.add(tokens[2:])
    assert len(dense) == len(sparse) == len(late) == len(TEXTS)

    gone = np.array([1, 3])
    kept = [i for i in range(len(TEXTS)) if i not in gone]
    # deleting rows gives the index built from the rest (BM25's statistics included)
    rebuilt: list[IndexKind] = [
        DenseIndex.build(vectors[kept], DenseParams()),
        BM25Index.build([TEXTS[i] for i in kept], BM25Params()),
        MultiVectorIndex.empty(make_codec("float16", DIM)).add([tokens[i] for i in kept]),
    ]
    cases: list[tuple[IndexKind, object, object, str]] = [
        (dense, vectors[4], DenseParams(), "dense"),
        (sparse, ["oil", "token"], BM25Params(), "sparse"),
        (late, tokens[4], MultiVectorParams("float16", DIM), "late"),
    ]
    for (index, query, params, name), expected_index in zip(cases, rebuilt, strict=True):
        every = np.arange(len(TEXTS)) if name == "late" else None  # late interaction searches candidates
        rows, scores = index.search(query, 3, every)
        assert len(rows) == 3 and np.all(np.diff(scores) <= 1e-6), name  # best first
        smaller = index.delete(gone)
        assert len(smaller) == len(kept) and len(index) == len(TEXTS), name  # the old index stays whole
        after = np.arange(len(kept)) if name == "late" else None
        new_rows, new_scores = smaller.search(query, 3, after)
        expected_rows, expected_scores = expected_index.search(query, 3, after)
        assert new_rows.tolist() == expected_rows.tolist(), name
        np.testing.assert_allclose(new_scores, expected_scores, rtol=1e-5)
        if name == "dense":  # a row mask keeps out the same rows as deleting them
            mask = np.ones(len(TEXTS), bool)
            mask[gone] = False
            masked_rows, _ = index.search(query, 3, mask)
            assert masked_rows.tolist() == [kept[r] for r in new_rows], name
        smaller.save(tmp_path / name)
        loaded = type(smaller).load(tmp_path / name, params)
        again_rows, again_scores = loaded.search(query, 3, after)
        assert again_rows.tolist() == new_rows.tolist(), name
        np.testing.assert_allclose(again_scores, new_scores, rtol=1e-5)
