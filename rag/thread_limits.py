"""A BLAS thread limit held while any retrieval runs, and lifted when the last one leaves.

threadpoolctl's limits are process-wide, and each limit restores, on leaving, what it found on entering.
Two retrievals that overlap (a server computes several batches at once) would undo each other's: the
first to leave lifts the limit while the other still runs, and the last to leave puts back the limit it
found, for good. Here the first to enter sets it and the last to leave lifts it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class Limit(Protocol):
    """What threadpoolctl's ``ThreadpoolController.limit`` returns."""

    def restore_original_limits(self) -> None: ...


class SharedLimit:
    """One limit, entered by many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limit: Limit | None = None

    @contextmanager
    def hold(self, apply: Callable[[], Limit]) -> Iterator[None]:
        """Inside, the limit ``apply`` sets (called by the first holder only: later holders share its limit)."""
        with self._lock:
            if self._holders == 0:
                self._limit = apply()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._limit is not None:
                    self._limit.restore_original_limits()
                    self._limit = None


# Process-wide, as the thread pools it limits are.
QUERY_BLAS_LIMIT = SharedLimit()
