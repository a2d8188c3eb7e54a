from __future__ import annotations

import numpy as np

from rag.index.codecs.float16 import Float16Codec
from rag.index.dense import DenseIndex, DenseParams
from rag.index.multivector import MultiVectorIndex, MultiVectorParams, MultiVectorWriter


def _unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_search_is_exact_and_filters_before_ranking(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng, 500), _unit(rng, 3)
    index = DenseIndex.build(vectors, DenseParams())
    rows, scores = index.search_batch(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert (rows == expected).all()
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, expected, 1), atol=1e-5)
    allowed = np.zeros(500, bool)
    allowed[::7] = True
    rows, _ = index.search_batch(queries, 10, allowed)
    assert allowed[rows].all() and rows.shape == (3, 10)
    few = np.zeros(500, bool)
    few[[4, 9, 300]] = True
    rows, scores = index.search_batch(queries[:1], 10, few)
    assert sorted(rows[0, :3]) == [4, 9, 300] and (rows[0, 3:] == -1).all() and scores[0, 0] >= scores[0, 2]
    batch_rows, _ = index.search_batch(_unit(rng, 20), 10)  # a larger batch goes through FAISS: same contract
    assert batch_rows.shape == (20, 10) and (batch_rows >= 0).all()
    index.save(tmp_path / "d")
    assert (DenseIndex.load(tmp_path / "d", DenseParams()).search_batch(queries, 10)[0] == expected).all()


def test_hnsw_above_threshold_has_high_recall_and_survives_reload(tmp_path) -> None:
    rng = np.random.default_rng(1)
    vectors, queries = _unit(rng, 3000), _unit(rng, 20)
    params = DenseParams(ann_threshold=1000)
    index = DenseIndex.build(vectors[:2000], params).add(vectors[2000:])
    assert index.kind == "hnsw"
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    rows, _ = index.search_batch(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)])
    assert recall >= 0.95
    index.save(tmp_path / "h")
    assert (tmp_path / "h" / "hnsw.faiss").exists()
    assert (DenseIndex.load(tmp_path / "h", params).search_batch(queries, 10)[0] == rows).all()


def test_delete_drops_rows() -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 50)
    kept = DenseIndex.build(vectors, DenseParams()).delete(np.arange(1, 50, 2))
    rows, _ = kept.search_batch(vectors[4], 1)
    assert rows[0, 0] == 2  # old row 4 is new row 2


def test_hnsw_delete_keeps_the_graph_with_tombstones(tmp_path) -> None:
    """A delete tombstones the graph's nodes instead of rebuilding it: deleted rows are never found, the
    rest keep their recall under their new row numbers, filters and later adds still work, and the saved
    graph is the old file, linked; past the tombstone limit the graph is rebuilt."""
    rng = np.random.default_rng(4)
    vectors, queries = _unit(rng, 3000), _unit(rng, 30)
    params = DenseParams(ann_threshold=1000)
    DenseIndex.build(vectors, params).save(tmp_path / "g1")
    loaded = DenseIndex.load(tmp_path / "g1", params)
    deleted = rng.choice(3000, 150, replace=False)  # 5 %: under the limit
    index = loaded.delete(deleted)
    kept = np.delete(vectors, deleted, axis=0)
    assert index.kind == "hnsw" and len(index) == 2850 and index.tombstones == 150
    exact = np.argsort(-(queries @ kept.T), axis=1)[:, :10]
    rows, scores = index.search_batch(queries, 10)
    assert (rows >= 0).all() and (rows < 2850).all()
    assert np.allclose(scores, np.take_along_axis(queries @ kept.T, rows, 1), atol=1e-5)  # rows mapped right
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)])
    assert recall >= 0.95
    allowed = np.zeros(2850, bool)
    allowed[::5] = True
    filtered, _ = index.search_batch(queries, 10, allowed)
    assert allowed[filtered].all() and filtered.shape == (30, 10)

    index.save(tmp_path / "g2")
    assert (tmp_path / "g2" / "hnsw.faiss").stat().st_ino == (tmp_path / "g1" / "hnsw.faiss").stat().st_ino
    reloaded = DenseIndex.load(tmp_path / "g2", params)
    assert reloaded.tombstones == 150 and (reloaded.search_batch(queries, 10)[0] == rows).all()

    fresh = _unit(rng, 5)
    grown = reloaded.add(fresh)  # new nodes after the old ones, new rows after the kept ones
    found, _ = grown.search_batch(fresh, 1)
    assert found[:, 0].tolist() == list(range(2850, 2855))
    grown.save(tmp_path / "g3")  # the graph changed: written, not linked
    assert (tmp_path / "g3" / "hnsw.faiss").stat().st_ino != (tmp_path / "g1" / "hnsw.faiss").stat().st_ino
    assert DenseIndex.load(tmp_path / "g3", params).tombstones == 150

    rebuilt = DenseIndex.load(tmp_path / "g2", params).delete(np.arange(0, 200))  # 350 of 3000: past 10 %
    assert rebuilt.tombstones == 0 and len(rebuilt) == 2650
    exact = np.argsort(-(queries @ rebuilt.vectors.T), axis=1)[:, :10]
    rows, _ = rebuilt.search_batch(queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)]) >= 0.95
    rebuilt.save(tmp_path / "g4")
    assert not (tmp_path / "g4" / "hnsw_rows.npy").exists()


def test_multivector_roundtrip_and_copy(tmp_path) -> None:
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 1, 5, 2)]
    writer = MultiVectorWriter(tmp_path / "a", Float16Codec(8))
    writer.append(rows)
    assert writer.finish() == 11
    index = MultiVectorIndex.load(tmp_path / "a", MultiVectorParams("float16", 8))
    assert len(index) == 4 and index.n_vectors == 11
    for i, expected in enumerate(rows):
        assert np.allclose(index.row(i), expected.astype(np.float16))
    copy = MultiVectorWriter(tmp_path / "b", Float16Codec(8))
    copy.copy_rows(index, np.array([0, 2, 3]))
    copy.append([rows[1]])
    copy.finish()
    copied = MultiVectorIndex.load(tmp_path / "b", MultiVectorParams("float16", 8))
    for i, source in enumerate([0, 2, 3]):
        assert np.array_equal(copied.row(i), index.row(source))
    assert np.array_equal(copied.row(3), index.row(1))
