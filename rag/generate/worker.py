"""Streaming from a model that runs one generation at a time, without holding its lock across a yield.

The generation runs in a thread of its own, under the model's lock, and hands its pieces over a queue.
The consumer holds nothing while it waits or yields: a client that stops reading (or a stream that is
closed) cannot keep the model from the next request. Closing the stream stops the generation at its
next piece; a stream that is merely abandoned runs to its token limit, then lets go.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


def stream_in_worker(lock: threading.Lock, produce: Callable[[threading.Event], Iterable[str]]) -> Iterator[str]:
    """The pieces of ``produce(stop)`` run in a worker thread under ``lock``; ``stop`` is set once the
    consumer closes this stream, and ``produce`` should end soon after (it is also cut at its next piece)."""
    pieces: queue.SimpleQueue[object] = queue.SimpleQueue()
    stop = threading.Event()

    def run() -> None:
        try:
            with lock:
                if stop.is_set():  # closed while it waited for the model
                    return
                produced = iter(produce(stop))
                try:
                    for piece in produced:
                        if stop.is_set():
                            break
                        pieces.put(piece)
                finally:
                    close = getattr(produced, "close", None)  # a generator: its own cleanup runs now
                    if close is not None:
                        close()
        except BaseException as exc:  # surfaced in the consumer's thread
            pieces.put(_Failed(exc))
        finally:
            pieces.put(_DONE)

    threading.Thread(target=run, daemon=True, name="generation").start()
    try:
        while True:
            item = pieces.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, str)
            yield item
    finally:
        stop.set()
