"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (JSON or streamed chunks) and ``GET /v1/models``.

The last user message is the question. Earlier turns are not used: retrieval and the answer read only the
question (no conversation data set here could show that rewriting follow-ups helps, so none is done), and
the system prompt is the service's own. Keys, rate limits and errors are ``/query``'s; errors come in
OpenAI's shape (:func:`api.errors.openai_body`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends

from api.deps import AppState, Caller, reader, state
from api.errors import ApiError, openai_body
from api.routes_query import answer_within_limit, check_generator, filters_of, searched_collection, start_stream
from api.schemas import CitationOut, HitOut
from api.schemas_openai import (
    MODEL_PREFIX,
    AssistantMessageOut,
    ChatCompletionIn,
    ChatCompletionOut,
    ChoiceOut,
    ModelOut,
    ModelsOut,
    OpenAIErrorOut,
    RagExtraOut,
    UsageOpenAIOut,
    chunk,
)
from api.streaming import Pump, event_stream
from rag.objects import Answer, Retrieval

router = APIRouter(prefix="/v1", tags=["openai"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorOut} for code in (400, 401, 403, 404, 413, 429, 502, 503, 504)
}
STARTED = int(time.time())


def collection_of_model(model: str) -> str | None:
    """``rag`` → None (every collection the caller may search), ``rag:<name>`` → that collection."""
    if model == MODEL_PREFIX:
        return None
    prefix = MODEL_PREFIX + ":"
    if model.startswith(prefix) and len(model) > len(prefix):
        return model[len(prefix) :]
    raise ApiError(404, "model_not_found", f'no model {model!r}: use "rag" or "rag:<collection>" (GET /v1/models)')


@router.get("/models", response_model=ModelsOut, responses=ERRORS)
def models(caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    """One model per collection the caller may search (``rag:<collection>``), and ``rag`` for all of them
    where the caller's key is not limited to several."""
    names = [c for c in app.service.store.collections() if caller.key is None or caller.key.may_use(c)]
    ids = [f"{MODEL_PREFIX}:{name}" for name in names]
    limited = caller.key is not None and caller.key.collections is not None and len(caller.key.collections) > 1
    if not limited:
        ids.insert(0, MODEL_PREFIX)
    return ModelsOut(data=[ModelOut(id=i, created=STARTED) for i in ids])


@router.post(
    "/chat/completions",
    response_model=ChatCompletionOut,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    description="The last user message is the question; the answer cites its evidence as [n], and "
    "`citations` lists what each number is. With `stream` true: `chat.completion.chunk` events, "
    "the last one with `citations` and `rag`, then `data: [DONE]`.",
)
async def chat_completions(
    body: ChatCompletionIn, caller: Caller = Depends(reader), app: AppState = Depends(state)
) -> Any:
    check_generator(app, True, None)
    collection = searched_collection(app, caller, collection_of_model(body.model))
    filters = filters_of(body.filters, collection)
    pipeline = app.service.pipeline()
    generation = pipeline.snapshot.generation
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        first, events = await start_stream(app, pipeline, body.question, body.top_k, filters, True, None)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        dialect = _ChunkEvents(completion_id, created, body.model, generation, include_usage)
        return event_stream(Pump(app, first, events, dialect))
    answer = await answer_within_limit(app, pipeline, body.question, body.top_k, filters, True, None)
    return ChatCompletionOut(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[ChoiceOut(message=AssistantMessageOut(content=answer.answer))],
        usage=_usage(answer),
        citations=_citations(answer),
        rag=_extra(answer, generation),
    )


def _usage(answer: Answer) -> UsageOpenAIOut:
    return UsageOpenAIOut(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.answer_tokens,
        total_tokens=answer.prompt_tokens + answer.answer_tokens,
    )


def _citations(answer: Answer) -> list[CitationOut]:
    return [CitationOut.model_validate(c, from_attributes=True) for c in answer.citations]


def _extra(answer: Answer, generation: int) -> RagExtraOut:
    hits = [HitOut.model_validate(h, from_attributes=True) for h in answer.hits]
    return RagExtraOut(status=answer.status, generation=generation, final_stage=answer.final_stage, hits=hits)


def _data(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


class _ChunkEvents:
    """OpenAI's streaming dialect: a role chunk, one chunk per piece of the answer, a closing chunk with
    ``finish_reason``, ``citations`` and ``rag``, a usage chunk when asked, then ``[DONE]``."""

    def __init__(self, completion_id: str, created: int, model: str, generation: int, include_usage: bool) -> None:
        self.completion_id, self.created, self.model = completion_id, created, model
        self.generation, self.include_usage = generation, include_usage

    def _chunk(self, delta: dict[str, Any], **extra: Any) -> str:
        return _data(chunk(self.completion_id, self.created, self.model, delta, **extra))

    def retrieval(self, retrieval: Retrieval) -> str:
        return self._chunk({"role": "assistant", "content": ""})

    def token(self, text: str) -> str:
        return self._chunk({"content": text})

    def answer(self, answer: Answer) -> str:
        citations = [c.model_dump() for c in _citations(answer)]
        closing = self._chunk(
            {},
            finish_reason="stop",
            citations=citations,
            rag=_extra(answer, self.generation).model_dump(),
        )
        if not self.include_usage:
            return closing
        usage = {"choices": [], "usage": _usage(answer).model_dump()}  # OpenAI's usage chunk has no choices
        return closing + _data(chunk(self.completion_id, self.created, self.model, {}) | usage)

    def error(self, error: ApiError, request_id: str) -> str:
        return _data(openai_body(error))

    def end(self) -> str:
        return _data("[DONE]")
