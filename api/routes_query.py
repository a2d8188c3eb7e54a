"""``POST /query``: JSON, or Server-Sent Events when ``stream`` is true."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AppState, Caller, reader, state
from api.errors import REQUEST_ID, ApiError, from_rag_error
from api.schemas import ErrorOut, QueryIn, QueryOut, query_out, retrieval_out
from rag.errors import RagError
from rag.objects import Answer, AnswerEvent, Filters, RetrievalEvent, StreamEvent, TokenEvent
from rag.pipeline import Pipeline

log = logging.getLogger("rag.api")
router = APIRouter(tags=["query"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 413, 422, 429, 502, 503, 504)
}
SSE_DOC = (
    "With `stream` true the answer is `text/event-stream`: one `retrieval` event (hits, timings), "
    '`token` events (`{"text": ...}`) as the generator writes, then `answer` (the whole QueryOut). '
    'A failure after the stream began arrives as an `error` event (`{"error", "message", "status"}`).'
)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _filters(body: QueryIn, collection: str | None) -> Filters:
    f = body.filters
    return Filters(
        collection=collection,
        sources=tuple(f.sources) if f else (),
        date_from=f.date_from if f else None,
        date_to=f.date_to if f else None,
    )


def _observe(app: AppState, timings: dict[str, float]) -> None:
    for stage, ms in timings.items():
        app.metrics.stage_ms.labels(stage).observe(ms)


@router.post(
    "/query",
    response_model=QueryOut,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    description=SSE_DOC,
)
async def query(body: QueryIn, caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    if body.generate and (body.generator or app.settings.generator) == "remote" and not app.settings.remote_url:
        message = "this server has no remote generator (RAG_REMOTE_URL is not set)"
        if body.generator == "remote":  # the client asked for it: its request cannot be served here
            raise ApiError(400, "invalid_input", message)
        raise ApiError(503, "generator_unavailable", message)
    collection = caller.default_collection(body.collection)
    if collection is not None and collection not in app.service.store.collections():
        raise ApiError(404, "not_found", f"no collection {collection!r}")
    filters = _filters(body, collection)
    pipeline = app.service.pipeline()
    generation = pipeline.snapshot.generation
    if body.stream:
        events = pipeline.stream(body.question, body.top_k, filters, body.generate, body.generator)
        # Retrieval runs before the response starts, so bad input still answers 4xx, not a broken stream.
        first: StreamEvent = await run_in_threadpool(next, events)
        return _ClosingStreamingResponse(
            _Pump(app, first, events, generation).stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        answer = await asyncio.wait_for(
            run_in_threadpool(_answer, pipeline, body, filters), timeout=app.settings.api_request_timeout_s
        )
    except TimeoutError as exc:
        raise ApiError(504, "timeout", f"the query took longer than {app.settings.api_request_timeout_s:g} s") from exc
    _observe(app, answer.timings_ms)
    return query_out(answer, generation)


def _answer(pipeline: Pipeline, body: QueryIn, filters: Filters) -> Answer:
    return pipeline.answer(body.question, body.top_k, filters, body.generate, body.generator)


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends however it ends: a client that went away shows up as a
    cancelled task or a failed send, and either leaves the body generator suspended until GC."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


class _Pump:
    """Runs a stream of events in a thread of its own and hands each out as an SSE message.

    The thread that advances the stream is the only one that touches it, so it can also close it:
    when the client goes away, the stream is closed at its next event, and closing it stops the
    generation (rag.generate.worker) instead of leaving a model busy for nobody."""

    def __init__(self, app: AppState, first: StreamEvent, events: Iterator[StreamEvent], generation: int) -> None:
        self.app, self.events, self.generation = app, events, generation
        self.request_id = REQUEST_ID.get()  # the pump's thread does not inherit the request's context
        self.messages: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.gone = threading.Event()
        if isinstance(first, RetrievalEvent):
            self.messages.put(sse("retrieval", retrieval_out(first.retrieval, generation).model_dump()))
        threading.Thread(target=self._run, daemon=True, name="sse-pump").start()

    def _run(self) -> None:
        REQUEST_ID.set(self.request_id)  # this thread's log lines name the request too
        try:
            for event in self.events:
                if self.gone.is_set():
                    break
                if isinstance(event, TokenEvent):
                    self.messages.put(sse("token", {"text": event.text}))
                elif isinstance(event, AnswerEvent):
                    _observe(self.app, event.answer.timings_ms)
                    self.messages.put(sse("answer", query_out(event.answer, self.generation).model_dump()))
        except RagError as exc:
            error = from_rag_error(exc)
            self.messages.put(sse("error", {**error.body(self.request_id), "status": error.status}))
        except Exception as exc:
            log.exception("a streamed answer failed")
            error = ApiError(500, "internal", f"internal error: {exc.__class__.__name__}")
            self.messages.put(sse("error", {**error.body(self.request_id), "status": 500}))
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
