"""`rag adapt` on a Qdrant index (qdrant-client's local mode): the head's token vectors live in the
collection's adapted slots, MaxSim through them scores as the embedded engine does with the same head,
later writes project new passages, and a new head never changes what an older reader scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.adapt import RUN_DIR, AdaptOptions, adapt_index, make_training_data
from indexer.writer import IndexWriter
from rag.encode.projection import principal_directions, save_head
from rag.errors import InputError
from rag.index.engine import LocalEngine
from rag.index.qdrant import ADAPTED_SLOTS, QdrantCollection, point_id
from rag.index.qdrant_engine import QdrantEngine
from rag.index.snapshot import Snapshot
from rag.objects import Stage
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.test_qdrant_engine import QUESTIONS, _documents

pytest.importorskip("qdrant_client")

SMALL = AdaptOptions(max_steps=4, dim=16, batch_size=4, negatives=2, show_progress=False, checkpoint_every_s=0)


def _maxsim(pipeline: Pipeline, question: str) -> list[tuple[str, float]]:
    return list(pipeline.retrieve(question, top_k=10).rankings[Stage.MAXSIM])


def _same_maxsim(got: Pipeline, want: Pipeline) -> None:
    """The same MaxSim ranking of the same candidates, scores within float16 rounding."""
    for question in QUESTIONS:
        a, b = _maxsim(got, question), _maxsim(want, question)
        assert [c for c, _ in a[:10]] == [c for c, _ in b[:10]], question
        expected = dict(b)
        for chunk_id, score in a:
            assert score == pytest.approx(expected[chunk_id], abs=2e-3)


def test_an_adapted_head_on_qdrant_scores_as_on_the_embedded_engine(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings
) -> None:
    base = settings.model_copy(update={"token_codec": "float16", "qdrant_bm25_drift": 0.0})
    qdrant = base.model_copy(update={"index_engine": "qdrant", "qdrant_path": ":memory:"})
    docs, later = _documents(squad_dir, 0, 60), _documents(squad_dir, 300, 12)
    embedded_dir, qdrant_dir = tmp_path / "embedded", tmp_path / "qdrant"
    for index, chosen in ((embedded_dir, base), (qdrant_dir, qdrant)):
        with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
            writer.upsert(docs, "a")
    before = Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder)
    assert isinstance(before.engine, QdrantEngine) and not before.adapted
    raw_scores = {q: _maxsim(before, q) for q in QUESTIONS}

    # the training data is the embedded engine's: negatives mined through Qdrant, vectors fetched from it
    made = [
        make_training_data(Snapshot.load(index, chosen), encoder, chosen, SMALL, tmp_path / f"work-{i}")
        for i, (index, chosen) in enumerate(((embedded_dir, base), (qdrant_dir, qdrant)))
    ]
    for field in ("positives", "negatives", "query_offsets", "kept", "kept_offsets"):
        np.testing.assert_array_equal(getattr(made[1], field), getattr(made[0], field), err_msg=field)
    np.testing.assert_array_equal(made[1].query_vectors, made[0].query_vectors)
    assert not (tmp_path / "work-0").exists() and (tmp_path / "work-1" / "offsets.npy").exists()

    result = adapt_index(qdrant_dir, qdrant, SMALL)
    assert result.steps == 4 and not (qdrant_dir / RUN_DIR).exists()
    served = Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder)
    assert isinstance(served.engine, QdrantEngine) and served.adapted
    assert served.snapshot.params.engine.adapted_slot == 1  # not the slot generation 1 could read

    # the same head on the embedded engine: the same MaxSim, the 16-d head padded to 384 in Qdrant
    head = served.snapshot.params.late_projection
    shutil.copytree(qdrant_dir / head, embedded_dir / head)
    with IndexWriter(embedded_dir, base, encoder, show_progress=False) as writer:
        writer.set_projection(head)
    reference = Pipeline(Snapshot.load(embedded_dir, base), base, encoder=encoder)
    assert isinstance(reference.engine, LocalEngine) and reference.adapted
    _same_maxsim(served, reference)
    unadapted = Pipeline(served.snapshot, qdrant, encoder=encoder, adapted=False)
    assert _maxsim(unadapted, QUESTIONS[0]) == raw_scores[QUESTIONS[0]]
    assert _maxsim(served, QUESTIONS[0]) != raw_scores[QUESTIONS[0]]
    # a reader of the generation before the head still scores the raw token vectors
    assert {q: _maxsim(before, q) for q in QUESTIONS} == raw_scores

    # passages written later get the head's vectors with their point
    for index, chosen in ((embedded_dir, base), (qdrant_dir, qdrant)):
        with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
            writer.upsert(later, "b")
    grown = Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder)
    _same_maxsim(grown, Pipeline(Snapshot.load(embedded_dir, base), base, encoder=encoder))
    assert grown.snapshot.params.engine.adapted_slot == 1
    new_ids = {str(c) for c in np.asarray(grown.snapshot.chunk_ids)} - {
        str(c) for c in np.asarray(served.snapshot.chunk_ids)
    }
    assert isinstance(grown.engine, QdrantEngine) and new_ids
    points = grown.engine.collection
    found = points.client.retrieve(
        points.name, ids=[point_id(c) for c in new_ids], with_vectors=[ADAPTED_SLOTS[1]], with_payload=False
    )
    assert len(found) == len(new_ids) and all(len(p.vector[ADAPTED_SLOTS[1]]) > 0 for p in found)

    # a second head goes to the other slot: the first head's readers keep their scores
    first_head_scores = {q: _maxsim(grown, q) for q in QUESTIONS}
    second = qdrant_dir / "models" / "second"
    save_head(second, principal_directions(np.eye(384, dtype=np.float32)[:64], 8), {"method": "test"})
    with IndexWriter(qdrant_dir, qdrant, encoder, show_progress=False) as writer:
        writer.set_projection("models/second")
    latest = Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder)
    assert latest.snapshot.params.engine.adapted_slot == 0 and latest.adapted
    assert {q: _maxsim(grown, q) for q in QUESTIONS} == first_head_scores
    assert _maxsim(latest, QUESTIONS[0]) != first_head_scores[QUESTIONS[0]]

    # removing the head scores the raw vectors again
    with IndexWriter(qdrant_dir, qdrant, encoder, show_progress=False) as writer:
        writer.set_projection("")
    plain = Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder)
    assert not plain.adapted
    _same_maxsim(plain, Pipeline(Snapshot.load(qdrant_dir, qdrant), qdrant, encoder=encoder, adapted=False))


def test_a_collection_without_adapted_slots_is_refused_before_training(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, chosen = _in_memory_qdrant_index(tmp_path, squad_dir, encoder, settings, 20)
    collection = Snapshot.load(index, chosen).params.engine.collection
    engine = Pipeline(Snapshot.load(index, chosen), chosen, encoder=encoder).engine
    assert isinstance(engine, QdrantEngine)
    assert engine.collection.token_width(ADAPTED_SLOTS[1]) == 384
    # a collection made before the adapted slots existed: Qdrant lists no such vector
    real = QdrantCollection.token_width
    monkeypatch.setattr(
        QdrantCollection,
        "token_width",
        lambda self, name=ADAPTED_SLOTS[0]: None if self.name == collection else real(self, name),
    )
    with pytest.raises(InputError, match="--force --rebuild"):
        adapt_index(index, chosen, SMALL)
    assert not (index / RUN_DIR).exists()  # refused before any training data was made


def test_a_head_that_fails_half_written_leaves_the_live_generation_as_it_was(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, chosen = _in_memory_qdrant_index(tmp_path, squad_dir, encoder, settings, 30)
    head = index / "models" / "h"
    save_head(head, principal_directions(np.eye(384, dtype=np.float32)[:64], 8), {"method": "test"})
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.set_projection("models/h")
    live = Pipeline(Snapshot.load(index, chosen), chosen, encoder=encoder)
    scores = {q: _maxsim(live, q) for q in QUESTIONS}

    written: list[int] = []
    real = QdrantCollection.set_adapted

    def dies_after_one_block(self, chunk_ids, projected, slot):
        if written:
            raise OSError("the writer's machine went away")
        written.append(slot)
        real(self, chunk_ids, projected, slot)

    monkeypatch.setattr("indexer.writer.PROJECT_BLOCK", 8)  # several blocks on a small index
    monkeypatch.setattr(QdrantCollection, "set_adapted", dies_after_one_block)
    save_head(index / "models" / "h2", principal_directions(np.eye(384, dtype=np.float32)[64:128], 8), {})
    with pytest.raises(OSError), IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.set_projection("models/h2")
    assert written == [1 - live.snapshot.params.engine.adapted_slot]  # the slot the live generation does not read
    after = Pipeline(Snapshot.load(index, chosen), chosen, encoder=encoder)
    assert after.snapshot.generation == live.snapshot.generation
    assert {q: _maxsim(after, q) for q in QUESTIONS} == scores == {q: _maxsim(live, q) for q in QUESTIONS}
    monkeypatch.setattr(QdrantCollection, "set_adapted", real)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:  # the next writer finishes it
        writer.set_projection("models/h2")
    assert Snapshot.load(index, chosen).params.late_projection == "models/h2"


def _in_memory_qdrant_index(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, n_documents: int
) -> tuple[Path, Settings]:
    """An index of the first ``n_documents`` squad documents in an in-memory Qdrant, and its settings."""
    chosen = settings.model_copy(update={"index_engine": "qdrant", "token_codec": "float16", "qdrant_path": ":memory:"})
    index = tmp_path / "ix"
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(_documents(squad_dir, 0, n_documents), "a")
    return index, chosen
