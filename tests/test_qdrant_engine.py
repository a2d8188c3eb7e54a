"""The Qdrant engine against the embedded one on real SQuAD paragraphs: same rankings, same per-path
ranks, BM25 equal within 1e-5, through add, replace, delete and filters (qdrant-client's local mode)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from indexer.writer import IndexWriter
from rag.index.bm25 import BM25Index
from rag.index.engine import LocalEngine, make_engine
from rag.index.qdrant_engine import QdrantEngine
from rag.index.snapshot import Snapshot
from rag.index.term_statistics import StoredTermStatistics, totals_of
from rag.objects import Document, Filters, Stage
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.conftest import read_jsonl

pytest.importorskip("qdrant_client")

QUESTIONS = [
    "What was the price of oil in March of 1974?",
    "Which country led the oil embargo?",
    "Who won Super Bowl 50?",
    "What is the largest city in the region?",
    "When was the university founded?",
]


def _documents(squad_dir: Path, start: int, n: int) -> list[Document]:
    records = read_jsonl(squad_dir / "corpus.jsonl")[start : start + n]
    return [
        Document(id=r["_id"], text=r["text"], title=r["title"], source=f"s{i % 3}", date=f"2019-01-{1 + i % 28:02d}")
        for i, r in enumerate(records)
    ]


# A real Qdrant server or cluster, when one is given: `RAG_TEST_QDRANT_URL=http://127.0.0.1:6333`
SERVER_URL = os.environ.get("RAG_TEST_QDRANT_URL", "")


def _qdrant_location(kind: str) -> dict[str, str]:
    if kind == "server":
        if not SERVER_URL:
            pytest.skip("no Qdrant server: set RAG_TEST_QDRANT_URL to run these tests against one")
        return {"qdrant_url": SERVER_URL, "qdrant_api_key": os.environ.get("RAG_TEST_QDRANT_API_KEY", "")}
    return {"qdrant_path": ":memory:" if kind == ":memory:" else ""}


@pytest.fixture(scope="module", params=[":memory:", "path", "server"])
def engines(request, tmp_path_factory, squad_dir: Path, encoder, settings: Settings):
    """An embedded index and a Qdrant one, written by the same sequence of changes."""
    location = _qdrant_location(request.param)
    root = tmp_path_factory.mktemp("engines")
    # float16 in both: Qdrant stores token vectors as float16; drift 0: BM25 weights always current
    base = settings.model_copy(update={"token_codec": "float16", "qdrant_bm25_drift": 0.0})
    qdrant = base.model_copy(update={"index_engine": "qdrant", **location})
    first, second = _documents(squad_dir, 0, 90), _documents(squad_dir, 400, 40)
    changed = [replace(d, text=d.text + " It was later revised.") for d in first[:5]]
    for index, chosen in ((root / "embedded", base), (root / "qdrant", qdrant)):
        with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
            writer.upsert(first, "a")
            writer.upsert(second, "b")
            writer.upsert(changed, "a")
            writer.delete([d.id for d in first[10:20]], "a")
    yield (root / "embedded", base), (root / "qdrant", qdrant)
    if request.param == "server":  # a server outlives the test: leave no collection behind
        engine = make_engine(Snapshot.load(root / "qdrant", qdrant), qdrant)
        assert isinstance(engine, QdrantEngine)
        engine.collection.client.delete_collection(engine.collection.name)


def _pipeline(index: Path, chosen: Settings, encoder) -> Pipeline:
    return Pipeline(Snapshot.load(index, chosen), chosen, encoder=encoder)


@pytest.mark.parametrize(
    "filters",
    [None, Filters(collection="b"), Filters(sources=("s1",)), Filters(date_from="2019-01-05", date_to="2019-01-12")],
)
def test_same_rankings_and_explanations(engines, encoder, filters) -> None:
    (embedded_dir, base), (qdrant_dir, qdrant) = engines
    embedded, served = _pipeline(embedded_dir, base, encoder), _pipeline(qdrant_dir, qdrant, encoder)
    assert isinstance(embedded.engine, LocalEngine) and isinstance(served.engine, QdrantEngine)
    assert len(served.snapshot) == len(embedded.snapshot) > 100
    for question in QUESTIONS:
        want = embedded.retrieve(question, top_k=10, filters=filters)
        got = served.retrieve(question, top_k=10, filters=filters)
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits], question
        for g, w in zip(got.hits, want.hits, strict=True):
            assert g.ranks == w.ranks  # every stage's rank of every hit
        for stage in (Stage.DENSE, Stage.BM25, Stage.MAXSIM):
            assert [c for c, _ in got.rankings[stage][:10]] == [c for c, _ in want.rankings[stage][:10]], stage
        bm25_want = dict(want.rankings[Stage.BM25])
        for cid, score in got.rankings[Stage.BM25]:
            assert score == pytest.approx(bm25_want[cid], abs=1e-5)
        if filters is not None and filters.collection:
            assert all(h.collection == filters.collection for h in got.hits)


def test_deleted_and_replaced_passages_are_not_served(engines, encoder) -> None:
    (embedded_dir, base), (qdrant_dir, qdrant) = engines
    served = _pipeline(qdrant_dir, qdrant, encoder)
    live = {str(c) for c in np.asarray(served.snapshot.chunk_ids)}
    assert isinstance(served.engine, QdrantEngine)
    assert served.engine.collection.count_live(served.snapshot.generation) == len(live)
    # the token vectors counted as the embedded engine counts them, deleted and replaced passages taken off
    embedded = Snapshot.load(embedded_dir, base)
    counted = served.snapshot.stats()["token_vectors"]
    live_lengths = np.diff(np.asarray(embedded.multivector.offsets))[embedded.live_rows()]
    assert counted == embedded.stats()["token_vectors"] == int(live_lengths.sum())
    for question in QUESTIONS:
        for _, ranking in served.retrieve(question, top_k=10).rankings.items():
            assert {c for c, _ in ranking} <= live


CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from indexer.writer import IndexWriter
from rag.index.store import DocumentStore
from rag.objects import Document
from rag.settings import Settings

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # after every point is upserted, before the store commits

DocumentStore.commit_generation = die
# the default drift: this change moves the mean passage length enough to write every BM25 weight again
settings = Settings(_env_file=None, index_engine="qdrant", token_codec="float16")
docs = [Document(id=f"new-{i}", text=f"A passage about harbour cranes number {i}.", title="cranes") for i in range(5)]
replaced = Document(id=sys.argv[2], text="This paragraph was replaced by one about cranes.", title="cranes")
with IndexWriter(Path(sys.argv[1]), settings, show_progress=False) as writer:
    writer.upsert([replaced, *docs], "a")  # its old passages marked deleted, six new points
"""


def test_kill_9_between_upsert_and_commit(tmp_path: Path, squad_dir: Path, encoder, settings: Settings) -> None:
    import subprocess
    import sys

    from qdrant_client import models

    from rag.index.qdrant import forget_clients

    chosen = settings.model_copy(update={"index_engine": "qdrant", "token_codec": "float16"})
    index = tmp_path / "ix"
    docs = _documents(squad_dir, 0, 12)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs, "a")
    before = _pipeline(index, chosen, encoder).retrieve(QUESTIONS[0], top_k=10)
    forget_clients()  # Qdrant in process on a folder: one process at a time
    done = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(index), docs[0].id], cwd=Path.cwd(), timeout=300)
    assert done.returncode == -9
    served = _pipeline(index, chosen, encoder)  # the last generation, whole
    assert served.snapshot.generation == 1
    after = served.retrieve(QUESTIONS[0], top_k=10)
    assert [h.chunk_id for h in after.hits] == [h.chunk_id for h in before.hits]
    assert isinstance(served.engine, QdrantEngine)
    points = served.engine.collection
    orphans = points.client.count(
        points.name, count_filter=models.Filter(must=[models.FieldCondition(key="added_gen", range=models.Range(gt=1))])
    ).count
    assert orphans == 6
    assert points.count_live(1) == len(served.snapshot)  # the deletions marked for generation 2 do not count
    with IndexWriter(index, chosen, encoder, show_progress=False):
        pass  # the next writer rolls the orphans back
    assert points.client.count(points.name, exact=True).count == points.count_live(1) == len(served.snapshot)
    forget_clients()


DYING_AFTER_ITS_COMMIT = CRASHING_WRITER.replace(
    "DocumentStore.commit_generation = die", "import indexer.writer\nindexer.writer.write_text_atomic = die"
)


def test_kill_9_after_the_store_commit_keeps_the_generations_points(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings
) -> None:
    """Killed between its store commit and CURRENT, the writer has committed: the next writer writes CURRENT
    forward and serves the new points; it rolls nothing back."""
    import subprocess
    import sys

    from rag.index.qdrant import forget_clients

    chosen = settings.model_copy(update={"index_engine": "qdrant", "token_codec": "float16"})
    index = tmp_path / "ix"
    docs = _documents(squad_dir, 0, 12)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs, "a")
    forget_clients()  # Qdrant in process on a folder: one process at a time
    done = subprocess.run(
        [sys.executable, "-c", DYING_AFTER_ITS_COMMIT, str(index), docs[0].id], cwd=Path.cwd(), timeout=300
    )
    assert done.returncode == -9
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        assert writer.generation == 2
    served = _pipeline(index, chosen, encoder)
    assert isinstance(served.engine, QdrantEngine)
    assert served.snapshot.generation == 2
    points = served.engine.collection
    assert points.count_live(2) == len(served.snapshot) == points.client.count(points.name, exact=True).count - 1
    hits = served.retrieve("harbour cranes", top_k=10).hits
    assert {h.doc_id for h in hits} >= {f"new-{i}" for i in range(5)}
    forget_clients()


def test_reweighting_never_changes_what_the_live_generation_scores(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.index.store import DocumentStore

    # drift 1: the second change leaves every weight at the first change's mean passage length
    chosen = settings.model_copy(
        update={"index_engine": "qdrant", "token_codec": "float16", "qdrant_path": ":memory:", "qdrant_bm25_drift": 1.0}
    )
    index = tmp_path / "ix"
    longer = [replace(d, text=f"{d.text} {d.text}") for d in _documents(squad_dir, 400, 20)]
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(_documents(squad_dir, 0, 20), "a")
        writer.upsert(longer, "b")  # the mean passage length grows by about half
    live = Snapshot.load(index, chosen)
    served = make_engine(live, chosen)
    assert isinstance(served, QdrantEngine)
    exact = LocalEngine(live)  # the snapshot's own BM25 statistics: exact scores
    scope = served.scope(None)
    before = {q: served.bm25(q, 20, scope) for q in QUESTIONS}
    exact_scores = {q: dict(exact.bm25(q, 20, None)) for q in QUESTIONS}
    assert any(s != pytest.approx(exact_scores[q].get(r, -1), abs=1e-5) for q in QUESTIONS for r, s in before[q])

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the writer dies before its commit")

    with monkeypatch.context() as patch:
        patch.setattr(DocumentStore, "commit_generation", crash)
        with IndexWriter(index, chosen, encoder, show_progress=False) as writer, pytest.raises(RuntimeError):
            writer.reweight_bm25()  # every weight written again, not committed
    assert {q: served.bm25(q, 20, scope) for q in QUESTIONS} == before  # bit for bit: the live slot is untouched

    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        generation = writer.reweight_bm25()
    assert generation == live.generation + 1
    reweighted = Snapshot.load(index, chosen)
    assert reweighted.params.engine.bm25_slot != live.params.engine.bm25_slot
    now, exact_now = make_engine(reweighted, chosen), LocalEngine(reweighted)
    for question in QUESTIONS:
        got, want = now.bm25(question, 20, now.scope(None)), exact_now.bm25(question, 20, None)
        assert [r for r, _ in got] == [r for r, _ in want], question
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-5)
    assert {q: served.bm25(q, 20, scope) for q in QUESTIONS} == before  # the old generation's reader still


def test_reweight_needs_the_qdrant_engine(tmp_path: Path, encoder, settings: Settings) -> None:
    from rag.errors import InputError

    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert([Document(id="d", text="One short passage about cranes.", title="t")], "a")
        with pytest.raises(InputError, match="always exact"):
            writer.reweight_bm25()


def test_encoded_blocks_in_any_order_make_the_same_index(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's actors hand batches back in the order they finish: the writer must not depend on it."""
    from rag.encode.encoder import Encoded

    chosen = settings.model_copy(update={"index_engine": "qdrant", "token_codec": "float16", "qdrant_path": ":memory:"})
    documents = _documents(squad_dir, 0, 40)
    with IndexWriter(tmp_path / "in-order", chosen, encoder, show_progress=False) as writer:
        writer.upsert(documents, "a")
    in_order = IndexWriter._encoded_blocks

    def last_first(self: IndexWriter, chunks):  # one chunk per block, the last chunk first
        for block, encoded, tokens in in_order(self, chunks):
            for i in reversed(range(len(block))):
                yield [block[i]], Encoded(dense=encoded.dense[i : i + 1], tokens=[tokens[i]]), [tokens[i]]

    monkeypatch.setattr(IndexWriter, "_encoded_blocks", last_first)
    with IndexWriter(tmp_path / "last-first", chosen, encoder, show_progress=False) as writer:
        writer.upsert(documents, "a")
    want = _pipeline(tmp_path / "in-order", chosen, encoder)
    got = _pipeline(tmp_path / "last-first", chosen, encoder)
    for question in QUESTIONS:
        a, b = want.retrieve(question, top_k=10), got.retrieve(question, top_k=10)
        assert [h.chunk_id for h in b.hits] == [h.chunk_id for h in a.hits], question
        for stage in (Stage.DENSE, Stage.BM25, Stage.MAXSIM):
            assert dict(b.rankings[stage]) == pytest.approx(dict(a.rankings[stage]), abs=1e-5), stage


def _aliases(client) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}


def _in_memory_index(
    root: Path, squad_dir: Path, encoder, settings: Settings, start: int, n: int
) -> tuple[Settings, Path, list[Document], Pipeline, QdrantEngine]:
    """A Qdrant index (local mode, in memory) of ``n`` SQuAD paragraphs from ``start``, and its reader."""
    chosen = settings.model_copy(update={"index_engine": "qdrant", "token_codec": "float16", "qdrant_path": ":memory:"})
    index, docs = root / "ix", _documents(squad_dir, start, n)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs, "a")
    reader = _pipeline(index, chosen, encoder)
    assert isinstance(reader.engine, QdrantEngine)
    return chosen, index, docs, reader, reader.engine


def test_a_rebuild_goes_to_a_new_collection_that_the_alias_then_names(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings
) -> None:
    # `old`: a reader of generation 1, still serving during the rebuild
    chosen, index, docs, old, old_engine = _in_memory_index(tmp_path, squad_dir, encoder, settings, 0, 30)
    client, first = old_engine.collection.client, old_engine.collection.name
    alias = old.snapshot.params.engine.alias
    assert alias and first.startswith(f"{alias}-") and _aliases(client)[alias] == first
    before = old.retrieve(QUESTIONS[0], top_k=10)

    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        summary = writer.replace_all(docs[5:], "a", rebuild=True)
    assert (summary.generation, summary.replaced, summary.deleted) == (2, 25, 5)
    new = _pipeline(index, chosen, encoder)
    assert isinstance(new.engine, QdrantEngine)
    second = new.engine.collection.name
    assert second != first and second.startswith(f"{alias}-")
    assert _aliases(client)[alias] == second  # switched once the rebuild committed
    assert new.engine.collection.count_live(2) == client.count(second, exact=True).count == len(new.snapshot)
    assert {str(d) for d in new.snapshot.doc_ids} == {d.id for d in docs[5:]}
    assert new.snapshot.stats()["token_vectors"] == new.engine.collection.token_count(
        [str(c) for c in new.snapshot.chunk_ids]
    )
    # the reader of generation 1 still reads its own collection, kept with its snapshot
    assert [h.chunk_id for h in old.retrieve(QUESTIONS[0], top_k=10).hits] == [h.chunk_id for h in before.hits]
    # the alias serves what the live generation serves
    via_alias = QdrantEngine(new.snapshot, type(new.engine.collection)(client, alias))
    query = encoder.encode([QUESTIONS[1]]).dense
    assert via_alias.dense(query, 10, via_alias.scope(None)) == new.engine.dense(query, 10, new.engine.scope(None))

    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs[:2], "a")  # generation 3: generation 1's snapshot goes (RAG_KEEP_SNAPSHOTS=1)
    assert not client.collection_exists(first)
    assert client.collection_exists(second) and _aliases(client)[alias] == second


def test_a_rebuild_that_dies_before_its_commit_leaves_no_collection(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.index.store import DocumentStore

    chosen, index, docs, live, live_engine = _in_memory_index(tmp_path, squad_dir, encoder, settings, 40, 15)
    client, alias = live_engine.collection.client, live.snapshot.params.engine.alias
    before = live.retrieve(QUESTIONS[2], top_k=10)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the writer dies before its commit")

    with monkeypatch.context() as patch:
        patch.setattr(DocumentStore, "commit_generation", crash)
        with IndexWriter(index, chosen, encoder, show_progress=False) as writer, pytest.raises(RuntimeError):
            writer.replace_all(docs, "a", rebuild=True)
    mine = [c.name for c in client.get_collections().collections if c.name.startswith(f"{alias}-")]
    assert len(mine) == 2  # the rebuild's points are all in; nothing names them
    assert _aliases(client)[alias] == live_engine.collection.name
    with IndexWriter(index, chosen, encoder, show_progress=False):
        pass  # the next writer drops the collection no snapshot reads
    assert [c.name for c in client.get_collections().collections if c.name.startswith(f"{alias}-")] == [
        live_engine.collection.name
    ]
    served = _pipeline(index, chosen, encoder)
    assert served.snapshot.generation == 1
    assert [h.chunk_id for h in served.retrieve(QUESTIONS[2], top_k=10).hits] == [h.chunk_id for h in before.hits]


def test_a_rebuild_onto_the_embedded_engine_drops_the_collection_with_its_last_snapshot(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings
) -> None:
    chosen, index, docs, _, old_engine = _in_memory_index(tmp_path, squad_dir, encoder, settings, 60, 12)
    client, name = old_engine.collection.client, old_engine.collection.name
    embedded = chosen.model_copy(update={"index_engine": "embedded"})
    with IndexWriter(index, embedded, encoder, show_progress=False) as writer:
        writer.replace_all(docs, "a", rebuild=True)  # generation 2, on the snapshot's arrays
        assert client.collection_exists(name)  # generation 1's snapshot still reads it
        writer.upsert(docs[:1], "b")  # generation 3: generation 1's snapshot goes, and its collection
    assert not client.collection_exists(name)
    assert isinstance(_pipeline(index, embedded, encoder).engine, LocalEngine)


def _assert_the_store_gives_the_postings_statistics(snapshot: Snapshot) -> StoredTermStatistics:
    """Every term's id and idf, N and the rest, as the generation's own postings give them."""
    stored = StoredTermStatistics.of(snapshot.store, snapshot.generation, snapshot.params.bm25)
    assert stored is not None
    postings = BM25Index.load(snapshot.directory / "sparse", snapshot.params.bm25)
    assert stored.totals == totals_of(postings)
    # every term of the vocabulary twice (weights count repeats), and one the index never held
    question = [*postings.vocabulary, *postings.vocabulary, "zzzneverindexed"]
    want_ids, want_weights = postings.query_terms(question)
    got_ids, got_weights = stored.query_terms(question)
    assert got_ids.tolist() == want_ids.tolist() and len(want_ids) > 500
    np.testing.assert_allclose(got_weights, want_weights, rtol=1e-12, atol=0)
    assert [stored.idf_of(t) for t in postings.vocabulary[:50]] == pytest.approx(
        [postings.idf_of(t) for t in postings.vocabulary[:50]], rel=1e-12
    )
    assert stored.idf_of("zzzneverindexed") is None and stored.max_idf == postings.max_idf
    return stored


@pytest.mark.parametrize("store, variant", [("sqlite", "lucene"), ("postgresql", "okapi")])
def test_readers_take_bm25_statistics_from_the_store_per_generation(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings, request, store: str, variant: str
) -> None:
    """df and N are committed with each generation: a Qdrant reader computes BM25's query side from the
    store, never loading the folder's postings, and a reader of the kept older generation keeps its own
    statistics after a newer commit and the purge of what no kept snapshot reads."""
    from sqlalchemy import func, select

    from rag.index.store import TermRow

    update: dict[str, object] = {"index_engine": "qdrant", "qdrant_path": ":memory:", "token_codec": "float16"}
    update.update(bm25_variant=variant, keep_snapshots=1)
    if store == "postgresql":
        update["store_url"] = request.getfixturevalue("postgres_url")
    chosen = settings.model_copy(update=update)
    index, docs = tmp_path / "ix", _documents(squad_dir, 0, 40)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs[:30], "a")
        writer.upsert(docs[30:], "b")
    older = _pipeline(index, chosen, encoder)
    assert older.snapshot.generation == 2
    older_stats = _assert_the_store_gives_the_postings_statistics(older.snapshot)
    before = older.retrieve(QUESTIONS[0], top_k=10).rankings[Stage.BM25]
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.delete([d.id for d in docs[:15]], "a")
    served = _pipeline(index, chosen, encoder)
    assert served.snapshot.generation == 3
    assert isinstance(served.engine, QdrantEngine)
    assert isinstance(served.engine.term_statistics, StoredTermStatistics)
    bm25 = served.retrieve(QUESTIONS[0], top_k=10).rankings[Stage.BM25]
    assert bm25 and served.snapshot._sparse is None  # BM25 served without the folder's postings
    newer_stats = _assert_the_store_gives_the_postings_statistics(served.snapshot)
    assert newer_stats.totals.n_docs < older_stats.totals.n_docs
    # generation 2 is kept (RAG_KEEP_SNAPSHOTS=1): its reader scores as before, from its own statistics
    _assert_the_store_gives_the_postings_statistics(older.snapshot)
    assert older.retrieve(QUESTIONS[0], top_k=10).rankings[Stage.BM25] == before
    # generation 1's ended rows are purged; what generations 2 and 3 read is all that is left
    with Session(served.snapshot.store.engine) as session:
        ended_before_2 = session.scalar(select(func.count()).select_from(TermRow).where(TermRow.deleted_gen <= 2))
        kept = int(session.scalar(select(func.count()).select_from(TermRow)) or 0)
    assert ended_before_2 == 0
    vocabulary = len(BM25Index.load(served.snapshot.directory / "sparse", served.snapshot.params.bm25).vocabulary)
    assert vocabulary < kept < 2 * vocabulary  # the live rows, and generation 2's rows that generation 3 ended


def test_an_index_whose_store_holds_no_bm25_statistics_reads_its_postings_until_the_next_write(
    tmp_path: Path, squad_dir: Path, encoder, settings: Settings
) -> None:
    """A Qdrant index written before the store kept df and N: its readers take them from the snapshot's
    postings, and its next writer stores every term, after which readers take them from the store."""
    from sqlalchemy import delete

    from rag.index.store import BM25TotalsRow, TermRow

    chosen = settings.model_copy(update={"index_engine": "qdrant", "qdrant_path": ":memory:", "token_codec": "float16"})
    index, docs = tmp_path / "ix", _documents(squad_dir, 0, 30)
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs[:20], "a")
    store = Snapshot.load(index, chosen).store
    with Session(store.engine) as session, session.begin():
        session.execute(delete(TermRow))
        session.execute(delete(BM25TotalsRow))
    served = _pipeline(index, chosen, encoder)
    assert isinstance(served.engine, QdrantEngine)
    assert isinstance(served.engine.term_statistics, BM25Index)
    want = served.retrieve(QUESTIONS[0], top_k=10).rankings[Stage.BM25]
    assert want
    with IndexWriter(index, chosen, encoder, show_progress=False) as writer:
        writer.upsert(docs[20:], "b")
    served = _pipeline(index, chosen, encoder)
    assert isinstance(served.engine, QdrantEngine)
    assert isinstance(served.engine.term_statistics, StoredTermStatistics)
    _assert_the_store_gives_the_postings_statistics(served.snapshot)
