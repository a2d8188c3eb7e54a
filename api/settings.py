"""The server's own settings: the library's (:class:`rag.settings.Settings`) plus ``rag serve``'s,
read from the same ``RAG_*`` environment variables or ``.env`` file."""

from __future__ import annotations

from rag.settings import Settings


class ApiSettings(Settings):
    """What the library needs, and what only the HTTP service does."""

    # Keys: comma-separated ``KEY`` or ``KEY:collection|collection`` (limited to
    # those collections); the keys file holds one ``KEY [collection ...]`` per line, ``#`` comments.
    api_keys: str = ""
    api_keys_file: str = ""
    api_require_key_for_queries: bool = False  # writes always need a key
    api_max_upload_bytes: int = 50 * 1024 * 1024  # any request body larger is refused with 413
    api_rate_limit_per_s: float = 50.0  # per key (or per client address without one); 0 turns it off
    api_rate_burst: int = 100
    api_request_timeout_s: float = 120.0  # a query that takes longer answers 504
    api_retrieval_concurrency: int = 1  # retrievals computing at once; the rest wait their turn (bench/api_load.py)
