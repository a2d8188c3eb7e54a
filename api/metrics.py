"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_http_request_seconds",
            "Time to answer (to the first byte of a stream)",
            ["route"],
            registry=self.registry,
        )
        self.stage_ms = Histogram(
            "rag_query_stage_ms",
            "Query time per stage in ms",
            ["stage"],
            buckets=STAGE_BUCKETS_MS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "rag_retrieval_batch_size",
            "Questions retrieved together in one batch (rag/batching.py)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.jobs = Counter("rag_jobs", "Index jobs finished", ["kind", "status"], registry=self.registry)
        self.disconnects = Counter(
            "rag_stream_disconnects", "Streamed answers whose client went away before the end", registry=self.registry
        )
        self.generation = Gauge("rag_index_generation", "Generation of the served snapshot", registry=self.registry)
        self.chunks = Gauge("rag_index_chunks", "Chunks in the served snapshot", registry=self.registry)
