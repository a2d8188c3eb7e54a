"""The Qdrant engine: the retrieval recipe's three questions answered by one Qdrant collection.

Rows are the snapshot's own (``rows/chunk_ids.npy``); Qdrant answers in chunk ids, mapped back here, so
fusion, the MaxSim modes and every hit's per-path ranks and scores stay in :mod:`rag.retrieval`. The
BM25 query vector carries the idf from the generation's global statistics, which the store keeps
(:mod:`rag.index.term_statistics`; an index written before they were kept there reads its snapshot's postings).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.encode.projection import project_tokens
from rag.errors import IndexCorruptError
from rag.index.qdrant import ADAPTED_SLOTS, TOKENS, QdrantCollection
from rag.index.snapshot import Snapshot
from rag.index.term_statistics import StoredTermStatistics, TermStatistics
from rag.maxsim import maxsim_packed
from rag.objects import Filters
from rag.retrieval import Ranking


class QdrantEngine:
    """:class:`rag.retrieval.Engine` over a Qdrant-backed :class:`Snapshot`; filters become a Qdrant filter
    that also keeps only the snapshot's generation.

    Where the index has an adapted head, MaxSim scores the query's projected tokens against the
    generation's adapted slot; ``adapted=False`` scores the raw token vectors (for comparison)."""

    def __init__(self, snapshot: Snapshot, collection: QdrantCollection, adapted: bool = True) -> None:
        self.snapshot = snapshot
        self.collection = collection
        self.adapted = adapted and snapshot.projection is not None
        self._rows: dict[str, int] | None = None
        self._term_statistics: TermStatistics | None = None

    @property
    def term_statistics(self) -> TermStatistics:
        """BM25's query side from the store (df, N: committed with the generation), read on first use;
        the snapshot's postings only for an index whose store does not hold them."""
        if self._term_statistics is None:
            snap = self.snapshot
            stored = StoredTermStatistics.of(snap.store, snap.generation, snap.params.bm25)
            self._term_statistics = stored if stored is not None else snap.sparse
        return self._term_statistics

    def _late(self, tokens: np.ndarray) -> np.ndarray:
        """Token vectors as this engine's MaxSim compares them: through the head where it is used."""
        tokens = np.asarray(tokens, np.float32)
        if self.adapted and self.snapshot.projection is not None:
            return project_tokens(tokens, self.snapshot.projection)
        return tokens

    @property
    def rows(self) -> dict[str, int]:
        """Chunk id → row of this snapshot, built on first use."""
        if self._rows is None:
            self._rows = {str(c): i for i, c in enumerate(np.asarray(self.snapshot.chunk_ids).tolist())}
        return self._rows

    def _ranking(self, found: list[tuple[str, float]]) -> Ranking:
        rows = self.rows
        try:
            return [(rows[cid], score) for cid, score in found]
        except KeyError as exc:
            raise IndexCorruptError(
                f"Qdrant collection {self.collection.name} serves chunk {exc} that generation "
                f"{self.snapshot.generation} does not hold"
            ) from exc

    def scope(self, filters: Filters | None) -> Any:
        return self.collection.live_filter(self.snapshot.generation, filters)

    def dense(self, queries: np.ndarray, n: int, scope: Any) -> list[Ranking]:
        return [self._ranking(found) for found in self.collection.dense_batch(queries, n, scope)]

    def bm25(self, question: str, n: int, scope: Any) -> Ranking:
        terms, weights = self.term_statistics.query_terms(self.snapshot.bm25_tokenize(question))
        slot = self.snapshot.params.engine.bm25_slot
        ranking = self._ranking(self.collection.bm25(terms, weights, n, scope, slot))
        return sorted(ranking, key=lambda item: (-item[1], item[0]))  # ties by row, as the embedded BM25

    def maxsim(self, query_tokens: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> Ranking:
        """MaxSim in Qdrant; per-token weights scale the query vectors (``w * max <q, d> = max <w q, d>``
        for ``w >= 0``). Exact ties keep the candidates' order."""
        chunk_ids = np.asarray(self.snapshot.chunk_ids)[np.asarray(candidates, np.int64)].tolist()
        query = self._late(query_tokens)
        if weights is not None:
            query = query * np.clip(np.asarray(weights, np.float32), 0.0, None)[:, None]
        using = ADAPTED_SLOTS[self.snapshot.params.engine.adapted_slot] if self.adapted else TOKENS
        scores = self.collection.maxsim(query, [str(c) for c in chunk_ids], using)
        order = sorted(range(len(chunk_ids)), key=lambda i: -scores.get(str(chunk_ids[i]), 0.0))
        return [(int(candidates[i]), scores.get(str(chunk_ids[i]), 0.0)) for i in order]

    def maxsim_outside(self, query_tokens: np.ndarray, tokens: np.ndarray, weights: np.ndarray | None) -> float:
        """MaxSim of a passage not in the index, from its token vectors stored as Qdrant stores them
        (projected by the head first, where :meth:`maxsim` uses it)."""
        stored = np.asarray(self._late(tokens), np.float16).astype(np.float32)
        offsets = np.array([0, len(stored)], np.int64)
        return float(maxsim_packed(self._late(query_tokens), stored, offsets, weights)[0])
