"""An index directory: snapshots of the three indexes over one row space, a store, and a pointer.

Layout::

    DIR/CURRENT                      name of the live snapshot (replaced atomically: the commit point)
    DIR/snapshots/gen-000007/        one complete snapshot
        manifest.json                versions, model, params, counts, file sizes and checksums
        rows/chunk_ids.npy           (n,) chunk id of each row; row i is row i in every index below
        rows/doc_ids.npy             (n,) document id of each row
        rows/deleted.npy             (n,) bool, rows deleted since the arrays were written (tombstones;
                                     absent when none): a delete links the arrays of the snapshot before
        dense/vectors.npy            (n, dim) float32 [+ hnsw.faiss above the ANN threshold]
        sparse/*.npy, vocabulary.json  BM25 postings (on Qdrant the writer's; readers take df and N from the store)
        multivector/vectors.f16      (n_tokens, dim) float16, or codes.u8 (n_tokens, width) uint8 for the
                                     binary and pq codecs, + codec.npz (its state), offsets.npy (n + 1,)
        projected/                   the same tokens through the adapted ColBERT head (`rag adapt`), if any
    DIR/models/adapted-*/            heads trained by `rag adapt` (sentence-transformers Dense layout)
    DIR/store.db                     SQLite document store (unless a store URL is set)
    DIR/.lock                        held by the one writer
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rag.encode.projection import load_head
from rag.errors import IndexCorruptError, IndexNotFoundError, InputError
from rag.index.arrays import load_array, marked_rows, sha256_file
from rag.index.bm25 import BM25Index
from rag.index.dense import DenseIndex
from rag.index.manifest import MANIFEST_FILE, IndexParams, Manifest
from rag.index.multivector import MultiVectorIndex, MultiVectorParams
from rag.index.store import DocumentStore, sqlite_url
from rag.settings import Settings

CURRENT_FILE = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
STORE_FILE = "store.db"
PROJECTED_DIR = "projected"
DELETED_ROWS_FILE = "rows/deleted.npy"


def store_for(index_dir: Path, settings: Settings) -> DocumentStore:
    """The store named by the settings, else the SQLite file inside the index directory, brought up to
    this release's schema (readers of an index written by an earlier one included)."""
    store = DocumentStore(settings.store_url or sqlite_url(index_dir / STORE_FILE))
    store.migrate()
    return store


def current_snapshot_name(index_dir: Path) -> str | None:
    pointer = index_dir / CURRENT_FILE
    if not pointer.exists():
        return None
    return pointer.read_text("utf-8").strip() or None


class Snapshot:
    """One complete, read-only view of an index: what every query runs against."""

    def __init__(
        self,
        index_dir: Path,
        directory: Path,
        manifest: dict[str, Any],
        chunk_ids: np.ndarray,
        doc_ids: np.ndarray,
        dense: DenseIndex | None,
        sparse: BM25Index | None,
        multivector: MultiVectorIndex | None,
        store: DocumentStore,
        projected: MultiVectorIndex | None = None,
        projection: np.ndarray | None = None,
        deleted: np.ndarray | None = None,
    ) -> None:
        """``deleted`` (n_rows,) bool: the rows deleted since the arrays were written (None: none)."""
        self.index_dir = index_dir
        self.directory = directory
        self.manifest = manifest
        self.params = IndexParams.from_manifest(manifest)
        self.generation = int(manifest["generation"])
        self.chunk_ids = chunk_ids
        self.doc_ids = doc_ids
        self.deleted = marked_rows(deleted)
        self._dense = dense  # None where the engine holds the vectors (Qdrant)
        self._sparse = sparse  # None until used where an engine holds the postings (Qdrant)
        self._multivector = multivector
        self.projected = projected  # token vectors through the adapted head, same offsets
        self.projection = projection  # (d_out, d) the head, applied to the query's token vectors
        self.store = store
        self.bm25_tokenize = self.params.bm25_tokenizer()
        self._row_fields: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        """Live chunks (rows deleted since the arrays were written not counted)."""
        return self.n_rows - (0 if self.deleted is None else int(np.count_nonzero(self.deleted)))

    @property
    def n_rows(self) -> int:
        """The row space of every array, deleted rows included."""
        return len(self.chunk_ids)

    def live_rows(self) -> np.ndarray:
        """(n_live,) int64: the rows a query can return, in order."""
        every = np.arange(self.n_rows, dtype=np.int64)
        return every if self.deleted is None else every[~self.deleted]

    @property
    def engine(self) -> str:
        return self.params.engine.kind

    @property
    def dense(self) -> DenseIndex:
        if self._dense is None:
            raise InputError(f"index {self.index_dir} keeps its dense vectors in {self.engine}, not in arrays")
        return self._dense

    @property
    def sparse(self) -> BM25Index:
        """The BM25 postings. On Qdrant they are the writer's (readers take df and N from the store:
        :mod:`rag.index.term_statistics`), so they are loaded only when something asks."""
        if self._sparse is None:
            self._sparse = BM25Index.load(self.directory / "sparse", self.params.bm25, self.deleted)
        return self._sparse

    @property
    def multivector(self) -> MultiVectorIndex:
        if self._multivector is None:
            raise InputError(
                f"index {self.index_dir} keeps its token vectors in {self.engine}: this needs the embedded engine"
            )
        return self._multivector

    @classmethod
    def load(cls, index_dir: Path, settings: Settings, store: DocumentStore | None = None) -> Snapshot:
        """Load the snapshot that ``DIR/CURRENT`` names, memory-mapping its arrays."""
        name = current_snapshot_name(index_dir)
        if name is None:
            raise IndexNotFoundError(f"no index at {index_dir} (build one with `rag index build`)")
        directory = index_dir / SNAPSHOTS_DIR / name
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexCorruptError(f"cannot read manifest of snapshot {directory}: {exc}") from exc
        Manifest.from_json(manifest, directory)  # the format version and every section, checked once
        for rel, entry in manifest["files"].items():
            path = directory / rel
            if not path.exists() or path.stat().st_size != entry["bytes"]:
                raise IndexCorruptError(f"snapshot file {path} is missing or has the wrong size")
        if store is None:
            if manifest["store"]["backend"] != "sqlite" and not settings.store_url:
                raise IndexCorruptError(
                    f"index {index_dir} keeps its store in {manifest['store']['url']}: set RAG_STORE_URL"
                )
            store = store_for(index_dir, settings)
        params = IndexParams.from_manifest(manifest)
        embedded = params.engine.kind == "embedded"
        tombstoned = DELETED_ROWS_FILE in manifest["files"]
        deleted = load_array(directory / DELETED_ROWS_FILE, mmap=False) if tombstoned else None
        projected = projection = None
        if params.late_projection:
            projection = load_head(index_dir / params.late_projection)
            if embedded:  # Qdrant keeps the projected tokens in the collection's adapted slot
                projected = MultiVectorIndex.load(
                    directory / PROJECTED_DIR, MultiVectorParams(params.token_codec, params.late_projection_dim)
                )
        return cls(
            index_dir=index_dir,
            directory=directory,
            manifest=manifest,
            chunk_ids=load_array(directory / "rows" / "chunk_ids.npy"),
            doc_ids=load_array(directory / "rows" / "doc_ids.npy"),
            dense=DenseIndex.load(directory / "dense", params.dense, deleted) if embedded else None,
            sparse=BM25Index.load(directory / "sparse", params.bm25, deleted) if embedded else None,
            multivector=MultiVectorIndex.load(
                directory / "multivector", MultiVectorParams(params.token_codec, params.multivector_dim)
            )
            if embedded
            else None,
            store=store,
            projected=projected,
            projection=projection,
            deleted=deleted,
        )

    def row_fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(collection, source, date) of each row's document, read from the store once per snapshot."""
        if self._row_fields is None:
            fields = self.store.chunk_fields(self.generation)
            missing = ("", "", "")
            per_row = [fields.get(str(c), missing) for c in self.chunk_ids]
            self._row_fields = (
                np.array([f[0] for f in per_row], dtype=str),
                np.array([f[1] for f in per_row], dtype=str),
                np.array([f[2] for f in per_row], dtype=str),
            )
        return self._row_fields

    def verify(self) -> None:
        """Check every file against the manifest's sha256 and the arrays against each other."""
        for rel, entry in self.manifest["files"].items():
            if sha256_file(self.directory / rel) != entry["sha256"]:
                raise IndexCorruptError(f"checksum mismatch in {self.directory / rel}")
        n = self.n_rows
        sizes = {"doc_ids": len(self.doc_ids), "sparse": len(self.sparse)}
        if self.deleted is not None:
            sizes["deleted"] = len(self.deleted)
        if self._dense is not None and self._multivector is not None:
            sizes.update(dense=len(self._dense), multivector=len(self._multivector))
        if self.projected is not None:
            sizes["projected"] = len(self.projected)
            if self.projected.n_vectors != self.multivector.n_vectors:
                raise IndexCorruptError("the projected token vectors do not match the raw ones")
        if any(size != n for size in sizes.values()):
            raise IndexCorruptError(f"row counts disagree: chunk_ids={n}, {sizes}")
        if self.store.count_chunks(self.generation) != len(self):
            raise IndexCorruptError("the store's live chunks do not match the snapshot's rows")

    def committed_ahead(self) -> int | None:
        """The generation the store has committed when it is newer than this snapshot's: ``CURRENT``
        lags a writer that died between its commit and ``CURRENT`` (the next writer writes it forward),
        or a commit landed after this snapshot was loaded. None when this snapshot is the live one."""
        live = self.store.live_generation()
        return live.generation if live is not None and live.generation > self.generation else None

    def _live_token_vectors(self) -> int:
        """Token vectors of the live rows (the manifest counts the file's, deleted rows' included)."""
        if self.deleted is None:
            return int(self.manifest["counts"]["token_vectors"])
        lengths = np.diff(np.asarray(self.multivector.offsets))
        return int(lengths[~self.deleted].sum())

    def stats(self) -> dict[str, Any]:
        def size(sub: str) -> int:
            return sum(e["bytes"] for rel, e in self.manifest["files"].items() if rel.startswith(sub + "/"))

        return {
            "documents": self.store.count_documents(self.generation),
            "chunks": len(self),
            "deleted_rows": self.n_rows - len(self),  # kept in the arrays until the next add compacts them
            "token_vectors": self._live_token_vectors(),
            "token_codec": self.params.token_codec,
            "bytes_per_token_vector": self.multivector.codec.bytes_per_vector
            if self._multivector
            else 2 * self.params.multivector_dim,
            "engine": asdict(self.params.engine),
            "bytes": {
                "dense": size("dense"),
                "sparse": size("sparse"),
                "multivector": size("multivector"),
                "projected": size(PROJECTED_DIR),
                "rows": size("rows"),
                "store": self.store.size_bytes(),
            },
            "generation": self.generation,
            "collections": self.store.collections(),
            "encoder": self.manifest["encoder"]["model"],
            "dense_kind": self.manifest["dense"]["kind"],
            "late_projection": self.params.late_projection,
            "bm25": self.manifest["bm25"],
            "final_stage": self.manifest.get("final_stage"),  # chosen without labels; None: not chosen
        }
