"""The server's own settings: the library's (:class:`rag.settings.Settings`) plus ``rag serve``'s,
read from the same ``RAG_*`` environment variables or ``.env`` file."""

from __future__ import annotations

from pydantic import Field

from rag.settings import Settings


class ApiSettings(Settings):
    """What the library needs, and what only the HTTP service does."""

    # Keys: comma-separated ``KEY`` or ``KEY:collection|collection`` (limited to those collections), with
    # an optional role ``:read``, ``:write`` (the default) or ``:admin``; the keys file holds one
    # ``KEY [role] [collection ...]`` per line, ``#`` comments.
    api_keys: str = ""
    api_keys_file: str = ""
    api_require_key_for_queries: bool = False  # writes always need a key
    api_max_upload_bytes: int = 50 * 1024 * 1024  # any request body larger is refused with 413
    api_rate_limit_per_s: float = 50.0  # per key (or per client address without one); 0 turns it off
    api_rate_burst: int = 100
    api_request_timeout_s: float = 120.0  # a query that takes longer answers 504
    # Retrieval batches computing at once, each on a thread of its own; the rest wait their turn. Two keep both
    # of two cores busy while one batch holds the GIL; `rag serve` gives each cores ÷ (workers × this) encoder
    # threads (bench/load_open.py, docs/benchmarks.md stop 53).
    api_retrieval_concurrency: int = Field(default=2, ge=1)
    # Questions that arrive together are retrieved as one batch (rag/batching.py): at most this many, and
    # the first waits at most this long for the others (never while requests come one at a time).
    api_batch_max_size: int = Field(default=16, ge=1)
    api_batch_max_wait_ms: float = Field(default=2.0, ge=0)
    api_max_document_bytes: int = 1 << 20  # one document's text; larger answers 413 (split it): bounds a job's time
    api_auth_failure_burst: int = 10  # wrong keys from one address before 429 ...
    api_auth_failure_per_s: float = 0.1  # ... and how fast that allowance comes back
    # Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated;
    # "*" for any). Empty: none, so no client can pick the address its rate limit counts by.
    api_trusted_proxies: str = ""
    api_cors_origins: str = ""  # comma-separated origins allowed to call the API from a browser; empty: none
