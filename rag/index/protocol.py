"""The one shape of an index kind (dense, BM25, multi-vector): rows in, best rows out, files on disk.

Row ``i`` is row ``i`` in every kind of a snapshot. ``add`` and ``delete`` return a new index (the
old one stays valid for readers); ``search`` answers a query's best rows among the allowed ones —
a row mask for dense and BM25 (None: every row), the candidate rows themselves for late interaction,
which reranks a candidate set and has no search over a whole index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self, TypeVar

import numpy as np

Items = TypeVar("Items", contravariant=True)  # what add takes: vectors, token lists, token-vector arrays
Query = TypeVar("Query", contravariant=True)  # a dense vector, BM25 terms, query token vectors
Allowed = TypeVar("Allowed", contravariant=True)  # np.ndarray | None (a bool mask) or np.ndarray (candidates)
Params = TypeVar("Params", contravariant=True)  # the kind's build-time parameters, as the manifest records them


class IndexKind(Protocol[Items, Query, Allowed, Params]):
    def __len__(self) -> int: ...

    def add(self, items: Items, /) -> Self:
        """A new index with one more row per item, after the existing rows."""
        ...

    def delete(self, rows: np.ndarray, /) -> Self:
        """A new index without ``rows``; later rows move up, in order."""
        ...

    def search(self, query: Query, n: int, allowed: Allowed, /) -> tuple[np.ndarray, np.ndarray]:
        """The top ``n`` (rows, scores) among the allowed rows, best first (ties by row, or by candidate order)."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, params: Params, /) -> Self: ...
