"""Dynamic batching across callers: concurrent requests wait a moment and run as one batch.

What Ray Serve's ``@serve.batch`` and Triton's dynamic batcher do, on ``concurrency`` worker threads:
each caller submits an item and gets a future; a free worker takes the first waiting item, then
whatever else is waiting, up to ``max_size``. It waits up to ``max_wait_s`` for more only while
requests are arriving together (the last batch held more than one), so a lone request on a quiet
server pays no wait. Under load the batch fills by itself: requests queue while the batches compute.
Several workers keep several batches computing at once, which pays where the batch function releases
the GIL for much of its time (model runtimes, array kernels).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

# The batch function's answer per item: its result, or the exception that item alone raises.
BatchFunction = Callable[[Sequence[In]], Sequence[Out | BaseException]]


class BatcherClosedError(RuntimeError):
    """The batcher was closed before the item ran."""


class MicroBatcher(Generic[In, Out]):
    """Runs ``function`` over batches of submitted items on ``concurrency`` threads of its own."""

    def __init__(
        self,
        function: BatchFunction[In, Out],
        max_size: int = 16,
        max_wait_s: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        """``on_batch(size)`` hears of every batch run (metrics); ``concurrency`` batches run at once."""
        if max_size < 1:
            raise ValueError("a batch holds at least one item")
        if max_wait_s < 0:
            raise ValueError("the batch wait cannot be negative")
        if concurrency < 1:
            raise ValueError("a batcher runs at least one batch at a time")
        self.function = function
        self.on_batch = on_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue[tuple[In, Future[Out]] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._last_size = 0
        self.batches = 0  # counters, for the metrics and the tests
        self.items = 0
        self._count_lock = threading.Lock()  # the workers count together
        self._threads = [
            threading.Thread(target=self._run, name=f"micro-batcher-{i}", daemon=True) for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: In) -> Future[Out]:
        future: Future[Out] = Future()
        if self._closed.is_set():
            future.set_exception(BatcherClosedError("the batcher is closed"))
            return future
        self._queue.put((item, future))
        return future

    def __call__(self, item: In) -> Out:
        """Submit and wait: the item's result, or its exception raised here."""
        return self.submit(item).result()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the batches already taken; items still waiting fail with :class:`BatcherClosedError`."""
        self._closed.set()
        for _ in self._threads:  # one stop mark per worker
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not None:
                entry[1].set_exception(BatcherClosedError("the batcher closed before this item ran"))

    def _take(self) -> list[tuple[In, Future[Out]]] | None:
        """The next batch: the first waiting item and what follows it (None: closed)."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        together = self._last_size > 1  # requests are arriving together: worth a short wait for more
        deadline = time.perf_counter() + (self.max_wait_s if together else 0.0)
        while len(batch) < self.max_size:
            left = deadline - time.perf_counter()
            try:
                entry = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                self._queue.put(None)  # close() is waiting: run this batch, then stop
                break
            batch.append(entry)
        return batch

    def _run(self) -> None:
        while not self._closed.is_set():
            batch = self._take()
            if batch is None:
                return
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            self._last_size = len(batch)
            if not live:
                continue
            with self._count_lock:
                self.batches += 1
                self.items += len(live)
            if self.on_batch is not None:
                self.on_batch(len(live))
            try:
                results = self.function([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"the batch function answered {len(results)} of {len(live)} items")
            except BaseException as exc:  # the whole batch failed: every item hears why
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
