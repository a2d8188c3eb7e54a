"""The Qdrant behaviour the Qdrant engine relies on, checked against numpy in Qdrant's own engine
(qdrant-edge-py, the server's shard code in process) and in qdrant-client's local mode (a Python
re-implementation, which the other engine tests run on), with the same requests:

- DOT on ``dense`` and a float16 ``MAX_SIM`` multivector on ``tokens`` score as numpy does;
- a sparse vector without a modifier scores the plain dot product, so BM25 is exact when the query
  carries the idf;
- writing one BM25 slot leaves the other one untouched;
- the generation filter (``added_gen <= g`` and not ``deleted_gen <= g``) keeps a point without
  ``deleted_gen``, and drops one marked deleted;
- roll back (delete points above a generation, clear later deletion marks) and purge.

Real SQuAD paragraphs, the bundled encoder's vectors, BM25 weights from :class:`BM25Index`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.index.bm25 import BM25Index, BM25Params
from rag.index.bm25_tokenizer import make_tokenizer
from rag.index.qdrant import BM25_SLOTS, DENSE, TOKENS, QdrantCollection, point_id
from rag.maxsim import maxsim_packed
from rag.settings import Settings
from tests.conftest import read_jsonl

pytest.importorskip("qdrant_client")

FIRST, NEW = 20, 4  # generation 1 writes passages 0..19; an uncommitted generation 2 adds 20..23
DELETED = range(0, 4)  # and marks 0..3 deleted
QUESTIONS = ["What was the price of oil in March of 1974?", "Who won Super Bowl 50?", "When was it founded?"]
Weights = list[tuple[np.ndarray, np.ndarray]]


class LocalPoints:
    """The engine's own :class:`QdrantCollection` on qdrant-client's local mode."""

    def __init__(self, dim: int, token_dim: int) -> None:
        from qdrant_client import QdrantClient

        self.points = QdrantCollection(QdrantClient(location=":memory:"), f"contract-{uuid.uuid4().hex[:8]}")
        self.points.create(dim, token_dim)

    def write(
        self, ids: Sequence[str], dense: np.ndarray, tokens: list[np.ndarray], bm25: Weights, slot: int, gen: int
    ) -> None:
        self.points.upsert(self.points.point(c, {}, dense[i], tokens[i], bm25[i], slot, gen) for i, c in enumerate(ids))

    def set_bm25(self, ids: Sequence[str], bm25: Weights, slot: int) -> None:
        self.points.set_bm25(ids, bm25, slot)

    def mark_deleted(self, ids: Sequence[str], gen: int) -> None:
        self.points.mark_deleted(ids, gen)

    def roll_back(self, live: int) -> None:
        self.points.roll_back(live)

    def purge(self, gen: int) -> None:
        self.points.purge(gen)

    def count(self, gen: int | None) -> int:
        if gen is None:
            return int(self.points.client.count(self.points.name, exact=True).count)
        return self.points.count_live(gen)

    def dense(self, query: np.ndarray, n: int, gen: int) -> list[tuple[str, float]]:
        return self.points.dense_batch(query[None, :], n, self.points.live_filter(gen))[0]

    def bm25(self, terms: np.ndarray, weights: np.ndarray, n: int, gen: int, slot: int) -> list[tuple[str, float]]:
        return self.points.bm25(terms, weights, n, self.points.live_filter(gen), slot)

    def maxsim(self, query_tokens: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        return self.points.maxsim(query_tokens, ids)


class EdgePoints:
    """The same schema and requests on an Edge shard: Qdrant's engine, in process."""

    def __init__(self, dim: int, token_dim: int, directory: Path) -> None:
        import qdrant_edge as q

        self.q = q
        config = q.EdgeConfig(
            vectors={
                DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Dot),
                TOKENS: q.EdgeVectorParams(
                    size=token_dim,
                    distance=q.Distance.Dot,
                    multivector_config=q.MultiVectorConfig(comparator=q.MultiVectorComparator.MaxSim),
                    datatype=q.VectorStorageDatatype.Float16,
                ),
            },
            sparse_vectors={name: q.EdgeSparseVectorParams() for name in BM25_SLOTS},
        )
        self.shard = q.EdgeShard.create(str(directory), config)
        for field in ("added_gen", "deleted_gen"):
            self.shard.update(q.UpdateOperation.create_field_index(field, q.PayloadSchemaType.Integer))

    def _range(self, key: str, **bounds: int) -> Any:
        return self.q.FieldCondition(key, range=self.q.RangeFloat(**bounds))

    def _live(self, gen: int) -> Any:
        return self.q.Filter(must=[self._range("added_gen", lte=gen)], must_not=[self._range("deleted_gen", lte=gen)])

    def _sparse(self, terms: np.ndarray, weights: np.ndarray) -> Any:
        return self.q.SparseVector(np.asarray(terms).tolist(), np.asarray(weights).tolist())

    def write(
        self, ids: Sequence[str], dense: np.ndarray, tokens: list[np.ndarray], bm25: Weights, slot: int, gen: int
    ) -> None:
        q = self.q
        points = [
            q.Point(
                point_id(c),
                {
                    DENSE: dense[i].tolist(),
                    TOKENS: tokens[i].astype(np.float16).astype(np.float32).tolist(),
                    BM25_SLOTS[slot]: self._sparse(*bm25[i]),
                },
                {"chunk_id": c, "added_gen": gen},
            )
            for i, c in enumerate(ids)
        ]
        self.shard.update(q.UpdateOperation.upsert_points(points))

    def set_bm25(self, ids: Sequence[str], bm25: Weights, slot: int) -> None:
        name = BM25_SLOTS[slot]
        vectors = [self.q.PointVectors(point_id(c), {name: self._sparse(*w)}) for c, w in zip(ids, bm25, strict=True)]
        self.shard.update(self.q.UpdateOperation.update_vectors(vectors))

    def mark_deleted(self, ids: Sequence[str], gen: int) -> None:
        self.shard.update(self.q.UpdateOperation.set_payload([point_id(c) for c in ids], {"deleted_gen": gen}))

    def roll_back(self, live: int) -> None:
        q = self.q
        self.shard.update(q.UpdateOperation.delete_points_by_filter(q.Filter(must=[self._range("added_gen", gt=live)])))
        marked = self.shard.scroll(
            q.ScrollRequest(limit=10_000, filter=q.Filter(must=[self._range("deleted_gen", gt=live)]))
        )
        ids = [p.id for p in marked[0]]
        if ids:
            self.shard.update(q.UpdateOperation.delete_payload(ids, ["deleted_gen"]))

    def purge(self, gen: int) -> None:
        q = self.q
        self.shard.update(
            q.UpdateOperation.delete_points_by_filter(q.Filter(must=[self._range("deleted_gen", lte=gen)]))
        )

    def count(self, gen: int | None) -> int:
        return int(self.shard.count(self.q.CountRequest(filter=None if gen is None else self._live(gen))))

    def _found(self, request: Any) -> list[tuple[str, float]]:
        return [(str((p.payload or {})["chunk_id"]), float(p.score)) for p in self.shard.query(request)]

    def dense(self, query: np.ndarray, n: int, gen: int) -> list[tuple[str, float]]:
        q = self.q
        return self._found(
            q.QueryRequest(
                limit=n,
                query=q.Query.Nearest(query.tolist(), using=DENSE),
                filter=self._live(gen),
                with_payload=True,
                params=q.SearchParams(exact=True),
            )
        )

    def bm25(self, terms: np.ndarray, weights: np.ndarray, n: int, gen: int, slot: int) -> list[tuple[str, float]]:
        q = self.q
        return self._found(
            q.QueryRequest(
                limit=n,
                query=q.Query.Nearest(self._sparse(terms, weights), using=BM25_SLOTS[slot]),
                filter=self._live(gen),
                with_payload=True,
            )
        )

    def maxsim(self, query_tokens: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        q = self.q
        request = q.QueryRequest(
            limit=len(ids),
            query=q.Query.Nearest(query_tokens.tolist(), using=TOKENS),
            filter=q.Filter(must=[q.HasIdCondition({point_id(c) for c in ids})]),
            with_payload=True,
            params=q.SearchParams(exact=True),
        )
        return dict(self._found(request))


@pytest.fixture(scope="module")
def corpus(squad_dir: Path, encoder, settings: Settings):
    texts = [r["text"] for r in read_jsonl(squad_dir / "corpus.jsonl")[: FIRST + NEW]]
    ids = [f"c{i}" for i in range(len(texts))]
    encoded = encoder.encode(texts)
    tokenize = make_tokenizer(settings.bm25_stopwords, settings.bm25_stemmer)
    sparse = BM25Index.empty(BM25Params()).add([tokenize(t) for t in texts])
    questions = encoder.encode(QUESTIONS)
    return ids, encoded, sparse, tokenize, questions


@pytest.fixture(params=["local", "edge"])
def points(request, corpus, tmp_path: Path):
    _, encoded, _, _, _ = corpus
    dim, token_dim = encoded.dense.shape[1], encoded.tokens[0].shape[1]
    if request.param == "edge":
        pytest.importorskip("qdrant_edge")
        return EdgePoints(dim, token_dim, tmp_path / "shard")
    return LocalPoints(dim, token_dim)


def _bm25_expected(sparse: BM25Index, terms: np.ndarray, weights: np.ndarray, rows: range, avgdl: float):
    """Σ query weight × document weight, per row: the dot product a sparse search must give."""
    query = dict(zip(terms.tolist(), weights.tolist(), strict=True))
    out = {}
    for row, (t, w) in zip(rows, sparse.saturated_tf(np.asarray(rows), avgdl), strict=True):
        score = sum(query.get(int(term), 0.0) * float(v) for term, v in zip(t, w, strict=True))
        if score > 0:
            out[f"c{row}"] = score
    return out


def test_qdrant_scores_filters_and_rolls_back_as_the_engine_expects(points, corpus) -> None:
    ids, encoded, sparse, tokenize, questions = corpus
    stale, exact = sparse.avgdl * 1.3, sparse.avgdl  # slot 0 written with an old mean length, slot 1 exact
    first, new = range(FIRST), range(FIRST, FIRST + NEW)
    points.write(ids[:FIRST], encoded.dense, encoded.tokens, sparse.saturated_tf(np.arange(FIRST), stale), 0, 1)

    def live_bm25(terms: np.ndarray, weights: np.ndarray, gen: int, slot: int) -> list[tuple[str, float]]:
        return points.bm25(terms, weights, FIRST + NEW, gen, slot)

    queries = [sparse.query_terms(tokenize(q)) for q in QUESTIONS]
    before = [live_bm25(t, w, 1, 0) for t, w in queries]

    # generation 2, not committed: deletions marked, new points into slot 1, kept points re-weighted there
    points.mark_deleted([ids[i] for i in DELETED], 2)
    new_dense = encoded.dense[FIRST:]
    points.write(ids[FIRST:], new_dense, encoded.tokens[FIRST:], sparse.saturated_tf(np.asarray(new), exact), 1, 2)
    kept = [i for i in first if i not in DELETED]
    points.set_bm25([ids[i] for i in kept], sparse.saturated_tf(np.asarray(kept), exact), 1)

    assert points.count(1) == FIRST
    assert points.count(2) == FIRST - len(DELETED) + NEW
    assert points.count(None) == FIRST + NEW
    for question, (terms, weights), old in zip(QUESTIONS, queries, before, strict=True):
        assert live_bm25(terms, weights, 1, 0) == old  # the live slot, bit for bit
        want = _bm25_expected(sparse, terms, weights, first, stale)
        assert want and dict(old).keys() == want.keys()
        assert all(score == pytest.approx(want[c], rel=1e-5) for c, score in old)
        # the next generation's slot gives exact BM25: the index's own scores, the idf on the query side
        got = dict(live_bm25(terms, weights, 2, 1))
        rows, scores = sparse.search(tokenize(question), FIRST + NEW)
        want = {f"c{r}": float(s) for r, s in zip(rows, scores, strict=True) if s > 0 and int(r) not in DELETED}
        assert want and got.keys() == want.keys()
        assert all(got[c] == pytest.approx(want[c], rel=1e-5) for c in got)

    live = np.asarray([i for i in range(FIRST + NEW) if i not in DELETED])
    for query, query_tokens in zip(questions.dense, questions.tokens, strict=True):
        found = points.dense(query, 5, 2)
        want = live[np.argsort(-(encoded.dense[live] @ query))[:5]]
        assert [c for c, _ in found] == [ids[i] for i in want]
        assert [s for _, s in found] == pytest.approx((encoded.dense[want] @ query).tolist(), rel=1e-5)
        candidates = [ids[i] for i in range(0, FIRST + NEW, 3)]
        stored = [encoded.tokens[int(c[1:])].astype(np.float16).astype(np.float32) for c in candidates]
        offsets = np.cumsum([0] + [len(t) for t in stored])
        want_maxsim = maxsim_packed(query_tokens.astype(np.float32), np.concatenate(stored), offsets, None)
        got_maxsim = points.maxsim(query_tokens.astype(np.float32), candidates)
        assert [got_maxsim[c] for c in candidates] == pytest.approx(want_maxsim.tolist(), rel=1e-3)

    # the writer died: the next one rolls generation 2 back
    points.roll_back(1)
    assert points.count(None) == points.count(1) == points.count(2) == FIRST
    assert [live_bm25(t, w, 1, 0) for t, w in queries] == before

    points.mark_deleted([ids[i] for i in DELETED], 2)
    points.purge(2)  # no reader of generation 2 or later sees them
    assert points.count(None) == FIRST - len(DELETED)
