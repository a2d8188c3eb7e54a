"""The retrieval recipe's one owner: every MaxSim mode from the same candidates, over any engine."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from indexer.writer import IndexWriter
from rag.index.engine import LocalEngine
from rag.index.snapshot import Snapshot
from rag.objects import Document, Filters, Stage
from rag.pipeline import Pipeline
from rag.retrieval import MODE_STAGES, QueryInput, Ranking, Recipe, restaged, retrieve
from rag.settings import Settings


def test_stage_names_are_the_published_ones() -> None:
    """The wire names of the stages (API bodies, eval reports): pinned here, once."""
    published = [
        "dense",
        "bm25",
        "rrf",
        "maxsim",
        "rrf+maxsim",
        "maxsim-replace",
        "maxsim-fuse",
        "maxsim-scores",
        "rrf+maxsim-raw",
    ]
    assert [s.value for s in Stage] == published


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, scifact_docs: list[Document], encoder, settings: Settings) -> Path:
    index = tmp_path_factory.mktemp("recipe") / "ix"
    with IndexWriter(index, settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:28], "papers")
        writer.upsert(scifact_docs[28:], "notes")
    return index


def _pipeline(index: Path, settings: Settings, encoder, mode: str) -> Pipeline:
    configured = settings.model_copy(update={"maxsim_mode": mode})
    return Pipeline(Snapshot.load(index, configured), configured, encoder)


def test_every_other_mode_is_what_that_mode_returns(
    small_index: Path, encoder, settings: Settings, scifact_docs
) -> None:
    question = scifact_docs[7].title
    for mode in ("replace", "fuse", "scores", "off"):
        asked = _pipeline(small_index, settings, encoder, mode).retrieve(question, alternative=True)
        alone = _pipeline(small_index, settings, encoder, mode).retrieve(question)
        assert asked.rankings[Stage.RRF] == alone.rankings[Stage.RRF]
        for other, stage in MODE_STAGES.items():
            if other == mode:
                assert stage not in asked.rankings and stage not in alone.rankings
                continue
            configured_other = _pipeline(small_index, settings, encoder, other).retrieve(question)
            assert asked.rankings[stage] == configured_other.rankings[Stage.FINAL]
            assert stage not in alone.rankings
        assert (Stage.FINAL in alone.rankings) == (mode != "off")


def test_another_maxsim_weight_restaged_is_what_the_recipe_with_that_weight_returns(
    small_index: Path, encoder, settings: Settings, scifact_docs
) -> None:
    """The final-stage choice tries MaxSim weights on one run's rankings (``restaged``): each must be
    the ranking the recipe run with that weight returns, and weight 1 the run's own."""
    engine = LocalEngine(Snapshot.load(small_index, settings))
    recipe = replace(Recipe.from_settings(settings, depth=20), maxsim_mode="replace")
    recipe = replace(recipe, weights={**recipe.weights, Stage.MAXSIM: 1.0})
    changed = 0
    for doc in scifact_docs[8:14]:
        encoded = encoder.encode_questions([doc.title])
        query = QueryInput(doc.title, encoded.dense[0], partial(_uniform, encoded.tokens[0]))
        ran = retrieve(engine, query, recipe, alternative=True)
        for mode in ("fuse", "scores"):
            assert restaged(ran.stages, mode, recipe) == ran.stages[MODE_STAGES[mode]]
            for weight in (0.5, 2.0, 3.0):
                weighted = replace(recipe, maxsim_mode=mode, weights={**recipe.weights, Stage.MAXSIM: weight})
                again = restaged(ran.stages, mode, weighted)
                assert again == retrieve(engine, query, weighted).stages[Stage.FINAL], (mode, weight)
                changed += again != ran.stages[MODE_STAGES[mode]]
    assert changed > 0  # the weight reorders some of these questions, so the check can fail


class ExactEngine:
    """A second engine, written apart: brute-force dense, BM25 by a full sort of every row's score, MaxSim
    in float32 over decoded token vectors.
    The recipe must give the same rankings on it as on the embedded engine (whose dense index is flat
    at this size)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.vectors = np.asarray(snapshot.dense.vectors, np.float32)
        self.tokenize = snapshot.bm25_tokenize
        self.sparse = snapshot.sparse
        self.collections = snapshot.row_fields()[0]
        self.token_vectors = [snapshot.multivector.row(i) for i in range(len(snapshot))]

    def scope(self, filters: Filters | None) -> np.ndarray:
        keep = np.ones(len(self.vectors), bool)
        if filters is not None and filters.collection is not None:
            keep &= self.collections == filters.collection
        return keep

    def dense(self, queries: np.ndarray, n: int, scope: np.ndarray) -> list[Ranking]:
        out = []
        for scores in queries @ self.vectors.T:
            rows = [int(r) for r in np.argsort(-scores, kind="stable") if scope[r]][:n]
            out.append([(r, float(scores[r])) for r in rows])
        return out

    def bm25(self, question: str, n: int, scope: np.ndarray) -> Ranking:
        matched, matched_scores = self.sparse.scores(self.tokenize(question))  # every matching row, unfiltered
        scores = np.full(len(self.vectors), -np.inf)
        scores[matched] = matched_scores
        rows = [int(r) for r in np.argsort(-scores, kind="stable") if scope[r] and np.isfinite(scores[r])][:n]
        return [(r, float(scores[r])) for r in rows]

    def maxsim(self, query_tokens: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> Ranking:
        scores = [float((query_tokens @ self.token_vectors[r].T).max(axis=1).sum()) for r in candidates]
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        return [(int(candidates[i]), scores[i]) for i in order]


def _uniform(tokens: np.ndarray) -> tuple[np.ndarray, None]:
    return tokens, None


def test_the_recipe_runs_the_same_on_another_engine(
    small_index: Path, encoder, settings: Settings, scifact_docs
) -> None:
    snapshot = Snapshot.load(small_index, settings)
    local, exact = LocalEngine(snapshot), ExactEngine(snapshot)
    recipe = replace(Recipe.from_settings(settings, depth=20), maxsim_mode="fuse")
    for doc in scifact_docs[3:6]:
        encoded = encoder.encode([doc.title])
        query = QueryInput(doc.title, encoded.dense[0], partial(_uniform, encoded.tokens[0]))
        for filters in (None, Filters(collection="notes")):
            a = retrieve(local, query, recipe, filters, alternative=True)
            b = retrieve(exact, query, recipe, filters, alternative=True)
            assert a.final == b.final == Stage.FINAL
            for stage in (Stage.DENSE, Stage.BM25, Stage.RRF, Stage.MAXSIM, Stage.FINAL, *MODE_STAGES.values()):
                if stage == Stage.MAXSIM_FUSE:
                    continue  # fuse is the configured mode: its ranking is FINAL
                assert [r for r, _ in a.stages[stage]] == [r for r, _ in b.stages[stage]], (stage, filters)
                assert np.allclose(
                    [s for _, s in a.stages[stage]], [s for _, s in b.stages[stage]], rtol=1e-3, atol=1e-3
                )
            if filters is not None:
                assert all(exact.collections[r] == "notes" for r, _ in a.stages[Stage.FINAL])
