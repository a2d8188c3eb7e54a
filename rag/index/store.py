"""Document store (SQLAlchemy 2): collections, documents and chunks, versioned by index generation,
and the index's commit point.

Every row carries the generation that added it and, once removed, the generation that deleted it.
A reader of snapshot ``g`` sees exactly the rows with ``added_gen <= g`` and no ``deleted_gen <= g``.
A generation is committed by one transaction that writes its rows and its ``rag_generations`` row (the
live generation and its snapshot's name): a crash before it leaves rows that no reader sees and that
the next writer rolls back (:meth:`DocumentStore.recover`); after it, the generation is live even if
the folder's ``CURRENT`` pointer was not written yet (the next writer writes it forward).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Double,
    Index,
    Integer,
    Select,
    String,
    Text,
    and_,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

from rag.errors import IndexBusyError
from rag.index.term_statistics import BM25Totals, TermChanges
from rag.objects import Chunk, Document, DocumentFields, PassageFields

_IN_BATCH = 900  # stay under SQLite's bound-parameter limit
WRITER_LOCK = 0x7261_676C_6174_6531  # the advisory lock one writer of a PostgreSQL store holds ("raglate1")
DocKey = tuple[str, str]  # (collection, document id): a document's identity


class _Base(DeclarativeBase):
    pass


class CollectionRow(_Base):
    __tablename__ = "rag_collections"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


DOCUMENT_KEY_INDEX = "ix_rag_documents_id_collection"
log = logging.getLogger("rag.index")


class DocumentRow(_Base):
    __tablename__ = "rag_documents"
    # A document is (collection, id). Without this index SQLite joined chunks to their documents through
    # the collection index, reading every document of the collection per hit (10 hits of scifact:
    # ~10 ms a query instead of well under 1).
    __table_args__ = (Index(DOCUMENT_KEY_INDEX, "id", "collection"),)
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(512), index=True)
    collection: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[str] = mapped_column(String(40), default="")
    doc_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    added_gen: Mapped[int] = mapped_column(Integer, index=True)
    deleted_gen: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class ChunkRow(_Base):
    __tablename__ = "rag_chunks"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), index=True)
    document_id: Mapped[str] = mapped_column(String(512), index=True)
    # A document is (collection, id): the same id in two collections is two documents.
    collection: Mapped[str] = mapped_column(String(200), index=True, default="")
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_start: Mapped[int] = mapped_column(Integer)
    token_end: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    added_gen: Mapped[int] = mapped_column(Integer, index=True)
    deleted_gen: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class GenerationRow(_Base):
    """One committed generation: the highest is the live one (the commit point: see the module's doc)."""

    __tablename__ = "rag_generations"
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    snapshot: Mapped[str] = mapped_column(String(64))
    committed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TermRow(_Base):
    """A BM25 term's df over the generations ``added_gen`` up to (not including) ``deleted_gen``, kept for
    the Qdrant engine's query side (:mod:`rag.index.term_statistics`). Looked up by a 64-bit hash of the
    term, since a term may be longer than an index entry may be; the term itself settles a collision."""

    __tablename__ = "rag_bm25_terms"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    term_key: Mapped[int] = mapped_column(BigInteger, index=True)
    term: Mapped[str] = mapped_column(Text)
    term_id: Mapped[int] = mapped_column(Integer, index=True)
    df: Mapped[int] = mapped_column(Integer)
    added_gen: Mapped[int] = mapped_column(Integer, index=True)
    deleted_gen: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class BM25TotalsRow(_Base):
    """The corpus-wide BM25 numbers of a generation that changed them; a generation without a row reads
    the last one before it."""

    __tablename__ = "rag_bm25_totals"
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n_docs: Mapped[int] = mapped_column(BigInteger)
    total_length: Mapped[int] = mapped_column(BigInteger)
    okapi_floor: Mapped[float] = mapped_column(Double)
    max_idf: Mapped[float] = mapped_column(Double)


Versioned = type[DocumentRow] | type[ChunkRow] | type[TermRow]


@dataclass(frozen=True)
class LiveGeneration:
    """What the store says is live: the generation and its snapshot folder's name."""

    generation: int
    snapshot: str


@dataclass(frozen=True, kw_only=True)
class StoredDocument(DocumentFields):
    """A live document as the store holds it."""

    id: str
    collection: str
    metadata: dict[str, Any]
    content_hash: str
    n_chunks: int


@dataclass(frozen=True, kw_only=True)
class StoredChunk(PassageFields):
    """A live chunk with the fields of its document that evidence needs."""

    id: str
    document_id: str
    ordinal: int
    text: str
    collection: str


def _live(row: Versioned, generation: int) -> ColumnElement[bool]:
    return and_(
        row.added_gen <= generation,
        or_(row.deleted_gen.is_(None), row.deleted_gen > generation),
    )


_VERSIONED: tuple[Versioned, ...] = (DocumentRow, ChunkRow, TermRow)


def term_key(term: str) -> int:
    """A term's 64-bit lookup key (signed, as SQL's BIGINT)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def _document_count(generation: int) -> Select[int]:
    """How many documents are live in ``generation``."""
    return select(func.count()).select_from(DocumentRow).where(_live(DocumentRow, generation))


# Plain columns, not ORM objects: the fetch runs on every query, and building entities cost ~2 ms of it.
STORED_CHUNK_COLUMNS = (
    ChunkRow.id,
    ChunkRow.document_id,
    ChunkRow.ordinal,
    ChunkRow.text,
    ChunkRow.page,
    DocumentRow.title,
    DocumentRow.source,
    DocumentRow.url,
    DocumentRow.date,
    DocumentRow.collection,
)
STORED_CHUNK_FIELDS = tuple(column.key for column in STORED_CHUNK_COLUMNS)  # StoredChunk's, in that order


def stored_chunks_query(chunk_ids: Sequence[str], generation: int) -> Select[*tuple[Any, ...]]:
    """The live chunks of ``chunk_ids`` joined with their document's fields (every query runs it)."""
    return (
        select(*STORED_CHUNK_COLUMNS)
        .join(DocumentRow, and_(DocumentRow.id == ChunkRow.document_id, DocumentRow.collection == ChunkRow.collection))
        .where(ChunkRow.id.in_(chunk_ids), _live(ChunkRow, generation), _live(DocumentRow, generation))
    )


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled once to the driver's SQL, with where each bound value comes from: executing
    it skips SQLAlchemy's compilation, which was 0.46 of the 0.56 ms a query's fetch took (bench in
    docs/benchmarks.md)."""

    sql: str
    sources: tuple[tuple[str, int | None], ...]  # (parameter name, index of the chunk id or None: generation)
    positional: bool

    def parameters(self, chunk_ids: Sequence[str], generation: int) -> tuple[Any, ...] | dict[str, Any]:
        values = [(name, generation if i is None else chunk_ids[i]) for name, i in self.sources]
        return tuple(v for _, v in values) if self.positional else dict(values)


def compile_chunks_statement(dialect: Any, n_ids: int) -> DriverStatement:
    """:func:`stored_chunks_query` for ``n_ids`` ids, compiled for ``dialect``. Each parameter is traced
    to its value by compiling with marked placeholders, not by SQLAlchemy's naming of expanded lists."""
    marks = [f"\x00chunk{i}" for i in range(n_ids)]
    generation_mark = -0x5EED
    compiled = stored_chunks_query(marks, generation_mark).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    index_of = {mark: i for i, mark in enumerate(marks)}
    names = list(compiled.positiontup or []) if dialect.positional else list(compiled.params)
    sources = []
    for name in names:
        value = compiled.params[name]
        if value != generation_mark and value not in index_of:
            raise RuntimeError(f"cannot trace the fetch statement's parameter {name!r}")
        sources.append((name, None if value == generation_mark else index_of[value]))
    return DriverStatement(compiled.string, tuple(sources), bool(dialect.positional))


def _batches(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


def _to_stored(row: DocumentRow) -> StoredDocument:
    return StoredDocument(
        id=row.id,
        collection=row.collection,
        title=row.title,
        source=row.source,
        url=row.url,
        date=row.date,
        metadata=dict(row.doc_metadata or {}),
        content_hash=row.content_hash,
        n_chunks=row.n_chunks,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def redact_url(url: str) -> str:
    """The URL without its password, safe to write to a manifest or a log."""
    return make_url(url).render_as_string(hide_password=True)


class DocumentStore:
    """SQLAlchemy-backed store; SQLite file by default, any SQLAlchemy URL (PostgreSQL) by setting."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # One writer at a time holds the index lock; readers may share the file from other threads.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True, **kwargs)
        self._chunks_statements: dict[int, DriverStatement] = {}  # by (padded) number of ids

    def create_schema(self) -> None:
        """The tables of this release (an older store is migrated when opened: ``store_for``)."""
        _Base.metadata.create_all(self.engine)

    def migrate(self) -> None:
        """Bring a store written by an earlier release up to this schema (a no-op once it is; safe when
        several processes open it at once). Chunks once did not know their document's collection (ids
        were one global space then, so each chunk takes its document's), nor their page (None: unknown);
        documents had no (id, collection) index."""
        table = ChunkRow.__tablename__
        documents = DocumentRow.__tablename__
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
            return  # a store not created yet (a new index) has nothing to migrate
        if not inspect(self.engine).has_table(table):
            return

        def has_column(name: str) -> bool:
            return name in {c["name"] for c in inspect(self.engine).get_columns(table)}

        def has_document_key() -> bool:
            return DOCUMENT_KEY_INDEX in {i["name"] for i in inspect(self.engine).get_indexes(documents)}

        self._migrate_step(
            lambda: has_column("collection"),
            f"ALTER TABLE {table} ADD COLUMN collection VARCHAR(200) NOT NULL DEFAULT ''",
            f"UPDATE {table} SET collection = COALESCE((SELECT d.collection FROM "
            f"{documents} d WHERE d.id = {table}.document_id "
            "ORDER BY d.added_gen DESC LIMIT 1), '')",
            f"CREATE INDEX IF NOT EXISTS ix_{table}_collection ON {table} (collection)",
        )
        self._migrate_step(lambda: has_column("page"), f"ALTER TABLE {table} ADD COLUMN page INTEGER")
        try:  # an index only makes lookups fast: a reader that may not write serves without it
            self._migrate_step(
                has_document_key, f"CREATE INDEX IF NOT EXISTS {DOCUMENT_KEY_INDEX} ON {documents} (id, collection)"
            )
        except Exception as exc:  # any failure to write leaves a slower, correct store
            log.warning("could not add %s to %s (%s): hits are fetched more slowly", DOCUMENT_KEY_INDEX, documents, exc)

    def _migrate_step(self, done: Callable[[], bool], *statements: str) -> None:
        """Run ``statements`` in one transaction unless ``done()`` says the schema has the change."""
        if done():
            return
        try:
            with self.engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
        except Exception:
            # another process migrated it first; anything else is a real failure
            if not done():
                raise

    def drop_schema(self) -> None:
        _Base.metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def release_session_locks(connection: Connection) -> None:
        """Close a connection that holds session-level advisory locks so that the server drops them:
        a plain close returns it to the pool, where the session, and its locks, would live on."""
        connection.invalidate()  # closes the server session
        connection.close()

    def take_writer_lock(self) -> Connection | None:
        """PostgreSQL: take the store's advisory writer lock on a connection of its own and return that
        connection (:meth:`release_session_locks` releases the lock, and so does the server when the
        process dies), or raise :class:`IndexBusyError` while another session, on any machine, holds it.
        Other backends: None (the index folder's ``flock`` is the lock)."""
        if self.engine.url.get_backend_name() != "postgresql":
            return None
        connection = self.engine.connect()
        try:
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": WRITER_LOCK}).scalar()
            connection.commit()  # the lock belongs to the session, not to this transaction
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            raise IndexBusyError(f"another writer holds the store's lock ({redact_url(self.url)})")
        return connection

    # --- writer side -------------------------------------------------------------------------

    def live_generation(self) -> LiveGeneration | None:
        """The last committed generation, or None for a store that never committed one (a new index, or
        one whose store is older than ``rag_generations``: its folder's ``CURRENT`` says)."""
        if not inspect(self.engine).has_table(GenerationRow.__tablename__):  # a reader of a store not migrated yet
            return None
        with Session(self.engine) as session:
            row = session.scalars(select(GenerationRow).order_by(GenerationRow.generation.desc()).limit(1)).first()
            return LiveGeneration(row.generation, row.snapshot) if row is not None else None

    def holds_rows(self) -> bool:
        """Whether any document row is stored (of any generation)."""
        with Session(self.engine) as session:
            return session.scalars(select(DocumentRow.pk).limit(1)).first() is not None

    def recover(self, generation: int) -> None:
        """Undo every change of generations after ``generation`` (a writer that died before committing)."""
        with Session(self.engine) as session, session.begin():
            for row in _VERSIONED:
                session.execute(delete(row).where(row.added_gen > generation))
                session.execute(update(row).where(row.deleted_gen > generation).values(deleted_gen=None))
            session.execute(delete(BM25TotalsRow).where(BM25TotalsRow.generation > generation))
            session.execute(delete(GenerationRow).where(GenerationRow.generation > generation))

    def purge(self, up_to_generation: int) -> None:
        """Physically remove rows deleted at or before ``up_to_generation`` (no snapshot still needs them)."""
        with Session(self.engine) as session, session.begin():
            for row in _VERSIONED:
                session.execute(delete(row).where(row.deleted_gen <= up_to_generation))
            # the oldest kept generation reads the last totals at or before it: keep that row
            oldest_read = select(func.max(BM25TotalsRow.generation)).where(BM25TotalsRow.generation <= up_to_generation)
            session.execute(delete(BM25TotalsRow).where(BM25TotalsRow.generation < oldest_read.scalar_subquery()))
            session.execute(delete(GenerationRow).where(GenerationRow.generation < up_to_generation))

    def live_documents(self, collection: str, ids: Sequence[str], generation: int) -> dict[str, StoredDocument]:
        """The live documents of ``collection`` among ``ids``, by id."""
        found: dict[str, StoredDocument] = {}
        with Session(self.engine) as session:
            for batch in _batches(list(ids)):
                rows = session.scalars(
                    select(DocumentRow).where(
                        DocumentRow.collection == collection, DocumentRow.id.in_(batch), _live(DocumentRow, generation)
                    )
                )
                found.update((r.id, _to_stored(r)) for r in rows)
        return found

    def collections_of(self, ids: Sequence[str], generation: int) -> dict[str, list[str]]:
        """Every collection that holds a live document of each id (ids found nowhere are left out)."""
        found: dict[str, list[str]] = {}
        with Session(self.engine) as session:
            for batch in _batches(list(ids)):
                rows = session.execute(
                    select(DocumentRow.id, DocumentRow.collection)
                    .where(DocumentRow.id.in_(batch), _live(DocumentRow, generation))
                    .order_by(DocumentRow.collection)
                )
                for doc_id, collection in rows:
                    found.setdefault(doc_id, []).append(collection)
        return found

    def live_chunk_ids(self, collection: str, document_ids: Sequence[str], generation: int) -> dict[str, list[str]]:
        """Chunk ids of each live document of ``collection``, in ordinal order."""
        found: dict[str, list[str]] = {}
        with Session(self.engine) as session:
            for batch in _batches(list(document_ids)):
                rows = session.execute(
                    select(ChunkRow.document_id, ChunkRow.id)
                    .where(
                        ChunkRow.collection == collection,
                        ChunkRow.document_id.in_(batch),
                        _live(ChunkRow, generation),
                    )
                    .order_by(ChunkRow.document_id, ChunkRow.ordinal)
                )
                for doc_id, cid in rows:
                    found.setdefault(doc_id, []).append(cid)
        return found

    def commit_generation(
        self,
        generation: int,
        collection: str | None,
        documents: Sequence[tuple[Document, str, int]],
        chunks: Sequence[Chunk],
        deleted_documents: Sequence[DocKey],
        deleted_chunk_ids: Sequence[str],
        *,
        snapshot: str = "",
        before_commit: Callable[[int], None] | None = None,
        bm25_terms: TermChanges | None = None,
    ) -> None:
        """Write one generation's changes and make it the live one, in a single transaction: the commit.

        ``documents`` are (document, content hash, chunk count) triples added to or replaced in
        ``collection``, ``chunks`` their new chunks; replaced and deleted documents (``(collection, id)``)
        get ``deleted_gen = generation``, as do the listed chunks. Nothing outside the named
        collections is touched. ``snapshot`` is the generation's snapshot folder; ``before_commit`` is
        called inside the transaction, with the generation's live document count, to put that folder in
        place (what it raises rolls everything back). ``bm25_terms``, where the engine reads BM25's
        statistics from the store, are the generation's changes to them.
        """
        now = datetime.now(UTC)
        target = collection or "default"
        with Session(self.engine) as session, session.begin():
            if collection is not None and session.get(CollectionRow, collection) is None:
                session.add(CollectionRow(name=collection, created_at=now))
            gone: dict[str, list[str]] = {target: [d.id for d, _, _ in documents]} if documents else {}
            for where, doc_id in deleted_documents:
                gone.setdefault(where, []).append(doc_id)
            for where, ids in gone.items():
                for batch in _batches(ids):
                    session.execute(
                        update(DocumentRow)
                        .where(
                            DocumentRow.collection == where,
                            DocumentRow.id.in_(batch),
                            _live(DocumentRow, generation - 1),
                        )
                        .values(deleted_gen=generation)
                    )
            for batch in _batches(list(deleted_chunk_ids)):
                session.execute(
                    update(ChunkRow)
                    .where(ChunkRow.id.in_(batch), _live(ChunkRow, generation - 1))
                    .values(deleted_gen=generation)
                )
            session.add_all(
                DocumentRow(
                    id=doc.id,
                    collection=target,
                    source=doc.source,
                    title=doc.title,
                    url=doc.url,
                    date=doc.date,
                    doc_metadata=json.loads(json.dumps(doc.metadata, default=str)),
                    content_hash=content_hash,
                    n_chunks=n_chunks,
                    added_gen=generation,
                )
                for doc, content_hash, n_chunks in documents
            )
            session.add_all(
                ChunkRow(
                    id=c.id,
                    document_id=c.document_id,
                    collection=target,
                    ordinal=c.ordinal,
                    text=c.text,
                    token_start=c.token_start,
                    token_end=c.token_end,
                    char_start=c.char_start,
                    char_end=c.char_end,
                    page=c.page,
                    added_gen=generation,
                )
                for c in chunks
            )
            if bm25_terms is not None:
                self._write_term_changes(session, generation, bm25_terms)
            if before_commit is not None:
                session.flush()
                before_commit(int(session.scalar(_document_count(generation)) or 0))
            session.add(GenerationRow(generation=generation, snapshot=snapshot, committed_at=now))

    @staticmethod
    def _write_term_changes(session: Session, generation: int, changes: TermChanges) -> None:
        ending = update(TermRow).where(TermRow.deleted_gen.is_(None)).values(deleted_gen=generation)
        if changes.closed is None:
            session.execute(ending)
        else:
            for start in range(0, len(changes.closed), _IN_BATCH):
                session.execute(ending.where(TermRow.term_id.in_(changes.closed[start : start + _IN_BATCH])))
        opened = [
            {"term_key": term_key(term), "term": term, "term_id": tid, "df": df, "added_gen": generation}
            for term, tid, df in changes.opened
        ]
        if opened:
            session.execute(insert(TermRow), opened)
        session.add(BM25TotalsRow(generation=generation, **asdict(changes.totals)))

    # --- reader side -------------------------------------------------------------------------

    def bm25_totals(self, generation: int) -> BM25Totals | None:
        """The BM25 totals ``generation`` reads, or None where the store keeps no BM25 statistics."""
        if not inspect(self.engine).has_table(BM25TotalsRow.__tablename__):  # a store not migrated yet
            return None
        with Session(self.engine) as session:
            row = session.scalars(
                select(BM25TotalsRow)
                .where(BM25TotalsRow.generation <= generation)
                .order_by(BM25TotalsRow.generation.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return BM25Totals(row.n_docs, row.total_length, row.okapi_floor, row.max_idf)

    def term_dfs(self, terms: Sequence[str], generation: int) -> dict[str, tuple[int, int]]:
        """term -> (term id, df) in ``generation``, for the ``terms`` it holds."""
        wanted = set(terms)
        keys = sorted({term_key(t) for t in wanted})
        found: dict[str, tuple[int, int]] = {}
        with Session(self.engine) as session:
            for start in range(0, len(keys), _IN_BATCH):
                rows = session.execute(
                    select(TermRow.term, TermRow.term_id, TermRow.df).where(
                        TermRow.term_key.in_(keys[start : start + _IN_BATCH]), _live(TermRow, generation)
                    )
                )
                found.update((term, (tid, df)) for term, tid, df in rows if term in wanted)
        return found

    # --- reader side: documents and chunks ----------------------------------------------------

    def get_document(self, collection: str, document_id: str, generation: int) -> StoredDocument | None:
        return self.live_documents(collection, [document_id], generation).get(document_id)

    def get_chunks(self, chunk_ids: Sequence[str], generation: int) -> dict[str, StoredChunk]:
        """Live chunks by id, joined with their document's fields."""
        found: dict[str, StoredChunk] = {}
        with self.engine.connect() as connection:
            for batch in _batches(list(chunk_ids)):
                # Padded to a power of two with repeats (harmless in IN): a dozen statements serve every count.
                size = min(1 << (len(batch) - 1).bit_length(), _IN_BATCH)
                padded = [*batch, *[batch[0]] * (size - len(batch))]
                statement = self._chunks_statements.get(size)
                if statement is None:
                    statement = compile_chunks_statement(self.engine.dialect, size)
                    self._chunks_statements[size] = statement
                result = connection.exec_driver_sql(statement.sql, statement.parameters(padded, generation))
                for row in result:
                    chunk = StoredChunk(**dict(zip(STORED_CHUNK_FIELDS, row, strict=True)))
                    found[chunk.id] = chunk
        return found

    def preceding_chunks(self, chunk_ids: Sequence[str], generation: int) -> dict[str, tuple[str, int]]:
        """For each of ``chunk_ids`` that is not its document's first passage: the live passage before it
        (its text) and where, in that text, the chunk begins (the two overlap)."""
        current, before = aliased(ChunkRow), aliased(ChunkRow)
        found: dict[str, tuple[str, int]] = {}
        with self.engine.connect() as connection:
            for batch in _batches(list(chunk_ids)):
                query = (
                    select(current.id, before.text, current.char_start - before.char_start)
                    .join(
                        before,
                        and_(
                            before.collection == current.collection,
                            before.document_id == current.document_id,
                            before.ordinal == current.ordinal - 1,
                        ),
                    )
                    .where(current.id.in_(batch), _live(current, generation), _live(before, generation))
                )
                for chunk, text, offset in connection.execute(query):
                    found[chunk] = (text, int(offset))
        return found

    def chunk_fields(self, generation: int) -> dict[str, tuple[str, str, str]]:
        """(collection, source, date) of every live chunk's document, by chunk id, for filters."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(ChunkRow.id, DocumentRow.collection, DocumentRow.source, DocumentRow.date)
                .join(
                    DocumentRow,
                    and_(DocumentRow.id == ChunkRow.document_id, DocumentRow.collection == ChunkRow.collection),
                )
                .where(_live(ChunkRow, generation), _live(DocumentRow, generation))
            )
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def document_keys(self, generation: int) -> list[DocKey]:
        """(collection, id) of every live document."""
        with Session(self.engine) as session:
            rows = session.execute(select(DocumentRow.collection, DocumentRow.id).where(_live(DocumentRow, generation)))
            return [(r[0], r[1]) for r in rows]

    def count_documents(self, generation: int, collection: str | None = None) -> int:
        query = _document_count(generation)
        if collection is not None:
            query = query.where(DocumentRow.collection == collection)
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def count_chunks(self, generation: int) -> int:
        query = select(func.count()).select_from(ChunkRow).where(_live(ChunkRow, generation))
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def collections(self) -> list[str]:
        with Session(self.engine) as session:
            return list(session.scalars(select(CollectionRow.name).order_by(CollectionRow.name)))

    def collection_counts(self, generation: int) -> dict[str, int]:
        """Live documents per collection, every collection listed (empty ones with 0)."""
        with Session(self.engine) as session:
            counts = {name: 0 for name in session.scalars(select(CollectionRow.name).order_by(CollectionRow.name))}
            rows = session.execute(
                select(DocumentRow.collection, func.count())
                .where(_live(DocumentRow, generation))
                .group_by(DocumentRow.collection)
            )
            for name, count in rows:
                counts[name] = int(count)
        return counts

    def create_collection(self, name: str) -> bool:
        """Create an empty collection; False when it exists already."""
        with Session(self.engine) as session, session.begin():
            if session.get(CollectionRow, name) is not None:
                return False
            session.add(CollectionRow(name=name, created_at=datetime.now(UTC)))
        return True

    def drop_collection(self, name: str) -> None:
        """Forget a collection's name (its documents must be deleted through the index writer first)."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(CollectionRow).where(CollectionRow.name == name))

    def document_ids(self, collection: str, generation: int) -> list[str]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(DocumentRow.id).where(DocumentRow.collection == collection, _live(DocumentRow, generation))
                )
            )

    def document_chunks(self, collection: str, document_id: str, generation: int) -> list[StoredChunk]:
        """A live document's chunks in order."""
        ids = self.live_chunk_ids(collection, [document_id], generation).get(document_id, [])
        chunks = self.get_chunks(ids, generation)
        return [chunks[i] for i in ids if i in chunks]

    def size_bytes(self) -> int:
        """Bytes the store occupies: the SQLite file, or the tables' total relation size in PostgreSQL."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "")
            return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
        if url.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                total = 0
                for table in _Base.metadata.tables:
                    total += int(conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar() or 0)
                return total
        return 0
