from __future__ import annotations

import pytest

from rag.fusion import RRF_K, rrf


def test_default_k_is_60() -> None:
    assert RRF_K == 60


def test_scores_are_the_sum_of_reciprocal_ranks() -> None:
    fused = rrf({"dense": ["a", "b", "c"], "bm25": ["c", "a", "d"]})
    scores = {f.id: f.score for f in fused}
    assert scores["a"] == pytest.approx(1 / (60 + 1) + 1 / (60 + 2))
    assert scores["c"] == pytest.approx(1 / (60 + 3) + 1 / (60 + 1))
    assert scores["b"] == pytest.approx(1 / (60 + 2))
    assert scores["d"] == pytest.approx(1 / (60 + 3))
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    a = next(f for f in fused if f.id == "a")
    assert a.contributions == {"dense": pytest.approx(1 / 61), "bm25": pytest.approx(1 / 62)}


def test_weights_are_applied_per_path() -> None:
    fused = rrf({"dense": ["a", "b"], "bm25": ["b", "a"]}, k=10, weights={"dense": 3.0, "bm25": 1.0})
    scores = {f.id: f.score for f in fused}
    assert scores["a"] == pytest.approx(3.0 / 11 + 1.0 / 12)
    assert scores["b"] == pytest.approx(3.0 / 12 + 1.0 / 11)
    assert fused[0].id == "a"
    # a zero weight removes a path's influence entirely
    only_bm25 = rrf({"dense": ["a", "b"], "bm25": ["b", "a"]}, weights={"dense": 0.0})
    assert only_bm25[0].id == "b"


def test_duplicates_count_once_and_depth_truncates() -> None:
    fused = rrf({"p": ["a", "a", "b"]}, k=0)
    assert {f.id: f.score for f in fused} == {"a": pytest.approx(1.0), "b": pytest.approx(1 / 3)}
    assert [f.id for f in rrf({"p": ["a", "b", "c"]}, depth=2)] == ["a", "b"]


def test_ties_break_by_best_rank_then_id() -> None:
    fused = rrf({"x": ["a", "b"], "y": ["b", "a"]})
    assert fused[0].score == pytest.approx(fused[1].score)
    assert [f.id for f in fused] == ["a", "b"]
    with pytest.raises(ValueError):
        rrf({"x": ["a"]}, k=-1)
