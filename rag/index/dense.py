"""Dense index: FAISS inner product over unit vectors; exact (flat) by default, HNSW above a size threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.index.arrays import load_array, save_array

Kind = Literal["flat", "hnsw"]


# HNSW efSearch when the caller names none: recall@100 0.976 against exact at 1M chunks, 1.6 ms (bench/run.py).
# A search-time knob (RAG_DENSE_HNSW_EF_SEARCH), never stored with the index.
EF_SEARCH = 512


@dataclass(frozen=True)
class DenseParams:
    """Build-time parameters of the dense index."""

    ann_threshold: int = 200_000  # rows above which HNSW replaces exact search
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200

    def kind_for(self, n_rows: int) -> Kind:
        return "hnsw" if n_rows > self.ann_threshold else "flat"


SMALL_BATCH = 8  # flat search of this few queries: one BLAS product beats FAISS's OpenMP set-up (bench/run.py)


def _exact_search(
    vectors: np.ndarray, queries: np.ndarray, n: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` by inner product, as ``IndexFlatIP`` returns it (rows -1 past the allowed ones).

    For one query over 10k vectors: 0.18 ms against FAISS's 0.8 ms, which pays for its thread pool."""
    scores = queries @ vectors.T  # (q, n_rows)
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    rows, best = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    missing = ~np.isfinite(best)
    return np.where(missing, -1, rows).astype(np.int64), np.where(missing, -np.inf, best).astype(np.float32)


def _faiss() -> Any:
    import faiss

    return faiss


class DenseIndex:
    """``vectors`` (n, dim) float32 is the source of truth; the FAISS structure is built over it."""

    def __init__(self, vectors: np.ndarray, params: DenseParams, faiss_index: Any | None = None) -> None:
        self.vectors = vectors
        self.params = params
        self.kind: Kind = params.kind_for(len(vectors))
        self._faiss_index = faiss_index

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def faiss_index(self) -> Any:
        if self._faiss_index is None:
            self._faiss_index = self._build_structure(np.asarray(self.vectors, dtype=np.float32))
        return self._faiss_index

    def _build_structure(self, vectors: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.params.hnsw_ef_construction
        else:
            index = faiss.IndexFlatIP(self.dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors))
        return index

    @classmethod
    def build(cls, vectors: np.ndarray, params: DenseParams) -> DenseIndex:
        return cls(np.ascontiguousarray(vectors, dtype=np.float32), params)

    def add(self, vectors: np.ndarray) -> DenseIndex:
        """A new index with ``vectors`` appended; an HNSW graph grows in place of a rebuild."""
        merged = np.concatenate([np.asarray(self.vectors, np.float32), vectors.astype(np.float32)])
        new = DenseIndex(merged, self.params)
        if new.kind == "hnsw" and self.kind == "hnsw" and self._faiss_index is not None:
            self._faiss_index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            new._faiss_index, self._faiss_index = self._faiss_index, None
        return new

    def delete(self, rows: np.ndarray) -> DenseIndex:
        """A new index without ``rows`` (later rows move up); HNSW cannot drop nodes, so its graph is
        rebuilt lazily."""
        return DenseIndex(np.delete(np.asarray(self.vectors), np.asarray(rows, np.int64), axis=0), self.params)

    def search(
        self, query: np.ndarray, n: int, allowed: np.ndarray | None = None, ef_search: int = EF_SEARCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (rows, scores) of one (dim,) query, best first; fewer where fewer rows are allowed."""
        rows, scores = self.search_batch(np.asarray(query)[None, :], n, allowed, ef_search)
        found = rows[0] >= 0
        return rows[0][found], scores[0][found]

    def search_batch(
        self, queries: np.ndarray, n: int, allowed: np.ndarray | None = None, ef_search: int = EF_SEARCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (rows, scores) for each (dim,) query of ``queries`` (q, dim): two (q, n) arrays; missing
        slots have row -1. ``allowed`` (n_rows,) bool masks rows out; ``ef_search`` sizes HNSW's search."""
        faiss = _faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = min(n, len(self))
        if n == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        if self.kind == "flat" and len(queries) <= SMALL_BATCH:
            return _exact_search(np.asarray(self.vectors, np.float32), queries, n, allowed)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef_search, n))
                if self.kind == "hnsw"
                else faiss.SearchParameters(sel=selector)
            )
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search, n))
        scores, rows = self.faiss_index.search(queries, n, params=params)
        return rows.astype(np.int64), scores

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_array(directory / "vectors.npy", np.asarray(self.vectors, np.float32))
        if self.kind == "hnsw":
            _faiss().write_index(self.faiss_index, str(directory / "hnsw.faiss"))

    @classmethod
    def load(cls, directory: Path, params: DenseParams) -> DenseIndex:
        vectors = load_array(directory / "vectors.npy")
        structure = None
        hnsw = directory / "hnsw.faiss"
        if params.kind_for(len(vectors)) == "hnsw" and hnsw.exists():
            faiss = _faiss()
            structure = faiss.read_index(str(hnsw), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        return cls(vectors, params, structure)
