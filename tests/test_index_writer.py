"""Build, add, replace and delete through the real writer, on SQLite and PostgreSQL stores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import text

from indexer import writer as writer_module
from indexer.writer import IndexWriter
from rag.encode.encoder import Encoder
from rag.errors import IndexBusyError, IndexCorruptError, IndexNotFoundError, InputError
from rag.index.snapshot import Snapshot, store_for
from rag.index.store import DocumentStore
from rag.objects import Document
from rag.settings import Settings


def _search_all_paths(snapshot: Snapshot, encoder: Encoder, text: str, n: int = 10) -> dict[str, set[str]]:
    """Document ids each index returns for ``text``."""
    encoded = encoder.encode([text])
    dense_rows, _ = snapshot.dense.search_batch(encoded.dense, n)
    sparse_rows, _ = snapshot.sparse.search(snapshot.bm25_tokenize(text), n)
    return {
        "dense": {str(snapshot.doc_ids[r]) for r in dense_rows[0] if r >= 0},
        "bm25": {str(snapshot.doc_ids[r]) for r in sparse_rows},
    }


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """float16 token vectors: stored rows are compared with the encoder's, which a 48-byte codec approximates."""
    return settings.model_copy(update={"token_codec": "float16"})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def index_settings(request, settings: Settings) -> Settings:
    if request.param == "sqlite":
        return settings
    return settings.model_copy(update={"store_url": request.getfixturevalue("postgres_url")})


def test_build_then_load_is_consistent(tmp_path, encoder, scifact_docs, index_settings) -> None:
    with IndexWriter(tmp_path / "ix", index_settings, encoder, show_progress=False) as writer:
        summary = writer.upsert(scifact_docs[:20], "sci")
    assert summary.generation == 1 and summary.added == 20
    snapshot = Snapshot.load(tmp_path / "ix", index_settings)
    snapshot.verify()
    stats = snapshot.stats()
    assert stats["documents"] == 20 and stats["chunks"] == len(snapshot) >= 20
    assert stats["token_vectors"] == snapshot.multivector.n_vectors
    assert all(stats["bytes"][k] > 0 for k in ("dense", "sparse", "multivector", "store"))
    # the three indexes share one row space: row i has the same chunk in each
    first = snapshot.store.get_chunks([str(snapshot.chunk_ids[0])], snapshot.generation)
    [chunk] = first.values()
    encoded = encoder.encode([f"{chunk.title}\n{chunk.text}"])
    assert np.allclose(snapshot.dense.vectors[0], encoded.dense[0], atol=1e-5)
    assert np.allclose(snapshot.multivector.row(0), encoded.tokens[0], atol=2e-3)
    assert snapshot.sparse.doc_lengths[0] == len(snapshot.bm25_tokenize(f"{chunk.title}\n{chunk.text}"))
    # every document finds itself on both paths by its own title
    doc = scifact_docs[3]
    found = _search_all_paths(snapshot, encoder, doc.title)
    assert doc.id in found["dense"] and doc.id in found["bm25"]


def test_delete_then_search_never_returns_it(tmp_path, encoder, scifact_docs, index_settings) -> None:
    target = scifact_docs[5]
    with IndexWriter(tmp_path / "ix", index_settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:12])
        before = _search_all_paths(writer.snapshot, encoder, target.title)  # type: ignore[arg-type]
        assert target.id in before["dense"] and target.id in before["bm25"]
        summary = writer.delete([target.id])
        assert summary.deleted == 1 and summary.chunks_removed >= 1
        with pytest.raises(InputError, match="no such document"):
            writer.delete(["not-there"])
    snapshot = Snapshot.load(tmp_path / "ix", index_settings)
    snapshot.verify()
    after = _search_all_paths(snapshot, encoder, target.title, n=len(snapshot))
    assert target.id not in after["dense"] and target.id not in after["bm25"]
    assert target.id not in {str(snapshot.doc_ids[r]) for r in snapshot.live_rows()}
    assert snapshot.store.get_document("default", target.id, snapshot.generation) is None
    assert snapshot.stats()["documents"] == 11


def test_readd_changed_document_replaces_its_chunks(tmp_path, encoder, scifact_docs, index_settings) -> None:
    docs = scifact_docs[:8]
    with IndexWriter(tmp_path / "ix", index_settings, encoder, show_progress=False) as writer:
        writer.upsert(docs)
        # the same documents again: nothing to do, no new generation
        same = writer.upsert(docs)
        assert same.unchanged == 8 and same.generation == 1
        changed = dataclasses.replace(docs[2], text="Zebrafish regenerate cardiac tissue after injury.")
        summary = writer.upsert([changed])
    assert summary.replaced == 1 and summary.added == 0 and summary.chunks_added == 1
    snapshot = Snapshot.load(tmp_path / "ix", index_settings)
    snapshot.verify()
    rows = [i for i, d in enumerate(snapshot.doc_ids) if str(d) == docs[2].id]
    assert len(rows) == 1
    chunk = snapshot.store.get_chunks([str(snapshot.chunk_ids[rows[0]])], snapshot.generation)
    assert next(iter(chunk.values())).text == changed.text
    found = _search_all_paths(snapshot, encoder, "zebrafish cardiac regeneration", n=1)
    assert found["bm25"] == {docs[2].id} and found["dense"] == {docs[2].id}
    assert snapshot.stats()["documents"] == 8


def test_incremental_add_equals_a_fresh_build(tmp_path, encoder, scifact_docs, settings) -> None:
    with IndexWriter(tmp_path / "inc", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:6])
        writer.upsert(scifact_docs[6:12])
    with IndexWriter(tmp_path / "full", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:12])
    inc, full = Snapshot.load(tmp_path / "inc", settings), Snapshot.load(tmp_path / "full", settings)
    # the same chunks, each with the same vectors (row order may differ)
    assert sorted(inc.chunk_ids.tolist()) == sorted(full.chunk_ids.tolist())
    row_in_full = {c: i for i, c in enumerate(full.chunk_ids.tolist())}
    for i, chunk in enumerate(inc.chunk_ids.tolist()):
        j = row_in_full[chunk]
        assert np.allclose(inc.dense.vectors[i], full.dense.vectors[j], atol=1e-5)
        assert np.allclose(inc.multivector.row(i), full.multivector.row(j), atol=2e-3)
    query = full.bm25_tokenize(scifact_docs[7].title)
    inc_rows, inc_scores = inc.sparse.search(query, 5)
    full_rows, full_scores = full.sparse.search(query, 5)
    assert [inc.chunk_ids[r] for r in inc_rows] == [full.chunk_ids[r] for r in full_rows]
    assert np.allclose(inc_scores, full_scores)
    # only the current and the previous snapshot are kept on disk
    assert sorted(p.name for p in (tmp_path / "inc" / "snapshots").iterdir()) == ["gen-000001", "gen-000002"]


def test_bad_input_changes_nothing(tmp_path, encoder, scifact_docs, settings) -> None:
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:3])
        with pytest.raises(InputError, match="empty text"):
            writer.upsert([scifact_docs[4], Document(id="e", text=" ")])
        with pytest.raises(InputError, match="more than once"):
            writer.upsert([scifact_docs[4], scifact_docs[4]])
    snapshot = Snapshot.load(tmp_path / "ix", settings)
    assert snapshot.generation == 1 and snapshot.stats()["documents"] == 3


def test_one_writer_at_a_time_and_missing_index(tmp_path, encoder, settings) -> None:
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False), pytest.raises(IndexBusyError):
        IndexWriter(tmp_path / "ix", settings, encoder).__enter__()
    with pytest.raises(IndexNotFoundError, match="rag index build"):
        Snapshot.load(tmp_path / "nothing", settings)


HOLDING_WRITER = """
import sys, time
from pathlib import Path
from indexer import writer as writer_module
from indexer.writer import IndexWriter
from rag.settings import Settings

with IndexWriter(Path(sys.argv[1]), Settings(_env_file=None, store_url=sys.argv[2]), show_progress=False):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.mark.postgres
def test_one_writer_per_postgresql_store_whatever_its_folder(tmp_path, encoder, settings, postgres_url) -> None:
    """Writers on other machines share the store but not the folder, whose flock they cannot see: the store's
    advisory lock keeps them one at a time, and a writer killed with -9 leaves no lock behind."""
    import subprocess
    import sys

    chosen = settings.model_copy(update={"store_url": postgres_url})
    doc = Document(id="d", text="A passage about harbour cranes.", title="cranes")
    with IndexWriter(tmp_path / "a", chosen, encoder, show_progress=False) as writer:
        writer.upsert([doc], "a")
        with pytest.raises(IndexBusyError, match="store's lock"), IndexWriter(tmp_path / "b", chosen, encoder):
            pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WRITER, str(tmp_path / "a"), postgres_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(IndexBusyError, match="store's lock"), IndexWriter(tmp_path / "b", chosen, encoder):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert holder.returncode == -9
    with IndexWriter(tmp_path / "a", chosen, encoder, show_progress=False) as writer:  # the lock went with it
        assert writer.generation == 1 and writer.upsert([doc], "b").generation == 2
    # Released while its store stays open (an API process keeps its engine): a pooled connection that was
    # merely closed would have kept the session, and the lock, alive.
    first, second = DocumentStore(postgres_url), DocumentStore(postgres_url)
    try:
        lock = first.take_writer_lock()
        assert lock is not None
        with pytest.raises(IndexBusyError):
            second.take_writer_lock()
        DocumentStore.release_session_locks(lock)
        again = second.take_writer_lock()
        assert again is not None
        DocumentStore.release_session_locks(again)
    finally:
        first.close()
        second.close()


def test_a_document_is_its_collection_and_id(tmp_path, encoder, scifact_docs, index_settings) -> None:
    """The same id in two collections is two documents: an upsert or delete in one never touches the other."""
    original, other = scifact_docs[0], scifact_docs[1]
    impostor = dataclasses.replace(other, id=original.id)
    with IndexWriter(tmp_path / "ix", index_settings, encoder, show_progress=False) as writer:
        writer.upsert([original, scifact_docs[2]], "docs")
        summary = writer.upsert([impostor], "news")
        assert summary.added == 1 and summary.replaced == 0
        snapshot = writer.snapshot
        assert snapshot is not None
        store, generation = snapshot.store, snapshot.generation
        assert store.get_document("docs", original.id, generation).title == original.title  # type: ignore[union-attr]
        assert store.get_document("news", original.id, generation).title == other.title  # type: ignore[union-attr]
        assert store.count_documents(generation, "docs") == 2
        assert store.collections_of([original.id], generation) == {original.id: ["docs", "news"]}
        # each collection's filter finds its own document's passages, and only those
        collections, _, _ = snapshot.row_fields()
        rows_of = {c: {str(snapshot.chunk_ids[r]) for r in np.flatnonzero(collections == c)} for c in ("docs", "news")}
        docs_chunks = store.document_chunks("docs", original.id, generation)
        news_chunks = store.document_chunks("news", original.id, generation)
        assert {c.id for c in docs_chunks} <= rows_of["docs"] and {c.id for c in news_chunks} <= rows_of["news"]
        assert not {c.id for c in docs_chunks} & {c.id for c in news_chunks}
        with pytest.raises(InputError, match="name the collection"):
            writer.delete([original.id])
        writer.delete([original.id], "news")
        generation = writer.generation
        assert store.get_document("news", original.id, generation) is None
        assert store.get_document("docs", original.id, generation) is not None
        writer.delete([original.id])  # unambiguous again
        assert store.collections_of([original.id], writer.generation) == {}
    Snapshot.load(tmp_path / "ix", index_settings).verify()


def test_a_store_from_before_collection_keys_is_migrated(tmp_path, encoder, scifact_docs, index_settings) -> None:
    """An index whose chunks do not know their collection nor their page (older schemas) opens, queries
    and isolates."""
    settings = index_settings
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:4], "docs")
    engine = store_for(tmp_path / "ix", settings).engine
    with engine.begin() as db:  # back to the schema of the previous release
        db.execute(text("DROP INDEX ix_rag_chunks_collection"))
        db.execute(text("ALTER TABLE rag_chunks DROP COLUMN collection"))
        db.execute(text("ALTER TABLE rag_chunks DROP COLUMN page"))
    engine.dispose()
    reader = Snapshot.load(tmp_path / "ix", settings)  # a reader first (rag serve, rag ask): it migrates too
    assert set(reader.row_fields()[0].tolist()) == {"docs"}
    stored = reader.store.get_chunks(reader.chunk_ids.tolist(), reader.generation)
    assert stored and {c.page for c in stored.values()} == {None}
    reader.store.close()
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        assert writer.upsert(scifact_docs[:4], "docs").unchanged == 4  # nothing re-encoded
        writer.upsert([dataclasses.replace(scifact_docs[5], id=scifact_docs[0].id)], "news")
    snapshot = Snapshot.load(tmp_path / "ix", settings)
    snapshot.verify()
    kept = snapshot.store.get_document("docs", scifact_docs[0].id, snapshot.generation)
    assert kept is not None and kept.title == scifact_docs[0].title
    collections, _, _ = snapshot.row_fields()
    assert sorted(set(collections.tolist())) == ["docs", "news"] and (collections == "docs").sum() >= 4


def test_a_delete_keeps_the_hnsw_graph_and_never_finds_the_deleted(
    tmp_path, encoder, scifact_docs, settings, monkeypatch
) -> None:
    """Above the ANN threshold a compacting delete tombstones the graph's nodes: the new snapshot links the
    old graph file instead of rebuilding it, verifies, and no path returns the deleted document; the deleted
    passages' own text finds the survivors."""
    monkeypatch.setattr(writer_module, "TOMBSTONE_SHARE", 0.0)  # every delete compacts the rows here
    hnsw = settings.model_copy(update={"dense_ann_threshold": 20})
    with IndexWriter(tmp_path / "ix", hnsw, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs, "default")
        before = writer.snapshot
        assert before is not None and before.dense.kind == "hnsw" and len(before) > 20
        graph = before.directory / "dense" / "hnsw.faiss"
        writer.delete([scifact_docs[3].id])
        after = writer.snapshot
        assert after is not None
        after.verify()
        assert after.dense.tombstones == len(before) - len(after) >= 1
        assert (after.directory / "dense" / "hnsw.faiss").stat().st_ino == graph.stat().st_ino
        for doc in scifact_docs[2:5]:
            found = _search_all_paths(after, encoder, doc.text, n=len(after))
            assert scifact_docs[3].id not in found["dense"] | found["bm25"]
            if doc is not scifact_docs[3]:
                assert doc.id in found["dense"]
        reloaded = Snapshot.load(tmp_path / "ix", hnsw)
        rows, _ = reloaded.dense.search_batch(encoder.encode([scifact_docs[4].text]).dense, 1)
        assert str(reloaded.doc_ids[rows[0, 0]]) == scifact_docs[4].id
        reloaded.store.close()


def _bm25_by_chunk(snapshot: Snapshot, text: str) -> dict[str, float]:
    rows, scores = snapshot.sparse.scores(snapshot.bm25_tokenize(text))
    return {str(snapshot.chunk_ids[r]): float(s) for r, s in zip(rows, scores, strict=True)}


def _dense_by_chunk(snapshot: Snapshot, encoder: Encoder, text: str) -> dict[str, float]:
    rows, scores = snapshot.dense.search_batch(encoder.encode([text]).dense, len(snapshot))
    return {str(snapshot.chunk_ids[r]): float(s) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0}


def test_a_small_delete_links_the_arrays_and_scores_as_if_the_rows_were_gone(
    tmp_path, encoder, scifact_docs, settings
) -> None:
    """A delete of a few rows links every array of the live snapshot and marks the rows deleted instead of
    copying the arrays without them. Searches then give exactly what an index written without the deleted
    documents gives (BM25's df, N and mean length are those of the live rows); the next add compacts the
    rows away, and so does a delete past the tombstone share."""
    kept = [d for i, d in enumerate(scifact_docs[:30]) if i not in (5, 6)]
    with IndexWriter(tmp_path / "ref", settings, encoder, show_progress=False) as writer:
        writer.upsert(kept)
    reference = Snapshot.load(tmp_path / "ref", settings)
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:30])
        before = writer.snapshot
        assert before is not None
        summary = writer.delete([scifact_docs[5].id, scifact_docs[6].id])
        after = writer.snapshot
        assert after is not None and after.deleted is not None
        assert int(after.deleted.sum()) == summary.chunks_removed >= 2
        assert len(after) == len(before) - summary.chunks_removed == len(reference)
        for rel in ("dense/vectors.npy", "sparse/rows.npy", "multivector/offsets.npy", "rows/chunk_ids.npy"):
            assert (after.directory / rel).stat().st_ino == (before.directory / rel).stat().st_ino, rel
        after.verify()
        stats = after.stats()
        assert stats["chunks"] == len(reference) and stats["deleted_rows"] == summary.chunks_removed
        assert stats["token_vectors"] == reference.stats()["token_vectors"]  # the live rows' only
        for doc in scifact_docs[3:9]:  # the deleted documents' own text among the questions
            assert _bm25_by_chunk(after, doc.title) == _bm25_by_chunk(reference, doc.title)
            dense, expected = _dense_by_chunk(after, encoder, doc.text), _dense_by_chunk(reference, encoder, doc.text)
            assert dense.keys() == expected.keys()
            assert np.allclose([dense[c] for c in expected], list(expected.values()), atol=1e-5)
        assert {str(after.doc_ids[r]) for r in after.live_rows()} == {d.id for d in kept}

        added = writer.upsert([scifact_docs[30]])  # an add writes the arrays anyway: the deleted rows go
        compacted = writer.snapshot
        assert compacted is not None and compacted.deleted is None
        assert compacted.n_rows == len(compacted) == len(reference) + added.chunks_added
        assert {str(d) for d in compacted.doc_ids} == {d.id for d in [*kept, scifact_docs[30]]}
        compacted.verify()

        writer.delete([d.id for d in scifact_docs[10:16]])  # a fifth of the rows: past the share
        assert writer.snapshot is not None and writer.snapshot.deleted is None
        writer.snapshot.verify()
    reference.store.close()


def test_replace_all_is_one_commit_that_readers_see_as_one_switch(tmp_path, encoder, scifact_docs, settings) -> None:
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:12], "default")
        before = writer.generation
        changed = dataclasses.replace(scifact_docs[0], text=scifact_docs[0].text + " Revised since.")
        summary = writer.replace_all([changed, *scifact_docs[1:8], *scifact_docs[12:15]], "default")
    # the stale documents went in the same commit as the new ones: no generation without both
    assert summary.generation == before + 1
    assert (summary.added, summary.replaced, summary.unchanged, summary.deleted) == (3, 1, 7, 4)
    snapshot = Snapshot.load(tmp_path / "ix", settings)
    assert {str(d) for d in snapshot.doc_ids} == {d.id for d in [changed, *scifact_docs[1:8], *scifact_docs[12:15]]}
    assert snapshot.store.count_documents(snapshot.generation) == 11
    snapshot.verify()


def test_a_rebuild_encodes_everything_again_with_todays_settings(tmp_path, encoder, scifact_docs, settings) -> None:
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:10], "default")
    old = Snapshot.load(tmp_path / "ix", settings)
    assert old.params.token_codec == "float16"
    binary = settings.model_copy(update={"token_codec": "binary"})
    with IndexWriter(tmp_path / "ix", binary, encoder, show_progress=False) as writer:
        kept = writer.replace_all(scifact_docs[:10], "default")  # nothing changed: nothing to do
        assert kept.generation == old.generation and kept.unchanged == 10
        summary = writer.replace_all(scifact_docs[2:10], "default", rebuild=True)
    assert summary.generation == old.generation + 1
    assert (summary.added, summary.replaced, summary.deleted) == (0, 8, 2)
    snapshot = Snapshot.load(tmp_path / "ix", binary)
    snapshot.verify()
    assert snapshot.params.token_codec == "binary"  # today's settings, not the old index's
    kept_rows = [i for i, d in enumerate(np.asarray(old.doc_ids)) if str(d) in {d.id for d in scifact_docs[2:10]}]
    assert sorted(str(c) for c in snapshot.chunk_ids) == sorted(str(old.chunk_ids[i]) for i in kept_rows)
    assert snapshot.store.count_documents(snapshot.generation) == 8
    assert snapshot.store.count_chunks(snapshot.generation) == len(snapshot)
    # every passage encoded again: the same dense vectors as the old rows of the same chunks
    new_row = {str(c): i for i, c in enumerate(snapshot.chunk_ids)}
    for i in kept_rows:
        assert np.allclose(snapshot.dense.vectors[new_row[str(old.chunk_ids[i])]], old.dense.vectors[i], atol=1e-5)


DYING_AFTER_ITS_COMMIT = """
import os, signal, sys
from pathlib import Path
import indexer.writer
from indexer import writer as writer_module
from indexer.writer import IndexWriter
from rag.objects import Document
from rag.settings import Settings

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the store has committed; CURRENT is not written yet

indexer.writer.write_text_atomic = die
settings = Settings(_env_file=None, token_codec="float16", store_url=sys.argv[2])
docs = [Document(id=f"new-{i}", text=f"A passage about harbour cranes number {i}.", title="cranes") for i in range(3)]
with IndexWriter(Path(sys.argv[1]), settings, show_progress=False) as writer:
    writer.upsert(docs, "default")
"""


def test_a_writer_killed_after_its_store_commit_leaves_its_generation_committed(
    tmp_path, encoder, scifact_docs, index_settings
) -> None:
    """The store's transaction is the commit point: once it commits, the generation is live, even when the
    writer dies before CURRENT names it (the next writer writes CURRENT forward)."""
    import subprocess
    import sys

    index = tmp_path / "ix"
    with IndexWriter(index, index_settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:5], "default")
    done = subprocess.run(
        [sys.executable, "-c", DYING_AFTER_ITS_COMMIT, str(index), index_settings.store_url], timeout=300, check=False
    )
    assert done.returncode == -9
    before = Snapshot.load(index, index_settings)  # a reader of the folder: generation 1, whole
    assert before.generation == 1 and len({str(d) for d in before.doc_ids}) == 5
    live = before.store.live_generation()
    assert live is not None and (live.generation, live.snapshot) == (2, "gen-000002")
    before.verify()  # whole: CURRENT only lags the commit
    assert before.committed_ahead() == 2
    before.store.close()
    with IndexWriter(index, index_settings, encoder, show_progress=False) as writer:
        assert writer.generation == 2  # written forward, not rolled back
    after = Snapshot.load(index, index_settings)
    after.verify()
    assert after.generation == 2 and after.store.count_documents(2) == 8 and after.committed_ahead() is None
    assert {f"new-{i}" for i in range(3)} <= {str(d) for d in after.doc_ids}
    after.store.close()


def test_a_snapshot_moved_into_place_but_not_committed_is_removed(
    tmp_path, encoder, scifact_docs, index_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "ix"
    with IndexWriter(index, index_settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:5], "default")
    real = DocumentStore.commit_generation

    def fails_after_the_folder_moved(self, *args, before_commit=None, **kwargs):
        def then_fail(documents: int) -> None:
            assert before_commit is not None
            before_commit(documents)
            raise RuntimeError("the transaction does not commit")

        return real(self, *args, before_commit=then_fail, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(DocumentStore, "commit_generation", fails_after_the_folder_moved)
        with IndexWriter(index, index_settings, encoder, show_progress=False) as writer, pytest.raises(RuntimeError):
            writer.upsert(scifact_docs[5:8], "default")
    assert (index / "snapshots" / "gen-000002").is_dir()  # in place, named by nothing
    with IndexWriter(index, index_settings, encoder, show_progress=False) as writer:
        assert writer.generation == 1
    assert not (index / "snapshots" / "gen-000002").exists()
    snapshot = Snapshot.load(index, index_settings)
    snapshot.verify()
    assert snapshot.store.count_documents(2) == 5  # its rows went with the transaction
    snapshot.store.close()


@pytest.mark.postgres
def test_a_store_that_holds_another_index_is_refused_and_kept(
    tmp_path, encoder, scifact_docs, settings, postgres_url
) -> None:
    chosen = settings.model_copy(update={"store_url": postgres_url})
    with IndexWriter(tmp_path / "a", chosen, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:4], "default")
    with (
        pytest.raises(IndexCorruptError, match="store of another index"),
        IndexWriter(tmp_path / "b", chosen, encoder, show_progress=False),
    ):
        pass
    snapshot = Snapshot.load(tmp_path / "a", chosen)  # nothing of it was rolled back
    snapshot.verify()
    assert snapshot.store.count_documents(snapshot.generation) == 4
    snapshot.store.close()
