"""BM25's global statistics as the query side needs them, kept in the store for the Qdrant engine.

A BM25 query weighs each term by its idf, which needs the term's document frequency (df) and the
corpus's passage count (N) — global numbers, not a shard's. On the Qdrant engine they are committed to
the store (PostgreSQL where the store is) in the same transaction as the generation they describe, one row
per (term, the generations it holds that df), so readers of any kept generation compute the idf the
embedded index computes from its postings without reading the snapshot folder's postings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.index.bm25 import BM25Index, BM25Params, idf_of_df

if TYPE_CHECKING:
    from rag.index.store import DocumentStore

KNOWN_TERMS_CACHED = 200_000  # terms a reader keeps looked up (a generation's dfs never change)


@dataclass(frozen=True)
class BM25Totals:
    """A generation's corpus-wide BM25 numbers besides the dfs."""

    n_docs: int
    total_length: int  # tokens over every passage (avgdl = total_length / n_docs)
    okapi_floor: float  # the idf ``okapi`` puts in place of a negative one (depends on the whole vocabulary)
    max_idf: float  # the rarest term's idf (1.0 for an empty index), for per-token MaxSim weights


@dataclass(frozen=True)
class TermChanges:
    """What one generation changes in the stored statistics: the terms whose df (or id) is new, and the
    ids whose row of the previous generation ends there (None: every row, as after a rebuild)."""

    totals: BM25Totals
    closed: tuple[int, ...] | None
    opened: tuple[tuple[str, int, int], ...]  # (term, term id, df); df 0 for a term all of whose passages went


class TermStatistics(Protocol):
    """The query side of BM25: :class:`BM25Index` from its postings, or :class:`StoredTermStatistics`."""

    def query_terms(self, query_tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The query's term ids and weights ``count * idf``; terms unknown or of idf 0 carry nothing."""
        ...

    def idf_of(self, term: str) -> float | None:
        """The term's idf, or None for a term the index never held."""
        ...

    @property
    def max_idf(self) -> float: ...


def totals_of(index: BM25Index) -> BM25Totals:
    return BM25Totals(
        n_docs=len(index),
        total_length=int(np.asarray(index.doc_lengths, np.int64).sum()),
        okapi_floor=index.okapi_floor,
        max_idf=index.max_idf,
    )


def term_changes(previous: BM25Index | None, current: BM25Index) -> TermChanges:
    """The rows that take the store from ``previous``'s statistics to ``current``'s. ``current`` must
    extend ``previous``'s vocabulary (the writer only appends terms); None: store every term afresh."""
    new_df = np.diff(np.asarray(current.indptr))
    if previous is None:
        every = range(len(new_df))
        return TermChanges(totals_of(current), None, tuple((current.vocabulary[i], i, int(new_df[i])) for i in every))
    n_old = len(previous.vocabulary)
    if current.vocabulary[:n_old] != previous.vocabulary:
        raise ValueError("the new BM25 vocabulary does not extend the previous one")
    old_df = np.full(len(new_df), -1, np.int64)  # -1: a term the previous generation did not know
    old_df[:n_old] = np.diff(np.asarray(previous.indptr))
    changed = np.flatnonzero(old_df != new_df)
    return TermChanges(
        totals_of(current),
        tuple(int(i) for i in changed if i < n_old),
        tuple((current.vocabulary[i], int(i), int(new_df[i])) for i in changed),
    )


class StoredTermStatistics:
    """One generation's query-side statistics, read from the store: the dfs of a question's terms are
    looked up once each and kept, and the idf is computed as :class:`BM25Index` computes it."""

    def __init__(self, store: DocumentStore, generation: int, params: BM25Params, totals: BM25Totals) -> None:
        self.store = store
        self.generation = generation
        self.params = params
        self.totals = totals
        self._known: dict[str, tuple[int, float] | None] = {}  # term -> (term id, idf), None: not in the index

    @classmethod
    def of(cls, store: DocumentStore, generation: int, params: BM25Params) -> StoredTermStatistics | None:
        """The store's statistics of ``generation``, or None where it holds none (an index written
        before they were kept there, or on the embedded engine)."""
        totals = store.bm25_totals(generation)
        return None if totals is None else cls(store, generation, params, totals)

    def _look_up(self, terms: Sequence[str]) -> None:
        missing = [t for t in dict.fromkeys(terms) if t not in self._known]
        if not missing:
            return
        if len(self._known) + len(missing) > KNOWN_TERMS_CACHED:
            self._known.clear()
        found = self.store.term_dfs(missing, self.generation)
        present = [t for t in missing if t in found]
        dfs = np.array([found[t][1] for t in present], np.float64)
        idf = idf_of_df(dfs, self.totals.n_docs, self.params, self.totals.okapi_floor)
        for term in missing:
            self._known[term] = None
        for term, value in zip(present, idf.tolist(), strict=True):
            self._known[term] = (found[term][0], value)

    def query_terms(self, query_tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(query_tokens)
        self._look_up(list(counts))
        terms: list[int] = []
        weights: list[float] = []
        for term, count in counts.items():
            known = self._known.get(term)
            if known is not None and known[1] != 0:
                terms.append(known[0])
                weights.append(count * known[1])
        return np.asarray(terms, np.int64), np.asarray(weights, np.float64)

    def idf_of(self, term: str) -> float | None:
        self._look_up([term])
        known = self._known.get(term)
        return None if known is None else known[1]

    @property
    def max_idf(self) -> float:
        return self.totals.max_idf
