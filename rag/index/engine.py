"""The embedded engine: the retrieval recipe's three questions answered from one local snapshot; and
:func:`make_engine`, which picks the engine an index was built for."""

from __future__ import annotations

import numpy as np

from rag.encode.projection import project_tokens
from rag.filters import allowed_rows
from rag.index.dense import EF_SEARCH
from rag.index.qdrant import QdrantCollection, connect
from rag.index.qdrant_engine import QdrantEngine
from rag.index.snapshot import Snapshot
from rag.index.term_statistics import TermStatistics
from rag.objects import Filters
from rag.retrieval import Ranking
from rag.settings import Settings

RowMask = np.ndarray | None  # (n_rows,) bool, or None for every row


class LocalEngine:
    """:class:`rag.retrieval.Engine` over a :class:`Snapshot`; filters become a row mask.

    ``adapted=False`` scores MaxSim with the raw token vectors even where the index has an adapted
    head (for comparison)."""

    def __init__(self, snapshot: Snapshot, ef_search: int = EF_SEARCH, adapted: bool = True) -> None:
        self.snapshot = snapshot
        self.ef_search = ef_search
        self.adapted = adapted and snapshot.projected is not None and snapshot.projection is not None

    @property
    def term_statistics(self) -> TermStatistics:
        """BM25's query side: the snapshot's postings."""
        return self.snapshot.sparse

    def scope(self, filters: Filters | None) -> RowMask:
        if filters is None or filters.empty:
            return None
        return allowed_rows(filters, *self.snapshot.row_fields())

    def dense(self, queries: np.ndarray, n: int, scope: RowMask) -> list[Ranking]:
        rows, scores = self.snapshot.dense.search_batch(queries, n, scope, ef_search=self.ef_search)
        return [
            [(int(r), float(s)) for r, s in zip(row, score, strict=True) if r >= 0]
            for row, score in zip(rows, scores, strict=True)
        ]

    def bm25(self, question: str, n: int, scope: RowMask) -> Ranking:
        rows, scores = self.snapshot.sparse.search(self.snapshot.bm25_tokenize(question), n, scope)
        return [(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]

    def maxsim(self, query_tokens: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> Ranking:
        snap = self.snapshot
        index = snap.multivector
        if self.adapted and snap.projected is not None and snap.projection is not None:
            index, query_tokens = snap.projected, project_tokens(query_tokens, snap.projection)
        rows, scores = index.search(query_tokens, len(candidates), candidates, weights)
        return [(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]

    def maxsim_outside(self, query_tokens: np.ndarray, tokens: np.ndarray, weights: np.ndarray | None) -> float:
        """MaxSim of a passage that is not in the index, from its (n, dim) token vectors as the writer
        would store them (projected by the adapted head where :meth:`maxsim` uses it)."""
        snap = self.snapshot
        index = snap.multivector
        if self.adapted and snap.projected is not None and snap.projection is not None:
            index = snap.projected
            # The head projects what the raw index stores (its codes decoded), as for indexed passages.
            stored = snap.multivector.codec.as_stored(tokens)
            query_tokens = project_tokens(query_tokens, snap.projection)
            tokens = project_tokens(stored, snap.projection)
        return index.score_tokens(query_tokens, tokens, weights)


def make_engine(snapshot: Snapshot, settings: Settings, adapted: bool = True) -> LocalEngine | QdrantEngine:
    """The engine the snapshot's index was built on (its manifest says which)."""
    engine = snapshot.params.engine
    if engine.kind == "qdrant":
        client = connect(settings, snapshot.index_dir)
        collection = QdrantCollection(client, engine.collection, settings.dense_hnsw_ef_search)
        return QdrantEngine(snapshot, collection, adapted)
    return LocalEngine(snapshot, settings.dense_hnsw_ef_search, adapted)
