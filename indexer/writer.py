"""The one writer of an index directory: add, replace and delete documents, atomically.

A change is prepared beside the live snapshot (new rows encoded, kept rows copied, the folder moved into
place) and committed by one store transaction that writes its rows and makes its generation the live one
(``DocumentStore.commit_generation``: the commit point, in PostgreSQL where the store is). ``CURRENT``,
which readers of the folder follow, is written right after. A crash before the commit leaves the previous
snapshot whole, and the next writer rolls the store and the folder back to it; a crash after it leaves the
new generation committed, and the next writer writes ``CURRENT`` forward.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
from sqlalchemy.engine import Connection
from tqdm import tqdm

from indexer.chunking import chunk_documents
from rag.compute.ray_encoding import encode_passages
from rag.encode.colbert import ColBERTEncoder
from rag.encode.encoder import Encoded, Encoder
from rag.encode.projection import load_head, project_tokens
from rag.errors import IndexBusyError, IndexCorruptError, InputError
from rag.index.arrays import fsync_dir, save_array, write_text_atomic
from rag.index.bm25 import BM25Index
from rag.index.codecs import TokenCodec, make_codec
from rag.index.dense import DenseIndex
from rag.index.manifest import MANIFEST_FILE, EngineParams, FileEntry, FinalStageChoice, IndexParams, Manifest, now_iso
from rag.index.multivector import MultiVectorIndex, MultiVectorWriter
from rag.index.qdrant import QdrantCollection, collection_name, connect, day_number
from rag.index.snapshot import (
    CURRENT_FILE,
    DELETED_ROWS_FILE,
    PROJECTED_DIR,
    SNAPSHOTS_DIR,
    Snapshot,
    current_snapshot_name,
    store_for,
)
from rag.index.store import DocKey, DocumentStore, redact_url
from rag.index.term_statistics import TermChanges, term_changes
from rag.objects import Chunk, Document, is_iso_date
from rag.settings import Settings

ENCODE_BLOCK = 1024  # chunks per encoder call: long enough for length-sorted batching, short for memory
PROJECT_BLOCK = 256  # Qdrant points projected through a new head per round trip
# Share of a snapshot's rows that may be deleted rows kept as tombstones: a delete below it links the
# arrays of the live snapshot and marks rows (seconds at 1M chunks, where copying them took minutes);
# past it, or at the next change that writes arrays anyway (an add, a replace), they are compacted away.
TOMBSTONE_SHARE = 0.10


@dataclass(frozen=True)
class ChangeSummary:
    """What one committed change did."""

    generation: int
    added: int
    replaced: int
    unchanged: int
    deleted: int
    chunks_added: int
    chunks_removed: int


@dataclass(frozen=True)
class Change:
    """What one commit does to the index: documents (with content hash and chunk count) written to
    ``collection``, their new chunks, and documents and chunks that go."""

    params: IndexParams
    collection: str | None = None
    documents: Sequence[tuple[Document, str, int]] = ()
    new_chunks: Sequence[Chunk] = ()
    deleted_documents: Sequence[DocKey] = ()  # (collection, id)
    removed_chunk_ids: frozenset[str] = frozenset()
    reweight_bm25: bool = False  # Qdrant: write every BM25 weight again, whatever the drift
    fresh: bool = False  # a full rebuild: no row of the live snapshot is kept (Qdrant: a new collection)


@dataclass
class _Rows:
    """The next snapshot's rows as they are being written: kept rows first, then the new ones."""

    dense: DenseIndex | None  # None where Qdrant holds the vectors
    sparse: BM25Index
    chunk_ids: list[str]
    doc_ids: list[str]
    n_token_vectors: int = 0
    engine: EngineParams | None = None  # the engine's parameters after this change, where they change


class _Projector:
    """Writes a snapshot's projected token vectors (the adapted ColBERT head), when it has a head.

    Rows kept from an older snapshot with the same head are copied; with another head (or none) they
    are projected again from the raw vectors, so a new head never needs the corpus encoded again. New
    passages are projected from their raw vectors as ``raw`` stores them, like the old rows: with a
    lossy codec (binary, pq) their exact vectors would score them above every other passage."""

    def __init__(
        self, index_dir: Path, params: IndexParams, directory: Path, old: Snapshot | None, raw: TokenCodec
    ) -> None:
        self.params = params
        self.raw = raw
        self.weight = load_head(index_dir / params.late_projection) if params.late_projection else None
        self.writer = None
        if params.late_projection:
            same_head = old is not None and old.params.late_projection == params.late_projection
            codec = token_codec_for(params, params.late_projection_dim, old.projected if same_head and old else None)
            self.writer = MultiVectorWriter(directory, codec)

    def copy_rows(self, old: Snapshot, rows: np.ndarray) -> None:
        if self.writer is None or self.weight is None:
            return
        if old.projected is not None and old.params.late_projection == self.params.late_projection:
            self.writer.copy_rows(old.projected, rows)
            return
        for start in range(0, len(rows), 256):  # bounded blocks keep memory flat on large indexes
            block = rows[start : start + 256]
            self.append([old.multivector.row(int(r)) for r in block])

    def append(self, token_vectors: Sequence[np.ndarray]) -> None:
        if self.writer is None or self.weight is None or not token_vectors:
            return
        lengths = [len(v) for v in token_vectors]
        projected = project_tokens(self.raw.as_stored(np.concatenate(token_vectors)), self.weight)
        self.writer.append(np.split(projected, np.cumsum(lengths)[:-1]))

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.finish()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def token_codec_for(params: IndexParams, dim: int, old: MultiVectorIndex | None) -> TokenCodec:
    """The codec a new snapshot writes with: the old snapshot's own (fitted once, kept for the index's
    life, so kept rows are copied as bytes), or a new unfitted one when there is none or the codec changes."""
    fresh = make_codec(params.token_codec, dim, params.token_codec_pq_bytes)
    if old is not None and old.codec.name == fresh.name and old.dim == dim and old.codec.width == fresh.width:
        return old.codec
    return fresh


def content_hash(document: Document, collection: str) -> str:
    """Hash of everything stored about a document; equal hashes mean re-adding it changes nothing."""
    payload = json.dumps(
        [collection, document.title, document.text, document.source, document.url, document.date, document.metadata],
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def validate_documents(documents: Sequence[Document]) -> None:
    """Reject a batch with empty ids, empty text, NUL characters (PostgreSQL refuses them), dates that are
    not ISO 8601 (they would compare as text in date filters, and reach the prompt) or repeated ids,
    before anything is written."""
    seen: set[str] = set()
    for doc in documents:
        if any("\x00" in field for field in (doc.id, doc.text, doc.title, doc.source, doc.url, doc.date)):
            raise InputError(f"document {doc.id[:60]!r} contains a NUL character")
        if not doc.id.strip():
            raise InputError(f"a document has an empty id (title {doc.title[:60]!r})")
        if not doc.text.strip():
            raise InputError(f"document {doc.id!r} has empty text")
        if doc.date and not is_iso_date(doc.date):
            raise InputError(f"document {doc.id[:60]!r}: date {doc.date[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)")
        if doc.id in seen:
            raise InputError(f"document id {doc.id!r} appears more than once in the input")
        seen.add(doc.id)


class IndexWriter:
    """Exclusive writer of one index directory (``with IndexWriter(...) as w: w.upsert(...)``)."""

    def __init__(
        self,
        index_dir: Path,
        settings: Settings,
        encoder: Encoder | None = None,
        show_progress: bool = True,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_progress(done, total)`` is called as passages are encoded (for job progress)."""
        self.index_dir = Path(index_dir)
        self.settings = settings
        self._encoder = encoder
        self._late_encoder: ColBERTEncoder | None = None
        self.show_progress = show_progress
        self.on_progress = on_progress
        self._lock_handle: IO[str] | None = None
        self._store_lock: Connection | None = None  # PostgreSQL's advisory writer lock, held on its connection
        self.snapshot: Snapshot | None = None
        self.store: DocumentStore | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> IndexWriter:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.index_dir / ".lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise IndexBusyError(f"another process is writing to {self.index_dir}") from exc
        self._lock_handle = handle
        try:
            self._recover()
        except BaseException:
            self.__exit__(None, None, None)  # locks released: __exit__ is not called when __enter__ raises
            raise
        return self

    def _recover(self) -> None:
        """With the locks held: what a writer that died left behind undone, the live snapshot loaded."""
        self.store = store_for(self.index_dir, self.settings)
        # several machines share one PostgreSQL store: a folder's flock does not reach past one machine
        self._store_lock = self.store.take_writer_lock()
        snapshots = self.index_dir / SNAPSHOTS_DIR
        snapshots.mkdir(exist_ok=True)
        for leftover in snapshots.glob("*.tmp"):  # a writer that died mid-way
            shutil.rmtree(leftover, ignore_errors=True)
        self.store.create_schema()
        self._point_current_at_the_live_generation(snapshots)
        if current_snapshot_name(self.index_dir) is not None:
            self.snapshot = Snapshot.load(self.index_dir, self.settings, store=self.store)
        for directory in snapshots.glob("gen-*"):  # moved into place by a writer that died before its commit
            if directory.suffix != ".tmp" and int(directory.name.split("-")[1]) > self.generation:
                shutil.rmtree(directory, ignore_errors=True)
        self.store.recover(self.generation)
        if self.snapshot is not None and self.snapshot.engine == "qdrant":
            self._roll_back_points(self.snapshot)

    def _point_current_at_the_live_generation(self, snapshots: Path) -> None:
        """``CURRENT`` made to name what the store committed (a writer died between its commit and
        ``CURRENT``); a store that holds another index's generations, or rows without a folder that
        names them, is refused before anything is rolled back."""
        store = self._live_store()
        live, current = store.live_generation(), current_snapshot_name(self.index_dir)
        where = f"the store ({redact_url(store.url)})"
        if live is None:
            # (a store of the folder's own is this index's: rows without CURRENT are a first commit that died)
            if current is None and self.settings.store_url and store.holds_rows():
                raise IndexCorruptError(
                    f"{where} holds documents but {self.index_dir} no index: RAG_STORE_URL names the store "
                    "of another index (give each index a database of its own), or this folder lost its snapshots"
                )
            return
        if not (snapshots / live.snapshot / MANIFEST_FILE).exists():
            raise IndexCorruptError(
                f"{where} committed generation {live.generation}, whose snapshot {live.snapshot} is not in "
                f"{snapshots}: RAG_STORE_URL names the store of another index, or this folder lost its snapshots"
            )
        if current != live.snapshot:
            write_text_atomic(self.index_dir / CURRENT_FILE, live.snapshot + "\n")

    def _roll_back_points(self, live: Snapshot) -> None:
        """Undo a Qdrant writer that died before its commit: its points go, its deletions are forgotten
        (weights it wrote again went to the BM25 slot the live generation does not read), the collection
        of a rebuild it did not commit is dropped, and the alias names the live collection."""
        points = self._points(live.params)
        points.roll_back(live.generation)
        self._drop_unused_collections(live.params)
        if live.params.engine.alias:
            points.point_alias(live.params.engine.alias)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store_lock is not None:
            DocumentStore.release_session_locks(self._store_lock)
            self._store_lock = None
        if self.store is not None:
            self.store.close()
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    @property
    def generation(self) -> int:
        return self.snapshot.generation if self.snapshot is not None else 0

    @property
    def _encoder_model(self) -> str:
        return self.snapshot.params.encoder_model if self.snapshot else self.settings.encoder_model

    @property
    def _late_model(self) -> str:
        return self.snapshot.params.late_model if self.snapshot else self.settings.late_model

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder.from_settings(self.settings, self._encoder_model)
        return self._encoder

    @property
    def late_encoder(self) -> ColBERTEncoder | None:
        """The ColBERT model for token vectors, or None when the encoder's own token vectors are used."""
        if not self._late_model:
            return None
        if self._late_encoder is None:
            self._late_encoder = ColBERTEncoder(self._late_model, self.settings.encoder_batch_size)
        return self._late_encoder

    def _params(self) -> IndexParams:
        return self.snapshot.params if self.snapshot is not None else self._new_params()

    def _new_params(self) -> IndexParams:
        """The parameters today's settings give a new index (or a full rebuild of this one)."""
        late = self.late_encoder
        params = IndexParams.from_settings(
            self.settings, self.encoder.dim, self.encoder.max_seq_length, late.dim if late is not None else 0
        )
        if params.engine.kind == "qdrant":  # a collection of its own, named in the manifest, behind an alias
            old = self.snapshot.params.engine if self.snapshot is not None else None
            alias = (old.alias or f"{old.collection}-index") if old and old.kind == "qdrant" else ""
            alias = alias or f"rag-{uuid.uuid4().hex[:16]}"
            params = replace(params, engine=replace(params.engine, alias=alias, collection=collection_name(alias)))
        return params

    def _live_store(self) -> DocumentStore:
        if self.store is None:
            raise RuntimeError("IndexWriter used outside its `with` block")
        return self.store

    # --- changes -----------------------------------------------------------------------------

    def upsert(self, documents: Sequence[Document], collection: str = "default") -> ChangeSummary:
        """Add new documents and replace changed ones; unchanged documents cost nothing."""
        return self._write(documents, collection, stale=[])

    def _write(
        self, documents: Sequence[Document], collection: str, stale: Sequence[DocKey], fresh: bool = False
    ) -> ChangeSummary:
        """One commit: ``documents`` upserted into ``collection`` and the ``stale`` documents deleted;
        ``fresh`` encodes every document again into a snapshot that keeps no row of the live one."""
        validate_documents(documents)
        if not collection.strip():
            raise InputError("the collection name is empty")
        store = self._live_store()
        hashes = [content_hash(d, collection) for d in documents]
        existing = {} if fresh else store.live_documents(collection, [d.id for d in documents], self.generation)
        changed = [
            (d, h)
            for d, h in zip(documents, hashes, strict=True)
            if d.id not in existing or existing[d.id].content_hash != h
        ]
        replaced_ids = [d.id for d, _ in changed if d.id in existing]
        old_chunk_ids = store.live_chunk_ids(collection, replaced_ids, self.generation)
        if fresh:  # every live document goes, and comes back encoded again where it is in `documents`
            stale = store.document_keys(self.generation)
            live = set(stale)
            replaced_ids = [d.id for d in documents if (collection, d.id) in live]
        params = self._new_params() if fresh else self._params()
        chunk_lists = (
            chunk_documents(
                [d for d, _ in changed],
                self.encoder.tokenizer,
                params.chunk_max_tokens,
                params.chunk_overlap_tokens,
                params.chunk_min_tokens,
                collection=collection,
            )
            if changed
            else []
        )
        new_chunks: list[Chunk] = []
        removed: set[str] = set(self._chunk_ids_of(stale))
        for (doc, _), chunks in zip(changed, chunk_lists, strict=True):
            old = set(old_chunk_ids.get(doc.id, []))
            new_chunks.extend(c for c in chunks if c.id not in old)
            removed |= old - {c.id for c in chunks}
        replaced = set(replaced_ids)
        deleted = [key for key in stale if not (key[0] == collection and key[1] in replaced)]
        generation = (
            self._commit(
                Change(
                    params=params,
                    collection=collection,
                    documents=[(d, h, len(c)) for (d, h), c in zip(changed, chunk_lists, strict=True)],
                    new_chunks=new_chunks,
                    deleted_documents=tuple(deleted),
                    removed_chunk_ids=frozenset(removed),
                    fresh=fresh,
                )
            )
            if changed or stale or self.snapshot is None
            else self.generation
        )
        return ChangeSummary(
            generation,
            len(changed) - len(replaced_ids),
            len(replaced_ids),
            len(documents) - len(changed),
            len(deleted),
            len(new_chunks),
            len(removed),
        )

    def _chunk_ids_of(self, keys: Sequence[DocKey]) -> list[str]:
        """The live chunk ids of the documents ``keys`` name."""
        store = self._live_store()
        by_collection: dict[str, list[str]] = {}
        for where, doc_id in keys:
            by_collection.setdefault(where, []).append(doc_id)
        return [
            c
            for where, ids in by_collection.items()
            for chunks in store.live_chunk_ids(where, ids, self.generation).values()
            for c in chunks
        ]

    def delete(
        self, document_ids: Sequence[str], collection: str | None = None, missing_ok: bool = False
    ) -> ChangeSummary:
        """Remove documents from the store and all three indexes. A document is (collection, id):
        without ``collection``, each id must name a document in exactly one collection."""
        store = self._live_store()
        wanted = list(dict.fromkeys(document_ids))
        if collection is not None:
            keys = [(collection, d) for d in store.live_documents(collection, wanted, self.generation)]
        else:
            places = store.collections_of(wanted, self.generation)
            ambiguous = {d: c for d, c in places.items() if len(c) > 1}
            if ambiguous:
                named = "; ".join(f"{d!r} is in {', '.join(c)}" for d, c in list(ambiguous.items())[:10])
                raise InputError(f"name the collection (--collection): {named}")
            keys = [(c[0], d) for d, c in places.items()]
        found = {d for _, d in keys}
        missing = [d for d in wanted if d not in found]
        if missing and not missing_ok:
            where = f" of collection {collection!r}" if collection is not None else ""
            raise InputError(f"no such document(s){where} in {self.index_dir}: {', '.join(missing[:20])}")
        return self._delete_keys(keys)

    def _delete_keys(self, keys: Sequence[DocKey]) -> ChangeSummary:
        if not keys:
            return ChangeSummary(self.generation, 0, 0, 0, 0, 0, 0)
        removed = set(self._chunk_ids_of(keys))
        generation = self._commit(
            Change(self._params(), deleted_documents=tuple(keys), removed_chunk_ids=frozenset(removed))
        )
        return ChangeSummary(generation, 0, 0, 0, len(keys), 0, len(removed))

    def delete_collection(self, collection: str) -> ChangeSummary:
        """Delete every document of a collection, then the collection itself."""
        store = self._live_store()
        summary = self.delete(store.document_ids(collection, self.generation), collection, missing_ok=True)
        store.drop_collection(collection)
        return summary

    def set_projection(self, head: str) -> int:
        """Commit a snapshot that scores MaxSim through the head at ``head`` (a folder relative to the
        index directory, from `rag adapt`; empty removes it). Returns the new generation."""
        if self.snapshot is None:
            raise InputError(f"no index at {self.index_dir} (build one with `rag index build`)")
        if head:
            self.check_head_slots()
        dim = int(load_head(self.index_dir / head).shape[0]) if head else 0
        params = replace(self.snapshot.params, late_projection=head, late_projection_dim=dim)
        return self._commit(Change(params))

    def set_codec(self, codec: str, pq_bytes: int | None = None) -> int:
        """Commit a snapshot whose token vectors (raw and projected) use ``codec``: every vector is
        decoded and encoded again, no passage is re-run through the model. Returns the new generation."""
        if self.snapshot is None:
            raise InputError(f"no index at {self.index_dir} (build one with `rag index build`)")
        self._embedded_only("another token codec")
        make_codec(codec, self.snapshot.params.multivector_dim)  # unknown names fail before any work
        params = replace(
            self.snapshot.params,
            token_codec=codec,
            token_codec_pq_bytes=self.snapshot.params.token_codec_pq_bytes if pq_bytes is None else pq_bytes,
        )
        return self._commit(Change(params))

    def reweight_bm25(self) -> int:
        """Qdrant: commit a snapshot whose every BM25 weight is written again with today's mean passage
        length (exact BM25 again, whatever ``qdrant_bm25_drift`` let drift). Returns the new generation."""
        if self.snapshot is None:
            raise InputError(f"no index at {self.index_dir} (build one with `rag index build`)")
        if self.snapshot.engine != "qdrant":
            raise InputError(f"{self.index_dir} is on the {self.snapshot.engine} engine, whose BM25 is always exact")
        return self._commit(Change(self.snapshot.params, reweight_bm25=True))

    def check_head_slots(self) -> None:
        """Refuse, before any work, an adapted head that the index cannot keep: a Qdrant collection
        created before heads were kept in Qdrant has no adapted slots (Qdrant adds no named vector to a
        collection that exists)."""
        if self.snapshot is None or self.snapshot.engine != "qdrant":
            return
        if self._points(self.snapshot.params).token_width() is None:
            raise InputError(
                f"the Qdrant collection of {self.index_dir} predates adapted heads in Qdrant: rebuild it once "
                f"with `rag index build --index {self.index_dir} --force --rebuild`, then run `rag adapt` again"
            )

    def _embedded_only(self, what: str) -> None:
        if self.snapshot is not None and self.snapshot.engine != "embedded":
            raise InputError(f"{what} needs the embedded engine: {self.index_dir} is on {self.snapshot.engine}")

    def set_final_stage(self, choice: FinalStageChoice | None) -> int:
        """Commit a snapshot that records ``choice`` as the index's final stage (None: no choice, the
        fallback). Only the manifest is new: the live snapshot's files are hard-linked, since no
        snapshot file is written after its commit. Returns the new generation."""
        old = self.snapshot
        if old is None:
            raise InputError(f"no index at {self.index_dir} (build one with `rag index build`)")
        store = self._live_store()
        generation, name, tmp = self._next_snapshot_dir()
        try:
            for path in sorted(old.directory.rglob("*")):
                target = tmp / path.relative_to(old.directory)
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif path.name != MANIFEST_FILE:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest = Manifest.from_json(old.manifest, old.directory)
        manifest = replace(
            manifest, generation=generation, params=replace(old.params, final_stage=choice), created_at=now_iso()
        )

        def put_in_place(documents: int) -> None:
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2), "utf-8")
            self._move_into_place(name, tmp)

        store.commit_generation(generation, None, [], [], [], [], snapshot=name, before_commit=put_in_place)
        self._point_current(name, store)
        self._drop_old_snapshots(generation)
        return generation

    def replace_all(
        self, documents: Sequence[Document], collection: str = "default", rebuild: bool = False
    ) -> ChangeSummary:
        """Make the index hold exactly ``documents``, in one commit that readers see as one switch.
        Unchanged documents are kept as they are; with ``rebuild`` every document is encoded again with
        today's settings into a snapshot that keeps nothing of the live one (on Qdrant a new collection,
        which the index's alias names once it is committed)."""
        validate_documents(documents)
        store = self._live_store()
        keep = {(collection, d.id) for d in documents}
        stale = [key for key in store.document_keys(self.generation) if key not in keep]
        return self._write(documents, collection, stale, fresh=rebuild and self.snapshot is not None)

    # --- the commit --------------------------------------------------------------------------

    @contextmanager
    def _progress(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        """A function that advances the progress bar (and ``on_progress``) by n passages."""
        bar = tqdm(
            total=total, desc=desc, unit="passage", disable=not self.show_progress or total == 0, dynamic_ncols=True
        )
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)
            if self.on_progress is not None:
                self.on_progress(done, total)

        try:
            if self.on_progress is not None:
                self.on_progress(0, total)
            yield advance
        finally:
            bar.close()

    def _next_snapshot_dir(self) -> tuple[int, str, Path]:
        """The next generation, its snapshot's name and the (emptied) folder it is prepared in."""
        generation = self.generation + 1
        name = f"gen-{generation:06d}"
        tmp = self.index_dir / SNAPSHOTS_DIR / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        return generation, name, tmp

    def _commit(self, change: Change) -> int:
        """Prepare the next snapshot beside the live one, then make it the live one, in named steps."""
        store, params = self._live_store(), change.params
        generation, name, tmp = self._next_snapshot_dir()
        tmp.mkdir(parents=True)
        tombstones = self._tombstones(change)
        rows: _Rows | None = None
        linked: dict[str, FileEntry] = {}
        try:
            if tombstones is not None:
                linked = self._link_arrays(tmp, tombstones)
            else:
                keep_rows, rows = self._choose_rows(change)
                self._write_token_vectors(change, keep_rows, rows, tmp)
                self._write_arrays(rows, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

        def put_in_place(documents: int) -> None:
            if rows is not None:
                self._write_manifest(change, generation, rows, store, documents, tmp)
            else:
                assert tombstones is not None
                self._write_tombstoned_manifest(generation, store, documents, tmp, linked, tombstones)
            self._move_into_place(name, tmp)

        # The commit: the store's rows and the live generation in one transaction. Until it, readers and
        # the next writer see generation - 1 (a folder moved into place and not committed is removed).
        store.commit_generation(
            generation,
            change.collection,
            list(change.documents),
            list(change.new_chunks),
            list(change.deleted_documents),
            sorted(change.removed_chunk_ids),
            snapshot=name,
            before_commit=put_in_place,
            bm25_terms=self._bm25_term_changes(change, rows, store)
            if rows is not None and params.engine.kind == "qdrant"
            else None,
        )
        self._point_current(name, store)
        if params.engine.alias:  # outside clients follow the alias; our readers, their manifest's collection
            self._points(params).point_alias(params.engine.alias)
        self._drop_old_snapshots(generation)
        return generation

    def _bm25_term_changes(self, change: Change, rows: _Rows, store: DocumentStore) -> TermChanges:
        """The next generation's BM25 statistics as changes to the live one's in the store (every term
        afresh after a rebuild, or where the store holds none yet: an index written before it did)."""
        old = None if change.fresh else self.snapshot
        kept = old is not None and old.engine == "qdrant" and store.bm25_totals(old.generation) is not None
        return term_changes(old.sparse if kept and old is not None else None, rows.sparse)

    def _tombstones(self, change: Change) -> np.ndarray | None:
        """The next snapshot's deleted rows when ``change`` only deletes, on the embedded engine, and
        the deleted share stays within :data:`TOMBSTONE_SHARE`; None when it writes arrays."""
        old = self.snapshot
        if old is None or old.engine != "embedded" or change.fresh or change.new_chunks or change.reweight_bm25:
            return None
        if not change.removed_chunk_ids or change.params != old.params:
            return None
        deleted = np.zeros(old.n_rows, bool) if old.deleted is None else old.deleted.copy()
        deleted |= np.isin(np.asarray(old.chunk_ids), list(change.removed_chunk_ids))
        return deleted if np.count_nonzero(deleted) <= TOMBSTONE_SHARE * old.n_rows else None

    def _link_arrays(self, tmp: Path, deleted: np.ndarray) -> dict[str, FileEntry]:
        """The live snapshot's files linked into ``tmp`` (copied where links cannot be made), with the
        new ``deleted`` rows; returns the manifest entries of the linked files."""
        old = self.snapshot
        assert old is not None
        entries = Manifest.from_json(old.manifest, old.directory).files
        linked = {rel: entry for rel, entry in entries.items() if rel != DELETED_ROWS_FILE}
        for rel in linked:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(old.directory / rel, target)
            except OSError:
                shutil.copy2(old.directory / rel, target)
        save_array(tmp / DELETED_ROWS_FILE, deleted)
        return linked

    def _write_tombstoned_manifest(
        self,
        generation: int,
        store: DocumentStore,
        documents: int,
        tmp: Path,
        linked: dict[str, FileEntry],
        deleted: np.ndarray,
    ) -> None:
        """The live snapshot's manifest, for its linked files and the new ``deleted`` rows."""
        old = self.snapshot
        assert old is not None
        before = Manifest.from_json(old.manifest, old.directory)
        n_deleted = int(np.count_nonzero(deleted))
        manifest = Manifest.create(
            tmp,
            generation=generation,
            params=before.params,
            dense_kind=before.dense_kind,
            store_backend=store.engine.url.get_backend_name(),
            store_url=redact_url(store.url),
            documents=documents,
            chunks=len(deleted) - n_deleted,
            token_vectors=before.token_vectors,
            deleted_rows=n_deleted,
            linked=linked,
        )
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2), "utf-8")

    def _choose_rows(self, change: Change) -> tuple[np.ndarray, _Rows]:
        """The live snapshot's rows that stay (their indexes, and the dense and BM25 kinds without the rest)."""
        old, params = None if change.fresh else self.snapshot, change.params
        embedded = params.engine.kind == "embedded"
        if old is None:
            empty = _Rows(
                DenseIndex.build(np.zeros((0, params.dim), np.float32), params.dense) if embedded else None,
                BM25Index.empty(params.bm25),
                [],
                [],
            )
            return np.zeros(0, np.int64), empty
        removed = np.isin(np.asarray(old.chunk_ids), list(change.removed_chunk_ids))
        if old.deleted is not None:  # rows deleted before, kept as tombstones: compacted away now
            removed |= old.deleted
        keep_rows, removed_rows = np.flatnonzero(~removed), np.flatnonzero(removed)
        rows = _Rows(
            old.dense.delete(removed_rows) if embedded else None,
            old.sparse.delete(removed_rows),
            [str(c) for c in np.asarray(old.chunk_ids)[keep_rows]],
            [str(d) for d in np.asarray(old.doc_ids)[keep_rows]],
        )
        return keep_rows, rows

    def _write_token_vectors(self, change: Change, keep_rows: np.ndarray, rows: _Rows, tmp: Path) -> None:
        """Kept rows' token vectors copied, new passages encoded and appended to every index kind."""
        old, params = None if change.fresh else self.snapshot, change.params
        if params.engine.kind == "qdrant":
            self._write_points(change, rows)
            return
        codec = token_codec_for(params, params.multivector_dim, old.multivector if old is not None else None)
        writer = MultiVectorWriter(tmp / "multivector", codec)
        projector = _Projector(self.index_dir, params, tmp / PROJECTED_DIR, old, codec)
        try:
            if old is not None:
                writer.copy_rows(old.multivector, keep_rows)
                projector.copy_rows(old, keep_rows)
            tokenize = params.bm25_tokenizer()
            # Rows need no particular order, so new passages are written longest first: every encoder
            # batch then holds passages of similar length and pads little, across blocks too.
            by_length = sorted(change.new_chunks, key=lambda c: len(c.encoded_text), reverse=True)
            for block, encoded, token_vectors in self._encoded_blocks(by_length):
                texts = [c.encoded_text for c in block]
                writer.append(token_vectors)
                projector.append(token_vectors)
                rows.dense = rows.dense.add(encoded.dense) if rows.dense is not None else None
                rows.sparse = rows.sparse.add([tokenize(t) for t in texts])
                rows.chunk_ids.extend(c.id for c in block)
                rows.doc_ids.extend(c.document_id for c in block)
            rows.n_token_vectors = writer.finish()
            projector.finish()
        except BaseException:
            writer.abort()
            projector.abort()
            raise

    def _encoded_blocks(self, chunks: Sequence[Chunk]) -> Iterator[tuple[Sequence[Chunk], Encoded, list[np.ndarray]]]:
        """``chunks`` in blocks of :data:`ENCODE_BLOCK`, each with its encoding and its token vectors (the
        encoder's own, or the ColBERT model's), under one progress bar. On Ray (``RAG_COMPUTE=ray``) the
        blocks are the actors' batches, in the order they finish."""
        if self.settings.compute == "ray":
            texts = [c.encoded_text for c in chunks]
            with self._progress(len(chunks), "encoding on ray") as advance:
                for rows, dense, tokens in encode_passages(texts, self.settings, self._encoder_model, self._late_model):
                    advance(len(rows))
                    yield [chunks[int(r)] for r in rows], Encoded(dense=dense, tokens=tokens), tokens
            return
        late = self.late_encoder
        with self._progress(len(chunks), "encoding") as advance:
            for start in range(0, len(chunks), ENCODE_BLOCK):
                block = chunks[start : start + ENCODE_BLOCK]
                texts = [c.encoded_text for c in block]
                encoded = self.encoder.encode(texts, progress=advance)
                yield block, encoded, list(encoded.tokens if late is None else late.encode_documents(texts))

    def _write_points(self, change: Change, rows: _Rows) -> None:
        """The Qdrant side of a change: removed chunks marked deleted from the next generation, new ones
        encoded and upserted as its points, and BM25 weights written again where the mean passage length
        drifted past ``qdrant_bm25_drift``: all of them, into the BM25 slot the live generation does not
        read. Nothing is live until the store and ``CURRENT`` commit."""
        params, generation = change.params, self.generation + 1
        points = self._points(params)
        points.create(params.dim, params.multivector_dim)
        tokens_kept = 0
        if self.snapshot is not None and not change.fresh:
            removed = sorted(change.removed_chunk_ids)
            tokens_kept = int(self.snapshot.manifest["counts"]["token_vectors"]) - points.token_count(removed)
            points.mark_deleted(removed, generation)
        tokenize = params.bm25_tokenizer()
        by_length = sorted(change.new_chunks, key=lambda c: len(c.encoded_text), reverse=True)
        first_new = len(rows.chunk_ids)
        rows.sparse = rows.sparse.add([tokenize(c.encoded_text) for c in by_length])
        avgdl, written = rows.sparse.avgdl, params.engine.bm25_avgdl
        reweight = change.reweight_bm25 or written <= 0 or abs(avgdl / written - 1.0) > self.settings.qdrant_bm25_drift
        weights_avgdl = avgdl if reweight else written
        slot = 1 - params.engine.bm25_slot if reweight else params.engine.bm25_slot
        documents = {d.id: d for d, _, _ in change.documents}
        head, head_slot = self._head_slot(change)
        if head is not None and head_slot != params.engine.adapted_slot:  # a new head: every kept point too
            self._write_adapted(points, rows.chunk_ids[:first_new], head, head_slot)
        # BM25 rows are in by_length order; blocks may come back in another (Ray's actors finish as they do)
        row_of = {c.id: first_new + i for i, c in enumerate(by_length)}
        for block, encoded, token_vectors in self._encoded_blocks(by_length):
            bm25 = rows.sparse.saturated_tf(np.asarray([row_of[c.id] for c in block], np.int64), weights_avgdl)
            points.upsert(
                points.point(
                    c.id,
                    _payload(documents[c.document_id], change.collection or ""),
                    encoded.dense[i],
                    token_vectors[i],
                    bm25[i],
                    slot,
                    generation,
                    adapted=(project_tokens(token_vectors[i], head), head_slot) if head is not None else None,
                )
                for i, c in enumerate(block)
            )
            tokens_kept += sum(len(t) for t in token_vectors)
        rows.chunk_ids.extend(c.id for c in by_length)
        rows.doc_ids.extend(c.document_id for c in by_length)
        if reweight and first_new:
            kept = np.arange(first_new)
            points.set_bm25(rows.chunk_ids[:first_new], rows.sparse.saturated_tf(kept, avgdl), slot)
        rows.n_token_vectors = tokens_kept
        rows.engine = replace(params.engine, bm25_avgdl=weights_avgdl, bm25_slot=slot, adapted_slot=head_slot)

    def _head_slot(self, change: Change) -> tuple[np.ndarray | None, int]:
        """The head the next generation scores MaxSim through (None: no head) and the adapted slot its
        vectors are in: the live slot for the live head, the other one for a new head, so readers of the
        live generation never see its slot written."""
        params, old = change.params, None if change.fresh else self.snapshot
        live_slot = params.engine.adapted_slot
        if not params.late_projection:
            return None, live_slot
        head = load_head(self.index_dir / params.late_projection)
        same_head = old is not None and old.params.late_projection == params.late_projection
        return head, live_slot if same_head or old is None else 1 - live_slot

    def _write_adapted(self, points: QdrantCollection, chunk_ids: Sequence[str], head: np.ndarray, slot: int) -> None:
        """Project kept points' raw token vectors through a new head into adapted slot ``slot``, a
        bounded block at a time (nothing is encoded again)."""
        with self._progress(len(chunk_ids), "projecting token vectors") as advance:
            for start in range(0, len(chunk_ids), PROJECT_BLOCK):
                block = chunk_ids[start : start + PROJECT_BLOCK]
                raw = points.token_vectors(block)
                missing = [c for c in block if c not in raw]
                if missing:
                    raise IndexCorruptError(f"Qdrant collection {points.name} has no point for chunks {missing[:3]}")
                points.set_adapted(block, [project_tokens(raw[c], head) for c in block], slot)
                advance(len(block))

    def _points(self, params: IndexParams) -> QdrantCollection:
        client = connect(self.settings, self.index_dir)
        return QdrantCollection(client, params.engine.collection, self.settings.dense_hnsw_ef_search)

    @staticmethod
    def _write_arrays(rows: _Rows, tmp: Path) -> None:
        if rows.dense is not None:
            rows.dense.save(tmp / "dense")
        rows.sparse.save(tmp / "sparse")
        (tmp / "rows").mkdir()
        save_array(tmp / "rows" / "chunk_ids.npy", np.asarray(rows.chunk_ids, dtype=str))
        save_array(tmp / "rows" / "doc_ids.npy", np.asarray(rows.doc_ids, dtype=str))

    @staticmethod
    def _write_manifest(
        change: Change, generation: int, rows: _Rows, store: DocumentStore, documents: int, tmp: Path
    ) -> None:
        """The manifest last: it lists every file of the snapshot with its size."""
        manifest = Manifest.create(
            tmp,
            generation=generation,
            params=change.params if rows.engine is None else replace(change.params, engine=rows.engine),
            dense_kind=rows.dense.kind if rows.dense is not None else change.params.engine.kind,
            store_backend=store.engine.url.get_backend_name(),
            store_url=redact_url(store.url),
            documents=documents,
            chunks=len(rows.chunk_ids),
            token_vectors=rows.n_token_vectors,
        )
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2), "utf-8")

    def _move_into_place(self, name: str, tmp: Path) -> None:
        """Every file durable, then the snapshot moved to its name (not live until the store commits)."""
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        snapshots = self.index_dir / SNAPSHOTS_DIR
        final = snapshots / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(snapshots)

    def _point_current(self, name: str, store: DocumentStore) -> None:
        """``CURRENT`` names the committed snapshot, which this writer then works on."""
        write_text_atomic(self.index_dir / CURRENT_FILE, name + "\n")
        self.snapshot = Snapshot.load(self.index_dir, self.settings, store=store)

    def _drop_old_snapshots(self, generation: int) -> None:
        keep = max(0, self.settings.keep_snapshots)
        dropped: list[str] = []  # the Qdrant collections the dropped snapshots read
        for directory in (self.index_dir / SNAPSHOTS_DIR).glob("gen-*"):
            if directory.suffix == ".tmp":
                continue
            if int(directory.name.split("-")[1]) < generation - keep:
                dropped.extend(_qdrant_collection(directory / MANIFEST_FILE))
                shutil.rmtree(directory, ignore_errors=True)
        self._live_store().purge(generation - keep)
        if self.snapshot is not None and self.snapshot.engine == "qdrant":
            self._points(self.snapshot.params).purge(generation - keep)
        if self.snapshot is not None and (dropped or self.snapshot.engine == "qdrant"):
            self._drop_unused_collections(self.snapshot.params, dropped)

    def _drop_unused_collections(self, params: IndexParams, dropped: Sequence[str] = ()) -> None:
        """Drop the Qdrant collections of this index that no kept snapshot reads: the ``dropped``
        snapshots' (a rebuild replaced them, or moved the index to another engine), and those named after
        the index's alias (a rebuild that died before its commit left one)."""
        in_use = {params.engine.collection} if params.engine.kind == "qdrant" else set()
        for manifest in (self.index_dir / SNAPSHOTS_DIR).glob(f"gen-*/{MANIFEST_FILE}"):
            if manifest.parent.suffix != ".tmp":
                in_use.update(_qdrant_collection(manifest))
        unused = {name for name in dropped if name not in in_use}
        if not unused and not (params.engine.kind == "qdrant" and params.engine.alias):
            return
        points = QdrantCollection(connect(self.settings, self.index_dir), "", self.settings.dense_hnsw_ef_search)
        if params.engine.kind == "qdrant" and params.engine.alias:
            unused.update(n for n in points.collections_named(f"{params.engine.alias}-") if n not in in_use)
        for name in sorted(unused):
            points.drop(name)


def _qdrant_collection(manifest: Path) -> list[str]:
    """The Qdrant collection a snapshot's manifest names (none on the embedded engine, or unreadable)."""
    try:
        engine = json.loads(manifest.read_text("utf-8")).get("engine") or {}
    except (OSError, json.JSONDecodeError):
        return []
    return [str(engine["collection"])] if engine.get("kind") == "qdrant" and engine.get("collection") else []


def _payload(document: Document, collection: str) -> dict[str, object]:
    """What a Qdrant point carries for filtering (the rules of rag.filters)."""
    payload: dict[str, object] = {"doc_id": document.id, "collection": collection, "source": document.source}
    day = day_number(document.date)
    if day is not None:
        payload["day"] = day
    return payload
