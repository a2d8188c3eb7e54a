"""The store's generation visibility, roll-back and purge, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import event, inspect, text

from rag.index.store import DOCUMENT_KEY_INDEX, DocumentStore, LiveGeneration, sqlite_url, stored_chunks_query
from rag.objects import Chunk, Document


def _chunk(doc: str, ordinal: int, text: str) -> Chunk:
    return Chunk(
        id=f"{doc}-{ordinal}",
        document_id=doc,
        ordinal=ordinal,
        text=text,
        title="T",
        token_start=0,
        token_end=3,
        char_start=0,
        char_end=len(text),
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = sqlite_url(tmp_path / "store.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = DocumentStore(url)
    store.create_schema()
    yield store
    store.close()


def test_generations_isolate_readers(store: DocumentStore) -> None:
    doc = Document(
        id="d1", text="alpha beta", title="T", source="s", url="http://x", date="2021-05-01", metadata={"k": 1}
    )
    store.commit_generation(1, "c1", [(doc, "h1", 1)], [_chunk("d1", 0, "alpha beta")], [], [])
    assert store.count_documents(0) == 0
    assert store.count_documents(1) == 1
    stored = store.get_document("c1", "d1", 1)
    assert stored is not None and stored.date == "2021-05-01" and stored.metadata == {"k": 1}
    assert stored.collection == "c1" and stored.url == "http://x"
    # generation 2 replaces the document: readers of 1 still see the old version
    new = Document(id="d1", text="alpha gamma", title="T2")
    store.commit_generation(2, "c1", [(new, "h2", 1)], [_chunk("d1", 1, "alpha gamma")], [], ["d1-0"])
    assert store.get_document("c1", "d1", 1).content_hash == "h1"  # type: ignore[union-attr]
    assert store.get_document("c1", "d1", 2).content_hash == "h2"  # type: ignore[union-attr]
    assert list(store.get_chunks(["d1-0", "d1-1"], 1)) == ["d1-0"]
    assert list(store.get_chunks(["d1-0", "d1-1"], 2)) == ["d1-1"]
    assert store.get_chunks(["d1-1"], 2)["d1-1"].title == "T2"
    assert store.live_chunk_ids("c1", ["d1"], 2) == {"d1": ["d1-1"]}
    assert store.collections() == ["c1"]


def test_recover_rolls_back_an_uncommitted_generation(store: DocumentStore) -> None:
    store.commit_generation(1, "c", [(Document(id="a", text="x"), "h", 1)], [_chunk("a", 0, "x")], [], [])
    # rows of a generation after the one a store older than `rag_generations` says is live (its CURRENT)
    store.commit_generation(
        2, "c", [(Document(id="b", text="y"), "h", 1)], [_chunk("b", 0, "y")], [("c", "a")], ["a-0"]
    )
    store.recover(1)
    assert store.live_generation() == LiveGeneration(1, "")
    assert store.count_documents(1) == 1 and store.get_document("c", "a", 1) is not None
    assert store.get_document("c", "b", 5) is None  # the rolled back row is gone for every generation
    assert store.count_chunks(1) == 1


def test_purge_removes_only_rows_no_snapshot_needs(store: DocumentStore) -> None:
    store.commit_generation(1, "c", [(Document(id="a", text="x"), "h", 1)], [_chunk("a", 0, "x")], [], [])
    store.commit_generation(2, "c", [], [], [("c", "a")], ["a-0"])
    store.purge(1)
    assert store.get_document("c", "a", 1) is not None  # deleted in 2: generation 1 still needs it
    store.purge(2)
    assert store.get_document("c", "a", 1) is None
    assert store.size_bytes() > 0


def test_a_generation_is_committed_with_its_rows_or_not_at_all(store: DocumentStore) -> None:
    assert store.live_generation() is None and not store.holds_rows()
    counted: list[int] = []
    store.commit_generation(
        1,
        "c",
        [(Document(id=d, text="x"), "h", 1) for d in ("a", "b")],
        [_chunk(d, 0, "x") for d in ("a", "b")],
        [],
        [],
        snapshot="gen-000001",
        before_commit=counted.append,  # inside the transaction: the generation's live documents
    )
    assert counted == [2] and store.live_generation() == LiveGeneration(1, "gen-000001")

    def fails(documents: int) -> None:
        counted.append(documents)
        raise RuntimeError("the snapshot could not be put in place")

    with pytest.raises(RuntimeError):
        store.commit_generation(
            2,
            "c",
            [(Document(id="c", text="y"), "h", 1)],
            [_chunk("c", 0, "y")],
            [("c", "a")],
            ["a-0"],
            snapshot="gen-000002",
            before_commit=fails,
        )
    assert counted == [2, 2]  # b kept, a deleted, c added: 2 live in generation 2
    assert store.live_generation() == LiveGeneration(1, "gen-000001")  # nothing of generation 2 stayed
    assert store.count_documents(2) == 2 and store.get_document("c", "c", 2) is None
    assert store.get_document("c", "a", 2) is not None
    store.commit_generation(2, "c", [], [], [("c", "a")], ["a-0"], snapshot="gen-000002")
    store.commit_generation(3, "c", [], [], [("c", "b")], ["b-0"], snapshot="gen-000003")
    store.purge(2)  # generations before 2 are no snapshot's any more
    assert store.live_generation() == LiveGeneration(3, "gen-000003")


def test_hits_find_their_document_by_key_also_in_a_store_of_an_earlier_release(store: DocumentStore) -> None:
    documents = [(Document(id=f"d{i}", text="x"), "h", 1) for i in range(50)]
    store.commit_generation(1, "c", documents, [_chunk(f"d{i}", 0, "x") for i in range(50)], [], [])
    with store.engine.begin() as connection:  # a store written before the (id, collection) index existed
        connection.execute(text(f"DROP INDEX {DOCUMENT_KEY_INDEX}"))
    store.migrate()
    assert DOCUMENT_KEY_INDEX in {i["name"] for i in inspect(store.engine).get_indexes("rag_documents")}
    store.migrate()  # a no-op once migrated
    hits = [f"d{i}-0" for i in range(10)]  # a query's 10 hits
    assert sorted(store.get_chunks(hits, 1)) == sorted(hits)
    if store.engine.url.get_backend_name() == "sqlite":
        # SQLite joined each hit to the documents through the collection index, reading every document of
        # the collection per hit (~10 ms of a scifact query)
        query = stored_chunks_query(hits, 1).compile(store.engine, compile_kwargs={"literal_binds": True})
        with store.engine.connect() as connection:
            plan = " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}")))
        assert f"USING INDEX {DOCUMENT_KEY_INDEX}" in plan, plan


def test_a_store_that_cannot_take_the_index_still_serves(
    store: DocumentStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.commit_generation(1, "c", [(Document(id="a", text="x"), "h", 1)], [_chunk("a", 0, "x")], [], [])
    with store.engine.begin() as connection:
        connection.execute(text(f"DROP INDEX {DOCUMENT_KEY_INDEX}"))

    def refuse(conn, cursor, statement, parameters, context, executemany) -> None:  # a reader that may not write
        if statement.startswith("CREATE INDEX"):
            raise PermissionError("read-only store")

    event.listen(store.engine, "before_cursor_execute", refuse)
    try:
        with caplog.at_level("WARNING", logger="rag.index"):
            store.migrate()
    finally:
        event.remove(store.engine, "before_cursor_execute", refuse)
    assert f"could not add {DOCUMENT_KEY_INDEX}" in caplog.text
    assert list(store.get_chunks(["a-0"], 1)) == ["a-0"]


def test_chunks_are_fetched_by_any_count_of_ids_with_every_field(store: DocumentStore) -> None:
    # the fetch runs precompiled SQL, one statement per count of ids: each value must land in its place
    odd = 'it\'s "quoted" -- ; drop'
    documents = [(Document(id=f"d{i}", text="x", title=f"T{i}", url=f"u{i}"), "h", 1) for i in range(950)]
    chunks = [_chunk(f"d{i}", 0, f"text {i}") for i in range(950)] + [_chunk(odd, 0, "odd")]
    store.commit_generation(1, "c", [*documents, (Document(id=odd, text="odd"), "h", 1)], chunks, [], [])
    store.commit_generation(2, "c", [], [], [], ["d3-0"])
    for ids in (["d5-0"], ["d7-0", "d2-0", "missing"], [f"d{i}-0" for i in range(950)], [f"{odd}-0", "d1-0"]):
        for generation in (1, 2):
            found = store.get_chunks(ids, generation)
            live = {cid for cid in ids if cid != "missing" and not (generation == 2 and cid == "d3-0")}
            assert set(found) == live
            for cid, chunk in found.items():
                number = cid.removeprefix("d").removesuffix("-0")
                assert chunk.id == cid and chunk.document_id == cid[:-2] and chunk.collection == "c"
                if cid != f"{odd}-0":
                    assert (chunk.text, chunk.title, chunk.url) == (f"text {number}", f"T{number}", f"u{number}")


def test_each_chunk_finds_the_live_passage_before_it_in_its_own_document(store: DocumentStore) -> None:
    text = "One two. Three four five six. Seven."
    first = Chunk(id="a-0", document_id="a", ordinal=0, text=text[:21], title="T", token_start=0, token_end=4,
                  char_start=0, char_end=21)  # fmt: skip
    second = Chunk(id="a-1", document_id="a", ordinal=1, text=text[14:], title="T", token_start=3, token_end=7,
                   char_start=14, char_end=len(text))  # fmt: skip
    documents = [(Document(id="a", text=text), "h", 1), (Document(id="b", text="x"), "h", 1)]
    store.commit_generation(1, "c", documents, [first, second, _chunk("b", 1, "x")], [], [])
    # the same document id in another collection is another document
    store.commit_generation(2, "other", [(Document(id="a", text="y"), "h", 1)], [_chunk("a", 2, "y")], [], [])
    assert store.preceding_chunks(["a-0", "a-1", "b-1", "a-2", "missing"], 2) == {"a-1": (text[:21], 14)}
    store.commit_generation(3, "c", [], [], [], ["a-0"])  # the passage before is gone in generation 3
    assert store.preceding_chunks(["a-1"], 3) == {}
    assert store.preceding_chunks(["a-1"], 2) == {"a-1": (text[:21], 14)}
