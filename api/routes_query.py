"""``POST /query``: JSON, or Server-Sent Events when ``stream`` is true."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from api.deps import AppState, Caller, reader, state
from api.errors import ApiError
from api.schemas import ErrorOut, FiltersIn, QueryIn, QueryOut, query_out, retrieval_out
from api.streaming import Pump, event_stream, observe
from rag.objects import Answer, Filters, Retrieval, RetrievalEvent, RetrievalRequest, StreamEvent
from rag.pipeline import Pipeline, final_answer

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


def filters_of(f: FiltersIn | None, collection: str | None) -> Filters:
    """The library's filters from a request's."""
    return Filters(
        collection=collection,
        sources=tuple(f.sources) if f else (),
        date_from=f.date_from if f else None,
        date_to=f.date_to if f else None,
    )


@router.post(
    "/query",
    response_model=QueryOut,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    description=SSE_DOC,
)
async def query(body: QueryIn, caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    check_generator(app, body.generate, body.generator)
    filters = filters_of(body.filters, searched_collection(app, caller, body.collection))
    pipeline = app.service.pipeline()
    generation = pipeline.snapshot.generation
    if body.stream:
        first, events = await start_stream(
            app, pipeline, body.question, body.top_k, filters, body.generate, body.generator
        )
        return event_stream(Pump(app, first, events, _QueryEvents(generation)))
    answer = await answer_within_limit(app, pipeline, body.question, body.top_k, filters, body.generate, body.generator)
    return query_out(answer, generation)


def check_generator(app: AppState, generate: bool, generator: str | None) -> None:
    """A remote generator asked for (or configured) on a server that has none is refused up front."""
    if generate and (generator or app.settings.generator) == "remote" and not app.settings.remote_url:
        message = "this server has no remote generator (RAG_REMOTE_URL is not set)"
        if generator == "remote":  # the client asked for it: its request cannot be served here
            raise ApiError(400, "invalid_input", message)
        raise ApiError(503, "generator_unavailable", message)


def searched_collection(app: AppState, caller: Caller, collection: str | None) -> str | None:
    """The collection a question searches (None: every one), checked against the caller's key."""
    chosen = caller.default_collection(collection)
    if chosen is not None and chosen not in app.service.store.collections():
        raise ApiError(404, "not_found", f"no collection {chosen!r}")
    return chosen


async def retrieve_batched(app: AppState, pipeline: Pipeline, request: RetrievalRequest) -> Retrieval:
    """The retrieval, computed in one batch with the questions that arrive with it (rag/batching.py)."""
    return await asyncio.wrap_future(app.service.batcher.submit((pipeline, request)))


async def start_stream(
    app: AppState,
    pipeline: Pipeline,
    question: str,
    top_k: int | None,
    filters: Filters,
    generate: bool,
    generator: str | None,
) -> tuple[StreamEvent, Iterator[StreamEvent]]:
    """The answer's events, retrieval already done: bad input still answers 4xx, not a broken stream."""
    start = time.perf_counter()
    retrieval = await retrieve_batched(app, pipeline, RetrievalRequest(question, top_k, filters))
    return RetrievalEvent(retrieval), pipeline.stream_answer(retrieval, generate, generator, start)


async def answer_within_limit(
    app: AppState,
    pipeline: Pipeline,
    question: str,
    top_k: int | None,
    filters: Filters,
    generate: bool,
    generator: str | None,
) -> Answer:
    """The whole answer, or 504 past ``api_request_timeout_s``."""

    async def whole() -> Answer:
        start = time.perf_counter()
        retrieval = await retrieve_batched(app, pipeline, RetrievalRequest(question, top_k, filters))
        events = pipeline.stream_answer(retrieval, generate, generator, start)
        if not generate:  # the evidence alone: less work than a trip to the thread pool
            return final_answer(events)
        return await run_in_threadpool(final_answer, events)

    limit = app.settings.api_request_timeout_s
    try:
        answer = await asyncio.wait_for(whole(), timeout=limit)
    except TimeoutError as exc:
        raise ApiError(504, "timeout", f"the query took longer than {limit:g} s") from exc
    observe(app, answer.timings_ms)
    return answer


class _QueryEvents:
    """``/query``'s own SSE dialect: ``retrieval``, ``token``s, ``answer`` (or ``error``)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation

    def retrieval(self, retrieval: Retrieval) -> str:
        return sse("retrieval", retrieval_out(retrieval, self.generation).model_dump())

    def token(self, text: str) -> str:
        return sse("token", {"text": text})

    def answer(self, answer: Answer) -> str:
        return sse("answer", query_out(answer, self.generation).model_dump())

    def error(self, error: ApiError, request_id: str) -> str:
        return sse("error", {**error.body(request_id), "status": error.status})

    def end(self) -> str | None:
        return None
