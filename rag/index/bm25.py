"""BM25 over term postings (plain CSC arrays); ``okapi`` scores equal ``rank_bm25.BM25Okapi``.

Scoring follows rank_bm25 exactly: every query token counts (repeats too), a document's score is
``sum idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``, and in ``okapi`` a negative
idf is replaced by ``epsilon * mean(idf)``. ``lucene`` uses ``log(1 + (N - df + 0.5) / (df + 0.5))``,
which is never negative. Term frequencies are kept, weights are computed per query in float64.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from rag.index.arrays import load_array, marked_rows, save_array
from rag.index.bm25_select import rows_that_can_reach, summed_impacts

# From this many postings a query's postings are summed in compiled code and only the rows that can
# reach the top n are sorted (rag/index/bm25_select.py); below, numpy's scatter-add costs less than
# building the sparse product (docs/benchmarks.md: BM25 at 100k and 1M chunks).
SELECT_MIN_POSTINGS = 50_000

Variant = Literal["okapi", "lucene"]


@dataclass(frozen=True)
class BM25Params:
    variant: Variant = "lucene"
    k1: float = 1.2
    b: float = 0.75
    epsilon: float = 0.25


def okapi_raw_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """rank_bm25's BM25Okapi idf before its floor: negative for terms in more than half the passages."""
    return np.log(n_docs - df + 0.5) - np.log(df + 0.5)


def okapi_floor(df: np.ndarray, n_docs: int, epsilon: float) -> float:
    """What BM25Okapi puts in place of a negative idf: ``epsilon`` times the mean idf of the terms present
    (df > 0). It depends on the whole vocabulary, so an engine that looks terms up one by one stores it."""
    present = df > 0
    return float(epsilon * okapi_raw_idf(df[present], n_docs).mean()) if present.any() else 0.0


def idf_of_df(df: np.ndarray, n_docs: int, params: BM25Params, floor: float) -> np.ndarray:
    """The variant's idf of each df (0 for a term absent from the corpus); ``floor`` is
    :func:`okapi_floor` of the whole vocabulary (unused by ``lucene``)."""
    if params.variant == "okapi":
        idf = okapi_raw_idf(df, n_docs)
        return np.where(df > 0, np.where(idf < 0, floor, idf), 0.0)
    return idf_lucene(df, n_docs)


def idf_okapi(df: np.ndarray, n_docs: int, epsilon: float) -> np.ndarray:
    """rank_bm25's BM25Okapi idf over the terms present in the corpus (df > 0)."""
    return idf_of_df(df, n_docs, BM25Params("okapi", epsilon=epsilon), okapi_floor(df, n_docs, epsilon))


def idf_lucene(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's (and bm25s's default) non-negative idf."""
    return np.where(df > 0, np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)), 0.0)


def top_n(scores: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (rows, scores), best first; ties broken by the lower row, at the cut too."""
    if len(scores) > n:
        # argpartition alone lets an arbitrary one of the rows tied at the n-th score in
        cut = np.partition(scores, len(scores) - n)[len(scores) - n]
        above = np.flatnonzero(scores > cut)
        tied = np.flatnonzero(scores == cut)
        keep = np.concatenate([above, tied[np.argsort(rows[tied], kind="stable")[: n - len(above)]]])
        scores, rows = scores[keep], rows[keep]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


class BM25Index:
    """Term → (rows, term frequencies) postings over the snapshot's row space."""

    def __init__(
        self,
        vocabulary: list[str],
        indptr: np.ndarray,
        rows: np.ndarray,
        tfs: np.ndarray,
        doc_lengths: np.ndarray,
        params: BM25Params,
        deleted: np.ndarray | None = None,
    ) -> None:
        """``deleted`` (n_rows,) bool: rows deleted since the postings were written (tombstones). They
        are never returned, and df, N and the mean length are those of the other rows, so scores equal
        those of an index written without them."""
        self.vocabulary = vocabulary
        self.term_ids = {t: i for i, t in enumerate(vocabulary)}
        self.indptr = indptr  # (n_terms + 1,) int64
        self.rows = rows  # (n_postings,) int32
        self.tfs = tfs  # (n_postings,) float32
        self.doc_lengths = doc_lengths  # (n_rows,) int32, tokens per row
        self.params = params
        self.deleted = marked_rows(deleted)
        self.live = None if self.deleted is None else ~self.deleted  # (n_rows,) bool, None: every row
        n = self.n_live
        df = self._document_frequencies()
        self.okapi_floor = okapi_floor(df, n, params.epsilon) if params.variant == "okapi" else 0.0
        self.idf = idf_of_df(df, n, params, self.okapi_floor)
        live_length = doc_lengths.sum() if self.live is None else np.asarray(doc_lengths)[self.live].sum()
        self.avgdl = max(float(live_length) / n if n else 1.0, 1e-9)
        self.norm = self._length_norm(doc_lengths.astype(np.float64))
        self._impacts: np.ndarray | None = None

    @property
    def n_live(self) -> int:
        """Rows not deleted: BM25's N."""
        return len(self.doc_lengths) if self.live is None else int(np.count_nonzero(self.live))

    def _document_frequencies(self) -> np.ndarray:
        """(n_terms,) float64: each term's count of live rows."""
        indptr = np.asarray(self.indptr)
        if self.live is None:
            return np.diff(indptr).astype(np.float64)
        live_postings = np.concatenate([[0], np.cumsum(self.live[np.asarray(self.rows)], dtype=np.int64)])
        return (live_postings[indptr[1:]] - live_postings[indptr[:-1]]).astype(np.float64)

    def _allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """The caller's row mask without the deleted rows."""
        if self.live is None:
            return allowed
        return self.live if allowed is None else allowed & self.live

    def _length_norm(self, lengths: np.ndarray) -> np.ndarray:
        """``k1 * (1 - b + b * length / avgdl)`` per passage length."""
        return self.params.k1 * (1.0 - self.params.b + self.params.b * lengths / self.avgdl)

    @property
    def impacts(self) -> np.ndarray:
        """(n_postings,) float64: each posting's whole BM25 term score, ``idf * tf * (k1 + 1) / (tf + norm)``,
        computed once per snapshot (as bm25s does eagerly) so a query only gathers and adds: at 1M chunks
        this took BM25 from 27 to 14 ms p50 (docs/benchmarks.md), for 8 bytes per posting."""
        if self._impacts is None:
            tf = np.asarray(self.tfs, np.float64)
            term_of_posting = np.repeat(np.arange(len(self.vocabulary)), np.diff(np.asarray(self.indptr)))
            impacts = tf * (self.params.k1 + 1.0) / (tf + self.norm[np.asarray(self.rows)])
            self._impacts = impacts * self.idf[term_of_posting]
        return self._impacts

    def __len__(self) -> int:
        return len(self.doc_lengths)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], params: BM25Params) -> BM25Index:
        return cls.empty(params).add(token_lists)

    @classmethod
    def empty(cls, params: BM25Params) -> BM25Index:
        return cls(
            [], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32), params
        )

    def _matrix(self) -> sp.csc_matrix:
        """(n_rows, n_terms) term frequencies."""
        return sp.csc_matrix(
            (np.asarray(self.tfs), np.asarray(self.rows), np.asarray(self.indptr)),
            shape=(len(self), len(self.vocabulary)),
        )

    @classmethod
    def _from_matrix(
        cls, vocabulary: list[str], matrix: sp.spmatrix, doc_lengths: np.ndarray, params: BM25Params
    ) -> BM25Index:
        csc = sp.csc_matrix(matrix)
        csc.sort_indices()
        return cls(
            vocabulary,
            csc.indptr.astype(np.int64),
            csc.indices.astype(np.int32),
            csc.data.astype(np.float32),
            doc_lengths.astype(np.int32),
            params,
        )

    def add(self, token_lists: Sequence[Sequence[str]]) -> BM25Index:
        """A new index with rows appended for ``token_lists`` (deleted rows are dropped first)."""
        if self.deleted is not None:
            return self.delete(np.zeros(0, np.int64)).add(token_lists)
        vocabulary = list(self.vocabulary)
        term_ids = dict(self.term_ids)
        indptr, cols, data = [0], [], []
        for tokens in token_lists:
            for term, count in Counter(tokens).items():
                tid = term_ids.get(term)
                if tid is None:
                    tid = term_ids[term] = len(vocabulary)
                    vocabulary.append(term)
                cols.append(tid)
                data.append(count)
            indptr.append(len(cols))
        new = sp.csr_matrix(
            (np.asarray(data, np.float32), np.asarray(cols, np.int64), np.asarray(indptr, np.int64)),
            shape=(len(token_lists), len(vocabulary)),
        )
        old = self._matrix()
        old.resize((len(self), len(vocabulary)))
        lengths = np.concatenate([np.asarray(self.doc_lengths), [len(t) for t in token_lists]])
        return self._from_matrix(vocabulary, sp.vstack([old, new], format="csc"), lengths, self.params)

    def delete(self, rows: np.ndarray) -> BM25Index:
        """A new index without ``rows`` nor the deleted rows, the others renumbered from 0 in their order."""
        gone = np.asarray(rows, np.int64)
        if self.deleted is not None:
            gone = np.union1d(gone, np.flatnonzero(self.deleted))
        keep_rows = np.setdiff1d(np.arange(len(self)), gone)
        return self._from_matrix(
            self.vocabulary, self._matrix()[keep_rows], np.asarray(self.doc_lengths)[keep_rows], self.params
        )

    def scores(self, query_tokens: Sequence[str], allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of every row that contains a query term; ``allowed`` is a bool mask over rows."""
        # A dense accumulator: within one term's postings each row appears once, so `+=` by fancy index is
        # exact, and a query costs O(postings) with no sort (docs/benchmarks.md: BM25 at 100k and 1M chunks).
        impacts = self.impacts
        scores_all: np.ndarray | None = None
        zero_rows: list[np.ndarray] = []  # rows matched only through a term whose idf is 0 or less
        for term, count in Counter(query_tokens).items():
            tid = self.term_ids.get(term)
            if tid is None:
                continue
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            rows = self.rows[lo:hi]
            if scores_all is None:
                scores_all = np.zeros(len(self), np.float64)
            scores_all[rows] += impacts[lo:hi] if count == 1 else count * impacts[lo:hi]
            if self.idf[tid] <= 0:  # okapi only, rare: such rows match without a positive score
                zero_rows.append(np.asarray(rows))
        touched = None
        if scores_all is not None:
            touched = scores_all > 0
            for rows in zero_rows:
                touched[rows] = True
        if scores_all is None or touched is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        rows = np.flatnonzero(touched)
        scores = scores_all[rows]
        allowed = self._allowed(allowed)
        if allowed is not None:
            ok = allowed[rows]
            rows, scores = rows[ok], scores[ok]
        return rows, scores

    def score_outside(self, query_tokens: Sequence[str], passage_tokens: Sequence[str]) -> float:
        """BM25 of a passage that is not in the index, with the index's idf and mean length: what
        :meth:`scores` would give it were it one of the rows (and the statistics unchanged)."""
        tf = Counter(passage_tokens)
        norm = float(self._length_norm(np.array([len(passage_tokens)], np.float64))[0])
        total = 0.0
        for term, count in Counter(query_tokens).items():
            tid = self.term_ids.get(term)
            if tid is not None and tf[term]:
                total += count * float(self.idf[tid]) * tf[term] * (self.params.k1 + 1.0) / (tf[term] + norm)
        return total

    def search(
        self, query_tokens: Sequence[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (rows, scores), best first. A query over many postings is summed in compiled code
        and only the rows that can reach the top ``n`` are sorted (rag/index/bm25_select.py); the result
        is the exhaustive one, bit for bit."""
        counts = Counter(query_tokens).items()
        terms = [(tid, count) for term, count in counts if (tid := self.term_ids.get(term)) is not None]
        postings = sum(int(self.indptr[t + 1] - self.indptr[t]) for t, _ in terms)
        if postings >= SELECT_MIN_POSTINGS and n < len(self) and all(self.idf[t] > 0 for t, _ in terms):
            summed = summed_impacts(np.asarray(self.indptr), self.rows, self.impacts, len(self), terms)
            rows = rows_that_can_reach(summed, n, self._allowed(allowed))
            scores = summed[rows]
        else:
            rows, scores = self.scores(query_tokens, allowed)
        return top_n(scores, rows, n)

    def saturated_tf(self, rows: np.ndarray, avgdl: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, its term ids and ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``: the row's
        BM25 without the idf, which the query side brings (a sparse-vector engine's document vector)."""
        csr = self._matrix().tocsr()
        k1, b = self.params.k1, self.params.b
        out = []
        for row in np.asarray(rows, np.int64):
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            tf = csr.data[lo:hi].astype(np.float64)
            norm = k1 * (1.0 - b + b * float(self.doc_lengths[row]) / max(avgdl, 1e-9))
            out.append((csr.indices[lo:hi].astype(np.int64), tf * (k1 + 1.0) / (tf + norm)))
        return out

    def query_terms(self, query_tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The query's term ids and their weights ``count * idf`` (every token counts, as in :meth:`scores`);
        terms the index lacks, or whose idf is 0, carry nothing."""
        terms: list[int] = []
        weights: list[float] = []
        for term, count in Counter(query_tokens).items():
            tid = self.term_ids.get(term)
            if tid is not None and self.idf[tid] != 0:
                terms.append(tid)
                weights.append(count * float(self.idf[tid]))
        return np.asarray(terms, np.int64), np.asarray(weights, np.float64)

    def idf_of(self, term: str) -> float | None:
        """The term's idf, or None for a term the index never held."""
        tid = self.term_ids.get(term)
        return None if tid is None else float(self.idf[tid])

    @property
    def max_idf(self) -> float:
        """The rarest term's idf (1.0 for an empty index)."""
        return float(self.idf.max()) if len(self.idf) else 1.0

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_array(directory / "indptr.npy", np.asarray(self.indptr))
        save_array(directory / "rows.npy", np.asarray(self.rows))
        save_array(directory / "tfs.npy", np.asarray(self.tfs))
        save_array(directory / "doc_lengths.npy", np.asarray(self.doc_lengths))
        (directory / "vocabulary.json").write_text(json.dumps(self.vocabulary, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, directory: Path, params: BM25Params, deleted: np.ndarray | None = None) -> BM25Index:
        """The postings saved in ``directory``; ``deleted`` marks the rows deleted since (the snapshot's)."""
        vocabulary = json.loads((directory / "vocabulary.json").read_text("utf-8"))
        return cls(
            vocabulary,
            load_array(directory / "indptr.npy"),
            load_array(directory / "rows.npy"),
            load_array(directory / "tfs.npy"),
            load_array(directory / "doc_lengths.npy"),
            params,
            deleted,
        )
