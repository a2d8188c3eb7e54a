"""One index's Qdrant collection: its schema, its points' generations, and the three searches.

Each chunk is one point (id: a UUID made from the chunk id; the chunk id is in the payload) with named
vectors ``dense`` (DOT), ``tokens`` (a float16 multivector compared by ``MAX_SIM``, no HNSW: it only
reranks candidates) and two BM25 slots ``bm25-0`` / ``bm25-1`` (sparse: each term's
``tf * (k1 + 1) / (tf + norm)``; the query side carries the idf, computed from the index's own global
statistics, so scores are BM25's and not Qdrant's per-shard IDF). A generation reads one slot (its
manifest says which); a writer that writes every weight again for a new mean passage length writes the
other slot, so readers of the live generation never see a weight change under them. An adapted head's
token vectors (``rag adapt``) go the same way: two multivector slots ``adapted-0`` / ``adapted-1`` of the
raw tokens' width (a narrower head's vectors padded with zeros, which leaves every inner product as it
is), a new head written into the slot the live generation does not read.

Points carry ``added_gen`` and, once deleted, ``deleted_gen``: a reader of generation ``g`` sees exactly
the points with ``added_gen <= g < deleted_gen``, so a writer can upsert the next generation's points
while readers still serve the last one, and roll back what a crash left behind.
"""

from __future__ import annotations

import atexit
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import EngineUnavailableError, IndexCorruptError
from rag.objects import Filters
from rag.settings import Settings

DENSE, TOKENS = "dense", "tokens"
BM25_SLOTS = ("bm25-0", "bm25-1")
ADAPTED_SLOTS = ("adapted-0", "adapted-1")
POINT_NAMESPACE = uuid.UUID("9b6f6f0e-5d0e-4d8e-9c55-8f1f5c0b7a41")  # chunk id → point id, fixed forever
UPSERT_BATCH = 64  # points per upsert: a point's token vectors are ~75k floats on the wire
LOCAL_DIR = "qdrant"  # DIR/qdrant: Qdrant in process when no URL or path is set


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, chunk_id))


def collection_name(alias: str) -> str:
    """A new collection for the index whose alias is ``alias``: the alias and a fresh suffix, so that an
    index's collections can be found by name (a rebuild that died leaves one no snapshot names)."""
    return f"{alias}-{uuid.uuid4().hex[:8]}"


def day_number(date: str) -> int | None:
    """An ISO date as YYYYMMDD (Qdrant ranges are numeric); None for an undated document."""
    return int(date[:10].replace("-", "")) if date else None


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def connect(settings: Settings, index_dir: Path) -> Any:
    """The process's one client for the Qdrant the settings name: one per location, since Qdrant run in
    process (``:memory:`` or a path) is private to the client that opened it."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:  # the optional extra
        raise EngineUnavailableError("RAG_INDEX_ENGINE=qdrant needs qdrant-client: pip install -e '.[scale]'") from exc
    if settings.qdrant_url:
        key = f"url:{settings.qdrant_url}"
    elif settings.qdrant_path == ":memory:":
        key = ":memory:"
    else:
        key = f"path:{Path(settings.qdrant_path or index_dir / LOCAL_DIR).resolve()}"
    with _clients_lock:
        if key not in _clients:
            if settings.qdrant_url:
                client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None, timeout=60)
            elif key == ":memory:":
                client = QdrantClient(location=":memory:")
            else:
                path = Path(key.removeprefix("path:"))
                path.mkdir(parents=True, exist_ok=True)
                try:
                    client = QdrantClient(path=str(path))
                except RuntimeError as exc:  # another process holds the folder
                    raise EngineUnavailableError(
                        f"Qdrant at {path} is open in another process; run a Qdrant server "
                        f"(RAG_QDRANT_URL) to share one index between processes: {exc}"
                    ) from exc
            _clients[key] = client
        return _clients[key]


def forget_clients() -> None:
    """Close every client (tests that reopen a Qdrant folder in a new process state)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# Closed before the interpreter tears modules down: left to QdrantClient.__del__, closing a local-mode
# client printed a traceback at the end of every command.
atexit.register(forget_clients)


class QdrantCollection:
    """The points of one index in one Qdrant collection."""

    def __init__(self, client: Any, name: str, ef_search: int = 512) -> None:
        from qdrant_client import models

        self.client = client
        self.name = name
        self.ef_search = ef_search
        self.models = models
        self._widths: dict[str, int | None] = {}

    # --- schema ------------------------------------------------------------------------------

    def create(self, dim: int, token_dim: int) -> None:
        """The collection and its payload indexes, unless it exists."""
        m = self.models
        if self.client.collection_exists(self.name):
            return
        tokens = m.VectorParams(
            size=token_dim,
            distance=m.Distance.DOT,
            datatype=m.Datatype.FLOAT16,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=0),  # reranking only: no graph to build or keep
        )
        self.client.create_collection(
            self.name,
            # a point without a head's vectors simply has none in the adapted slots
            vectors_config={
                DENSE: m.VectorParams(size=dim, distance=m.Distance.DOT),
                TOKENS: tokens,
                **dict.fromkeys(ADAPTED_SLOTS, tokens),
            },
            # no IDF modifier: the query brings idf
            sparse_vectors_config={name: m.SparseVectorParams() for name in BM25_SLOTS},
        )
        for field, schema in (
            ("added_gen", m.PayloadSchemaType.INTEGER),
            ("deleted_gen", m.PayloadSchemaType.INTEGER),
            ("collection", m.PayloadSchemaType.KEYWORD),
            ("source", m.PayloadSchemaType.KEYWORD),
            ("day", m.PayloadSchemaType.INTEGER),
        ):
            self.client.create_payload_index(self.name, field, schema, wait=True)

    def token_width(self, name: str = ADAPTED_SLOTS[0]) -> int | None:
        """The width of multivector ``name`` in this collection; None where the collection has no such
        vector (a collection created before adapted heads were kept in Qdrant)."""
        if name not in self._widths:  # fixed when the collection is made: asked once
            vectors = self.client.get_collection(self.name).config.params.vectors
            found = vectors.get(name) if isinstance(vectors, dict) else None
            self._widths[name] = int(found.size) if found is not None else None
        return self._widths[name]

    # --- writing -----------------------------------------------------------------------------

    def upsert(self, points: Iterable[Any]) -> None:
        """Upsert ``points`` in batches, each acknowledged once applied (``wait=True``)."""
        for batch in _batches(list(points), UPSERT_BATCH):
            self.client.upsert(self.name, points=batch, wait=True)

    def point(
        self,
        chunk_id: str,
        payload: dict[str, Any],
        dense: np.ndarray,
        tokens: np.ndarray,
        bm25: tuple[np.ndarray, np.ndarray],
        bm25_slot: int,
        generation: int,
        adapted: tuple[np.ndarray, int] | None = None,
    ) -> Any:
        """A new point of ``generation`` with its BM25 weights in ``bm25_slot`` and, where the index has
        a head, its projected token vectors in adapted slot ``adapted[1]``; token vectors go as float16
        values, as they are stored."""
        m = self.models
        terms, weights = bm25
        vector: dict[str, Any] = {
            DENSE: np.asarray(dense, np.float32).tolist(),
            TOKENS: _stored(tokens),
            BM25_SLOTS[bm25_slot]: m.SparseVector(
                indices=np.asarray(terms).tolist(), values=np.asarray(weights).tolist()
            ),
        }
        if adapted is not None:
            vector[ADAPTED_SLOTS[adapted[1]]] = _stored(padded(adapted[0], np.asarray(tokens).shape[1]))
        return m.PointStruct(
            id=point_id(chunk_id),
            vector=vector,
            # n_tokens: what a delete takes off the manifest's count of token vectors
            payload={**payload, "chunk_id": chunk_id, "added_gen": generation, "n_tokens": len(tokens)},
        )

    def set_bm25(
        self, chunk_ids: Sequence[str], weights: Sequence[tuple[np.ndarray, np.ndarray]], bm25_slot: int
    ) -> None:
        """Write existing points' BM25 weights into ``bm25_slot`` (a new mean passage length; never the
        slot the live generation reads)."""
        m = self.models
        for batch in _batches(list(zip(chunk_ids, weights, strict=True)), 512):
            self.client.update_vectors(
                self.name,
                points=[
                    m.PointVectors(
                        id=point_id(cid),
                        vector={BM25_SLOTS[bm25_slot]: m.SparseVector(indices=t.tolist(), values=w.tolist())},
                    )
                    for cid, (t, w) in batch
                ],
                wait=True,
            )

    def set_adapted(self, chunk_ids: Sequence[str], projected: Sequence[np.ndarray], slot: int) -> None:
        """Write existing points' projected token vectors into adapted slot ``slot`` (a new head; never
        the slot the live generation reads)."""
        m = self.models
        width = self.token_width(ADAPTED_SLOTS[slot])
        if width is None:
            raise IndexCorruptError(f"Qdrant collection {self.name} has no {ADAPTED_SLOTS[slot]} vector")
        for batch in _batches(list(zip(chunk_ids, projected, strict=True)), UPSERT_BATCH):
            self.client.update_vectors(
                self.name,
                points=[
                    m.PointVectors(id=point_id(cid), vector={ADAPTED_SLOTS[slot]: _stored(padded(v, width))})
                    for cid, v in batch
                ],
                wait=True,
            )

    def token_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The raw (n, dim) token vectors of the points of ``chunk_ids``, as stored (float16 values)."""
        out: dict[str, np.ndarray] = {}
        for batch in _batches(list(chunk_ids), UPSERT_BATCH):
            found = self.client.retrieve(
                self.name, ids=[point_id(c) for c in batch], with_payload=["chunk_id"], with_vectors=[TOKENS]
            )
            for point in found:
                out[str((point.payload or {})["chunk_id"])] = np.asarray((point.vector or {})[TOKENS], np.float32)
        return out

    def mark_deleted(self, chunk_ids: Sequence[str], generation: int) -> None:
        """The points stop being live from ``generation`` on (readers of older ones still see them)."""
        for batch in _batches(list(chunk_ids), 1024):
            self.client.set_payload(
                self.name, payload={"deleted_gen": generation}, points=[point_id(c) for c in batch], wait=True
            )

    def roll_back(self, live: int) -> int:
        """Undo what a writer that died before committing ``live + 1`` (or later) left: its new points go,
        its deletions are forgotten. Returns how many points it touched."""
        m = self.models
        newer = self._count(m.Filter(must=[_range(m, "added_gen", gt=live)]))
        unmarked = self._count(m.Filter(must=[_range(m, "deleted_gen", gt=live)]))
        if newer:
            self.client.delete(
                self.name,
                points_selector=m.FilterSelector(filter=m.Filter(must=[_range(m, "added_gen", gt=live)])),
                wait=True,
            )
        if unmarked:
            self.client.delete_payload(
                self.name,
                keys=["deleted_gen"],
                points=m.FilterSelector(filter=m.Filter(must=[_range(m, "deleted_gen", gt=live)])),
                wait=True,
            )
        return newer + unmarked

    def purge(self, up_to_generation: int) -> None:
        """Physically delete points no reader of a generation after ``up_to_generation`` can see."""
        m = self.models
        self.client.delete(
            self.name,
            points_selector=m.FilterSelector(filter=m.Filter(must=[_range(m, "deleted_gen", lte=up_to_generation)])),
            wait=True,
        )

    def token_count(self, chunk_ids: Sequence[str]) -> int:
        """How many token vectors the points of ``chunk_ids`` hold (points written before ``n_tokens``
        was in the payload are counted from their vectors); ids without a point count 0."""
        total = 0
        for batch in _batches([point_id(c) for c in chunk_ids], 256):
            found = self.client.retrieve(self.name, ids=batch, with_payload=["n_tokens"], with_vectors=False)
            older = [p.id for p in found if not p.payload or "n_tokens" not in p.payload]
            total += sum(int(p.payload["n_tokens"]) for p in found if p.payload and "n_tokens" in p.payload)
            if older:
                for point in self.client.retrieve(self.name, ids=older, with_payload=False, with_vectors=[TOKENS]):
                    total += len((point.vector or {}).get(TOKENS) or [])
        return total

    def count_live(self, generation: int) -> int:
        return self._count(self.live_filter(generation))

    def _count(self, query_filter: Any) -> int:
        return int(self.client.count(self.name, count_filter=query_filter, exact=True).count)

    # --- the alias: the index's stable name -----------------------------------------------------

    def point_alias(self, alias: str) -> None:
        """Make ``alias`` name this collection, in one request (Qdrant applies an alias change
        atomically: a client of the alias sees the old collection or this one, never neither)."""
        m = self.models
        current = {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}
        if current.get(alias) == self.name:
            return
        operations = [m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias))] if alias in current else []
        operations.append(
            m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=self.name, alias_name=alias))
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def collections_named(self, prefix: str) -> list[str]:
        """Every collection whose name starts with ``prefix`` (one index's collections: see
        :func:`collection_name`)."""
        return sorted(c.name for c in self.client.get_collections().collections if c.name.startswith(prefix))

    def drop(self, name: str | None = None) -> None:
        """Delete collection ``name`` (default: this one) with its points, if it exists."""
        if self.client.collection_exists(name or self.name):
            self.client.delete_collection(name or self.name)

    # --- reading -----------------------------------------------------------------------------

    def live_filter(self, generation: int, filters: Filters | None = None) -> Any:
        """Points live in ``generation`` that match ``filters`` (the same rules as rag.filters)."""
        m = self.models
        must = [_range(m, "added_gen", lte=generation)]
        if filters is not None and not filters.empty:
            if filters.collection is not None:
                must.append(m.FieldCondition(key="collection", match=m.MatchValue(value=filters.collection)))
            if filters.sources:
                must.append(m.FieldCondition(key="source", match=m.MatchAny(any=list(filters.sources))))
            if filters.date_from is not None or filters.date_to is not None:
                low = day_number(filters.date_from) if filters.date_from else None
                high = day_number(filters.date_to) if filters.date_to else None
                must.append(_range(m, "day", gte=low, lte=high))  # an undated point has no day: no match
        return m.Filter(must=must, must_not=[_range(m, "deleted_gen", lte=generation)])

    def dense_batch(self, queries: np.ndarray, n: int, scope: Any) -> list[list[tuple[str, float]]]:
        """Top ``n`` (chunk id, score) by inner product for each query, in one request."""
        m = self.models
        requests = [
            m.QueryRequest(
                query=np.asarray(q, np.float32).tolist(),
                using=DENSE,
                filter=scope,
                limit=n,
                with_payload=["chunk_id"],
                params=m.SearchParams(hnsw_ef=max(self.ef_search, n)),
            )
            for q in queries
        ]
        return [_found(r.points) for r in self.client.query_batch_points(self.name, requests=requests)]

    def bm25(
        self, terms: np.ndarray, idf_weights: np.ndarray, n: int, scope: Any, bm25_slot: int
    ) -> list[tuple[str, float]]:
        """Top ``n`` (chunk id, BM25) for the query's term ids and their ``count * idf`` weights, scored
        against the weights in ``bm25_slot``."""
        if len(terms) == 0:
            return []
        m = self.models
        found = self.client.query_points(
            self.name,
            query=m.SparseVector(indices=np.asarray(terms).tolist(), values=np.asarray(idf_weights).tolist()),
            using=BM25_SLOTS[bm25_slot],
            query_filter=scope,
            limit=n,
            with_payload=["chunk_id"],
        )
        return _found(found.points)

    def maxsim(self, query_tokens: np.ndarray, chunk_ids: Sequence[str], using: str = TOKENS) -> dict[str, float]:
        """MaxSim of the (n_q, dim) query tokens against each of ``chunk_ids``' multivector ``using``
        (the raw tokens, or an adapted slot: the query is padded to its width)."""
        if not chunk_ids:
            return {}
        m = self.models
        query = np.asarray(query_tokens, np.float32)
        if using != TOKENS:
            query = padded(query, self.token_width(using) or query.shape[1])
        found = self.client.query_points(
            self.name,
            query=query.tolist(),
            using=using,
            query_filter=m.Filter(must=[m.HasIdCondition(has_id=[point_id(c) for c in chunk_ids])]),
            limit=len(chunk_ids),
            with_payload=["chunk_id"],
            search_params=m.SearchParams(exact=True),
        )
        return dict(_found(found.points))


def padded(vectors: np.ndarray, width: int) -> np.ndarray:
    """(n, d) vectors widened to (n, width) with zeros: inner products between padded vectors are the
    unpadded ones, so a head narrower than the collection's slot scores exactly."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape[1] > width:
        raise ValueError(f"{vectors.shape[1]}-d vectors do not fit a {width}-d slot")
    if vectors.shape[1] == width:
        return vectors
    return np.pad(vectors, ((0, 0), (0, width - vectors.shape[1])))


def _stored(tokens: np.ndarray) -> list[list[float]]:
    """Token vectors as the float16 values Qdrant keeps (sent as floats)."""
    return np.asarray(tokens, np.float16).astype(np.float32).tolist()


def _found(points: Sequence[Any]) -> list[tuple[str, float]]:
    out = []
    for p in points:
        if not p.payload or "chunk_id" not in p.payload:
            raise IndexCorruptError(f"Qdrant point {p.id} has no chunk_id in its payload")
        out.append((str(p.payload["chunk_id"]), float(p.score)))
    return out


def _range(m: Any, key: str, **bounds: int | None) -> Any:
    return m.FieldCondition(key=key, range=m.Range(**bounds))


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
