"""The OpenAI chat-completions wire format, as much of it as a RAG service can honour.

Requests accept the fields OpenAI clients send and ignore the sampling ones (the service keeps its own
prompt and settings); what it cannot honour (``n`` > 1, images, tools) is refused with a clear 400.
Responses add ``citations`` and ``rag`` beside OpenAI's fields; clients that do not know them skip them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import CitationOut, FiltersIn, HitOut
from rag.objects import AnswerStatus
from rag.settings import MAX_QUESTION_CHARS

MODEL_PREFIX = "rag"  # "rag": every collection the caller may search; "rag:<collection>": that one


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ...: read and ignored
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; a part that is not text (an image, audio) cannot be read here."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content parts of type {part.type!r} are not supported: send text")
            texts.append(part.text)
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    """OpenAI's request body; extra keys (temperature, top_p, user, seed, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200, description='"rag" or "rag:<collection>" (GET /v1/models).')
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="One answer per request.")
    # Extensions, sent with the openai SDK's extra_body:
    top_k: int | None = Field(None, ge=1, le=50, description="Hits the answer reads (default: the server's).")
    filters: FiltersIn | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[ChatMessageIn]) -> list[ChatMessageIn]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's question")
        question = messages[-1].text().strip()
        if not question:
            raise ValueError("the last user message is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"the question has {len(question):,} characters; at most {MAX_QUESTION_CHARS:,}")
        return messages

    @property
    def question(self) -> str:
        return self.messages[-1].text().strip()


class AssistantMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    index: int = 0
    message: AssistantMessageOut
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class UsageOpenAIOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagExtraOut(BaseModel):
    """What only this service adds: how the answer stands, and what it came from."""

    status: AnswerStatus
    generation: int = Field(description="The index snapshot the answer comes from.")
    final_stage: str
    hits: list[HitOut] = Field(description="The hits the answer read, each explaining its rank.")


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOpenAIOut
    citations: list[CitationOut] = Field(description="What the answer's [n] markers cite (an extension).")
    rag: RagExtraOut


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag-late"


class ModelsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorDetail


def chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    finish = extra.pop("finish_reason", None)
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
