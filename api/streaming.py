"""Answer streams over HTTP: a thread advances the pipeline's events, a dialect renders each as text.

``/query`` speaks its own SSE events, ``/v1/chat/completions`` OpenAI's chunks; both share how the
stream is run, closed when the client goes away, and timed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AppState
from api.errors import REQUEST_ID, ApiError, from_rag_error
from rag.errors import RagError
from rag.objects import Answer, AnswerEvent, Retrieval, RetrievalEvent, StreamEvent, TokenEvent

log = logging.getLogger("rag.api")


def observe(app: AppState, timings: dict[str, float]) -> None:
    """Each stage's milliseconds into the metrics."""
    for stage, ms in timings.items():
        app.metrics.stage_ms.labels(stage).observe(ms)


class Dialect(Protocol):
    """How one protocol writes the events of an answer (None: nothing to send for it)."""

    def retrieval(self, retrieval: Retrieval) -> str | None: ...

    def token(self, text: str) -> str | None: ...

    def answer(self, answer: Answer) -> str | None: ...

    def error(self, error: ApiError, request_id: str) -> str | None: ...

    def end(self) -> str | None: ...


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends however it ends: a client that went away shows up as a
    cancelled task or a failed send, and either leaves the body generator suspended until GC."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


class Pump:
    """Runs a stream of events in a thread of its own and hands each out as a message of ``dialect``.

    The thread that advances the stream is the only one that touches it, so it can also close it:
    when the client goes away, the stream is closed at its next event, and closing it stops the
    generation (rag.generate.worker) instead of leaving a model busy for nobody."""

    def __init__(self, app: AppState, first: StreamEvent, events: Iterator[StreamEvent], dialect: Dialect) -> None:
        self.app, self.events, self.dialect = app, events, dialect
        self.request_id = REQUEST_ID.get()  # the pump's thread does not inherit the request's context
        self.messages: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.gone = threading.Event()
        if isinstance(first, RetrievalEvent):
            self._put(dialect.retrieval(first.retrieval))
        threading.Thread(target=self._run, daemon=True, name="sse-pump").start()

    def _put(self, message: str | None) -> None:
        if message is not None:
            self.messages.put(message)

    def _run(self) -> None:
        REQUEST_ID.set(self.request_id)  # this thread's log lines name the request too
        try:
            for event in self.events:
                if self.gone.is_set():
                    break
                if isinstance(event, TokenEvent):
                    self._put(self.dialect.token(event.text))
                elif isinstance(event, AnswerEvent):
                    observe(self.app, event.answer.timings_ms)
                    self._put(self.dialect.answer(event.answer))
            self._put(self.dialect.end())
        except RagError as exc:
            self._put(self.dialect.error(from_rag_error(exc), self.request_id))
        except Exception as exc:
            log.exception("a streamed answer failed")
            error = ApiError(500, "internal", f"internal error: {exc.__class__.__name__}")
            self._put(self.dialect.error(error, self.request_id))
        finally:
            close = getattr(self.events, "close", None)
            if close is not None:
                close()
            self.messages.put(None)

    async def stream(self) -> AsyncIterator[str]:
        finished = False
        try:
            while True:
                message = await run_in_threadpool(self._next)
                if message is None:
                    finished = True
                    return
                yield message
        finally:
            if not finished:  # the client went away (the response was cancelled) before the end
                self.gone.set()
                self.app.metrics.disconnects.inc()

    def _next(self) -> str | None:
        # a bounded wait, so a worker thread is never parked forever on a stream nobody reads
        while True:
            try:
                return self.messages.get(timeout=1.0)
            except queue.Empty:
                if self.gone.is_set():
                    return None


def event_stream(pump: Pump) -> ClosingStreamingResponse:
    """The pump's messages as ``text/event-stream``, unbuffered by proxies."""
    return ClosingStreamingResponse(
        pump.stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
