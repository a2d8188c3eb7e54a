"""Dense index: FAISS inner product over unit vectors; exact (flat) by default, HNSW above a size threshold.

HNSW cannot drop a node, and rebuilding the graph after a delete took 7 minutes at 1M chunks. A delete
therefore keeps the graph and tombstones the deleted rows' nodes: ``node_rows`` maps each graph node to
its row (-1: deleted), searches skip tombstoned nodes through FAISS's selector, and the graph is rebuilt
only once tombstones pass :data:`TOMBSTONE_REBUILD` of its nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.index.arrays import load_array, marked_rows, save_array

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


# Tombstoned share of an HNSW graph's nodes above which a delete rebuilds the graph: past it, searches
# walk ever more dead nodes (recall and speed fall) and the graph's file carries them.
TOMBSTONE_REBUILD = 0.10
GRAPH_FILE = "hnsw.faiss"
NODE_ROWS_FILE = "hnsw_rows.npy"  # present only when the graph's nodes are not its rows one for one

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

    def __init__(
        self,
        vectors: np.ndarray,
        params: DenseParams,
        faiss_index: Any | None = None,
        node_rows: np.ndarray | None = None,
        graph_file: Path | None = None,
        deleted: np.ndarray | None = None,
    ) -> None:
        """``node_rows``: the row of each HNSW node, -1 for a deleted one (None: node i is row i).
        ``graph_file``: where ``faiss_index`` was read from, while it is unchanged (saved as a link).
        ``deleted`` (n_rows,) bool: rows deleted since the vectors were written, never returned."""
        self.vectors = vectors
        self.params = params
        self.deleted = marked_rows(deleted)
        self.live = None if self.deleted is None else ~self.deleted  # once, not per search
        self.kind: Kind = params.kind_for(len(vectors))
        self._faiss_index = faiss_index if self.kind == "hnsw" else None
        self.node_rows = node_rows if self._faiss_index is not None else None
        self._graph_file = graph_file if self._faiss_index is not None else None

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def faiss_index(self) -> Any:
        if self._faiss_index is None:
            self._faiss_index = self._build_structure(np.asarray(self.vectors, dtype=np.float32))
            self.node_rows, self._graph_file = None, None
        return self._faiss_index

    @property
    def tombstones(self) -> int:
        """Deleted rows whose nodes are still in the HNSW graph."""
        return 0 if self.node_rows is None else int(np.count_nonzero(self.node_rows < 0))

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
        """A new index with ``vectors`` appended (deleted rows are dropped first); an HNSW graph grows in
        place of a rebuild."""
        if self.deleted is not None:
            return self.delete(np.zeros(0, np.int64)).add(vectors)
        merged = np.concatenate([np.asarray(self.vectors, np.float32), vectors.astype(np.float32)])
        if self.params.kind_for(len(merged)) != "hnsw" or self.kind != "hnsw" or self._faiss_index is None:
            return DenseIndex(merged, self.params)
        graph, node_rows = self._faiss_index, self.node_rows
        graph.add(np.ascontiguousarray(vectors, dtype=np.float32))  # new nodes, numbered after the old ones
        if node_rows is not None:
            node_rows = np.concatenate([node_rows, np.arange(len(self), len(merged), dtype=np.int64)])
        self._faiss_index, self.node_rows, self._graph_file = None, None, None  # the graph moved on
        return DenseIndex(merged, self.params, graph, node_rows)

    def delete(self, rows: np.ndarray) -> DenseIndex:
        """A new index without ``rows`` (later rows move up). An HNSW graph keeps the deleted rows' nodes
        as tombstones, until they pass :data:`TOMBSTONE_REBUILD` of it; then it is rebuilt lazily. The
        graph moves to the new index (this one would build its own again if searched). The rows deleted
        before (:attr:`deleted`) go too."""
        rows = np.asarray(rows, np.int64)
        if self.deleted is not None:
            rows = np.union1d(rows, np.flatnonzero(self.deleted))
        kept = np.delete(np.asarray(self.vectors), rows, axis=0)
        if self.kind != "hnsw" or self._faiss_index is None or self.params.kind_for(len(kept)) != "hnsw":
            return DenseIndex(kept, self.params)
        removed = np.zeros(len(self), bool)
        removed[rows] = True
        new_row = np.where(removed, -1, np.cumsum(~removed) - 1)  # old row -> its row after the delete
        old_nodes = np.arange(len(self), dtype=np.int64) if self.node_rows is None else self.node_rows
        node_rows = np.where(old_nodes >= 0, new_row[np.maximum(old_nodes, 0)], -1)
        if np.count_nonzero(node_rows < 0) > TOMBSTONE_REBUILD * len(node_rows):
            return DenseIndex(kept, self.params)
        graph, graph_file = self._faiss_index, self._graph_file
        self._faiss_index, self.node_rows, self._graph_file = None, None, None  # the graph moves to the new index
        return DenseIndex(kept, self.params, graph, node_rows, graph_file)

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
        if self.live is not None:
            allowed = self.live if allowed is None else allowed & self.live
        if n == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        if self.kind == "flat" and len(queries) <= SMALL_BATCH:
            return _exact_search(np.asarray(self.vectors, np.float32), queries, n, allowed)
        structure = self.faiss_index
        node_rows = self.node_rows
        if node_rows is not None:  # the filter, and the tombstones, in the graph's node numbering
            alive = node_rows >= 0
            allowed = alive & allowed[np.maximum(node_rows, 0)] if allowed is not None else alive
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
        scores, rows = structure.search(queries, n, params=params)
        rows = rows.astype(np.int64)
        if node_rows is not None:
            rows = np.where(rows >= 0, node_rows[np.maximum(rows, 0)], -1)
        return rows, scores

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_array(directory / "vectors.npy", np.asarray(self.vectors, np.float32))
        if self.kind != "hnsw":
            return
        structure = self.faiss_index
        if not self._link_graph(directory / GRAPH_FILE):
            _faiss().write_index(structure, str(directory / GRAPH_FILE))
        if self.node_rows is not None:
            save_array(directory / NODE_ROWS_FILE, self.node_rows)

    def _link_graph(self, target: Path) -> bool:
        """The graph unchanged since it was read (tombstones aside): share its file instead of writing it
        again (1.8 GB at 1M chunks). False where there is no such file or it cannot be linked."""
        if self._graph_file is None:
            return False
        try:
            os.link(self._graph_file, target)
        except OSError:
            return False
        return True

    @classmethod
    def load(cls, directory: Path, params: DenseParams, deleted: np.ndarray | None = None) -> DenseIndex:
        """The index saved in ``directory``; ``deleted`` marks the rows deleted since (the snapshot's)."""
        vectors = load_array(directory / "vectors.npy")
        hnsw = directory / GRAPH_FILE
        if params.kind_for(len(vectors)) != "hnsw" or not hnsw.exists():
            return cls(vectors, params, deleted=deleted)
        faiss = _faiss()
        structure = faiss.read_index(str(hnsw), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        node_rows = (
            load_array(directory / NODE_ROWS_FILE, mmap=False) if (directory / NODE_ROWS_FILE).exists() else None
        )
        return cls(vectors, params, structure, node_rows, hnsw, deleted)
