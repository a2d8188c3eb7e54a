"""The typed manifest of a snapshot: build-time parameters, counts and every file's checksum.

Build-time parameters (:class:`IndexParams`) are fixed when an index is created and read back from the
manifest afterwards, so later writes chunk, tokenise and encode the same way. Search-time knobs (HNSW
efSearch, candidate depth, MaxSim mode, RRF weights) are not here: they come from the settings at
query time, so changing them needs no rebuild.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.errors import IndexCorruptError
from rag.index.arrays import sha256_file
from rag.index.bm25 import BM25Params
from rag.index.bm25_tokenizer import Tokenizer, make_tokenizer
from rag.index.dense import DenseParams
from rag.settings import Settings

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class FinalStageChoice:
    """The final stage chosen for an index without labels (indexer/final_stage.py), and why: what
    ``RAG_MAXSIM_MODE=auto`` and ``RAG_WEIGHT_MAXSIM=auto`` use. ``ndcg`` holds each candidate's
    nDCG@10 on the held-out pseudo-queries (``off`` is RRF alone, ``fuse@2`` fuse with MaxSim weight 2)."""

    mode: str
    reason: str
    ndcg: Mapping[str, float]
    queries: int
    seed: int
    seconds: float
    adapted: bool  # chosen with MaxSim over the adapted head's vectors
    maxsim_weight: float = 1.0  # MaxSim's weight in fuse and scores (manifests from before it: 1)

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any]) -> FinalStageChoice:
        return cls(
            mode=str(section["mode"]),
            reason=str(section["reason"]),
            ndcg={str(k): float(v) for k, v in section["ndcg"].items()},
            queries=int(section["queries"]),
            seed=int(section["seed"]),
            seconds=float(section["seconds"]),
            adapted=bool(section["adapted"]),
            maxsim_weight=float(section.get("maxsim_weight", 1.0)),
        )


@dataclass(frozen=True)
class EngineParams:
    """Where the index's vectors live: ``embedded`` (the snapshot's arrays) or ``qdrant`` (``collection``,
    whose BM25 slot ``bm25_slot`` holds every live point's weights, written with mean passage length
    ``bm25_avgdl``; ``alias`` is the index's stable name, switched to a new collection by a full rebuild;
    an adapted head's token vectors are in multivector slot ``adapted_slot``)."""

    kind: str = "embedded"
    collection: str = ""
    alias: str = ""
    bm25_avgdl: float = 0.0
    bm25_slot: int = 0
    adapted_slot: int = 0


@dataclass(frozen=True)
class IndexParams:
    """What an index is built with; fixed at creation and read back from the manifest afterwards."""

    encoder_model: str
    dim: int
    max_seq_length: int
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    chunk_min_tokens: int
    bm25: BM25Params
    bm25_stopwords: bool
    bm25_stemmer: str
    dense: DenseParams
    late_model: str = ""  # empty: the encoder's token vectors
    late_dim: int = 0
    # A ColBERT head trained by `rag adapt` (path relative to the index directory); empty: none.
    late_projection: str = ""
    late_projection_dim: int = 0
    # How token vectors are stored (rag/index/codecs): float16, binary or pq; pq_bytes sizes a new pq codec.
    token_codec: str = "float16"
    token_codec_pq_bytes: int = 48
    # The final stage chosen for this index's corpus (None: not chosen, e.g. an index too small to tell).
    final_stage: FinalStageChoice | None = None
    engine: EngineParams = EngineParams()

    @property
    def multivector_dim(self) -> int:
        return self.late_dim if self.late_model else self.dim

    def bm25_tokenizer(self) -> Tokenizer:
        return make_tokenizer(self.bm25_stopwords, self.bm25_stemmer)

    @classmethod
    def from_settings(cls, settings: Settings, dim: int, max_seq_length: int, late_dim: int = 0) -> IndexParams:
        """A new index's parameters: the settings, with the encoder's dimensions as loaded."""
        return cls(
            encoder_model=settings.encoder_model,
            dim=dim,
            max_seq_length=max_seq_length,
            chunk_max_tokens=min(settings.chunk_max_tokens, max_seq_length),
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            chunk_min_tokens=settings.chunk_min_tokens,
            bm25=BM25Params(
                variant=settings.bm25_variant, k1=settings.bm25_k1, b=settings.bm25_b, epsilon=settings.bm25_epsilon
            ),
            bm25_stopwords=settings.bm25_stopwords,
            bm25_stemmer=settings.bm25_stemmer,
            dense=DenseParams(
                ann_threshold=settings.dense_ann_threshold,
                hnsw_m=settings.dense_hnsw_m,
                hnsw_ef_construction=settings.dense_hnsw_ef_construction,
            ),
            late_model=settings.late_model,
            late_dim=late_dim,
            # Qdrant keeps token vectors as float16 (its own quantization is its business, not a codec here)
            token_codec="float16" if settings.index_engine == "qdrant" else settings.token_codec,
            token_codec_pq_bytes=settings.token_codec_pq_bytes,
            engine=EngineParams(kind=settings.index_engine),
        )

    def to_manifest(self, dense_kind: str) -> dict[str, Any]:
        """The manifest's parameter sections (``encoder``, ``chunking``, ``bm25``, ``dense``, ``multivector``)."""
        return {
            "encoder": {"model": self.encoder_model, "dim": self.dim, "max_seq_length": self.max_seq_length},
            "chunking": {
                "max_tokens": self.chunk_max_tokens,
                "overlap_tokens": self.chunk_overlap_tokens,
                "min_tokens": self.chunk_min_tokens,
            },
            "bm25": {**asdict(self.bm25), "stopwords": self.bm25_stopwords, "stemmer": self.bm25_stemmer},
            "dense": {"kind": dense_kind, "params": asdict(self.dense)},
            "multivector": {
                "codec": self.token_codec,
                "pq_bytes": self.token_codec_pq_bytes,
                "dim": self.multivector_dim,
                "model": self.late_model,
                "projection": self.late_projection,
                "projection_dim": self.late_projection_dim,
            },
            "final_stage": asdict(self.final_stage) if self.final_stage is not None else None,
            "engine": asdict(self.engine),
        }

    @classmethod
    def from_manifest(cls, sections: dict[str, Any]) -> IndexParams:
        """The inverse of :meth:`to_manifest`; reads manifests of older versions too (missing keys take
        the defaults they had, and a search-time knob they stored, ``hnsw_ef_search``, is ignored)."""
        encoder, chunking, bm25, dense = sections["encoder"], sections["chunking"], sections["bm25"], sections["dense"]
        multivector = sections["multivector"]
        dense_params = dense["params"]
        return cls(
            encoder_model=encoder["model"],
            dim=int(encoder["dim"]),
            max_seq_length=int(encoder["max_seq_length"]),
            chunk_max_tokens=int(chunking["max_tokens"]),
            chunk_overlap_tokens=int(chunking["overlap_tokens"]),
            chunk_min_tokens=int(chunking["min_tokens"]),
            bm25=BM25Params(variant=bm25["variant"], k1=bm25["k1"], b=bm25["b"], epsilon=bm25["epsilon"]),
            bm25_stopwords=bool(bm25["stopwords"]),
            bm25_stemmer=bm25["stemmer"],
            dense=DenseParams(
                ann_threshold=int(dense_params["ann_threshold"]),
                hnsw_m=int(dense_params["hnsw_m"]),
                hnsw_ef_construction=int(dense_params["hnsw_ef_construction"]),
            ),
            late_model=multivector.get("model", ""),
            late_dim=int(multivector["dim"]),
            late_projection=multivector.get("projection", ""),
            late_projection_dim=int(multivector.get("projection_dim", 0)),
            token_codec=multivector.get("codec", "float16"),
            token_codec_pq_bytes=int(multivector.get("pq_bytes", 48)),
            final_stage=FinalStageChoice.from_manifest(sections["final_stage"])
            if sections.get("final_stage")
            else None,
            engine=EngineParams(
                kind=str(sections["engine"]["kind"]),
                collection=str(sections["engine"].get("collection", "")),
                alias=str(sections["engine"].get("alias", "")),
                bm25_avgdl=float(sections["engine"].get("bm25_avgdl", 0.0)),
                bm25_slot=int(sections["engine"].get("bm25_slot", 0)),
                adapted_slot=int(sections["engine"].get("adapted_slot", 0)),
            )
            if sections.get("engine")
            else EngineParams(),
        )


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of one snapshot."""

    generation: int
    created_at: str
    params: IndexParams
    dense_kind: str
    store_backend: str
    store_url: str  # password redacted
    documents: int
    chunks: int
    token_vectors: int
    files: dict[str, FileEntry]  # every file of the snapshot but the manifest, by relative path
    format_version: int = FORMAT_VERSION
    # rows kept in the arrays as tombstones: not counted in ``chunks``; their vectors are in ``token_vectors``,
    # which is the token file's shape
    deleted_rows: int = 0

    @classmethod
    def create(
        cls,
        snapshot_dir: Path,
        generation: int,
        params: IndexParams,
        dense_kind: str,
        store_backend: str,
        store_url: str,
        documents: int,
        chunks: int,
        token_vectors: int,
        deleted_rows: int = 0,
        linked: Mapping[str, FileEntry] | None = None,
    ) -> Manifest:
        """The manifest of a snapshot whose files are all written (they are checksummed here, but for
        those ``linked`` from an earlier snapshot, whose entries it gives)."""
        return cls(
            generation=generation,
            created_at=now_iso(),
            params=params,
            dense_kind=dense_kind,
            store_backend=store_backend,
            store_url=store_url,
            documents=documents,
            chunks=chunks,
            token_vectors=token_vectors,
            files=file_entries(snapshot_dir, linked or {}),
            deleted_rows=deleted_rows,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "generation": self.generation,
            "created_at": self.created_at,
            **self.params.to_manifest(self.dense_kind),
            "store": {"backend": self.store_backend, "url": self.store_url},
            "counts": {
                "documents": self.documents,
                "chunks": self.chunks,
                "token_vectors": self.token_vectors,
                "deleted_rows": self.deleted_rows,
            },
            "multivector_shape": [self.token_vectors, self.params.multivector_dim],
            "files": {rel: asdict(entry) for rel, entry in self.files.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{where} has index format {data.get('format_version')}, this version reads {FORMAT_VERSION}"
            )
        try:
            counts = data["counts"]
            return cls(
                generation=int(data["generation"]),
                created_at=str(data["created_at"]),
                params=IndexParams.from_manifest(data),
                dense_kind=data["dense"]["kind"],
                store_backend=data["store"]["backend"],
                store_url=data["store"]["url"],
                documents=int(counts["documents"]),
                chunks=int(counts["chunks"]),
                token_vectors=int(counts["token_vectors"]),
                files={rel: FileEntry(int(e["bytes"]), str(e["sha256"])) for rel, e in data["files"].items()},
                deleted_rows=int(counts.get("deleted_rows", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"the manifest of {where} lacks or garbles {exc}") from exc


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def file_entries(snapshot_dir: Path, linked: Mapping[str, FileEntry]) -> dict[str, FileEntry]:
    """Size and sha256 of every file of a snapshot except the manifest, keyed by relative path; a file
    ``linked`` from an earlier snapshot keeps that one's entry (the same bytes: hashing gigabytes again
    is what a delete at 1M chunks would spend its time on)."""
    entries = {}
    for path in sorted(snapshot_dir.rglob("*")):
        if not path.is_file() or path.name == MANIFEST_FILE:
            continue
        rel = str(path.relative_to(snapshot_dir))
        known = linked.get(rel)
        size = path.stat().st_size
        entries[rel] = known if known is not None and known.bytes == size else FileEntry(size, sha256_file(path))
    return entries
