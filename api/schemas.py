"""Request and response bodies (pydantic), the API's published contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.objects import Citation, Evidence, Hit
from rag.pipeline import MAX_QUESTION_CHARS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(Strict):
    sources: list[str] = Field(default_factory=list, max_length=100, description="Keep only these sources.")
    date_from: str | None = Field(None, pattern=ISO_DATE_PATTERN, description="Inclusive, YYYY-MM-DD.")
    date_to: str | None = Field(None, pattern=ISO_DATE_PATTERN, description="Inclusive, YYYY-MM-DD.")


class QueryIn(Strict):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    top_k: int | None = Field(None, ge=1, le=50, description="Hits to return (default: the server's top_k).")
    collection: str | None = Field(None, pattern=NAME_PATTERN, description="Search only this collection.")
    filters: FiltersIn | None = None
    generate: bool = Field(True, description="false: retrieval only, no answer.")
    stream: bool = Field(False, description="true: answer as Server-Sent Events.")
    generator: Literal["local", "remote", "transformers"] | None = None


class QueryOut(BaseModel):
    question: str
    answer: str
    generator: str | None
    # The query path's own frozen dataclasses, published as they are (pydantic reads dataclasses).
    citations: list[Citation]
    hits: list[Hit]
    evidence: list[Evidence]
    timings: dict[str, float] = Field(description="Milliseconds per stage.")
    generation: int = Field(description="The index snapshot the answer comes from.")


class DocumentIn(Strict):
    id: str = Field(min_length=1, max_length=512)
    text: str = Field(min_length=1)
    title: str = ""
    source: str = ""
    url: str = ""
    date: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsIn(Strict):
    collection: str = Field("default", pattern=NAME_PATTERN)
    documents: list[DocumentIn] = Field(min_length=1)


class JobOut(BaseModel):
    id: str
    kind: str
    collection: str | None
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    documents: int
    passages_done: int
    passages_total: int
    attempts: int
    message: str
    result: dict[str, int] | None
    error: str | None


class ChunkOut(BaseModel):
    id: str
    ordinal: int
    text: str


class DocumentOut(BaseModel):
    id: str
    collection: str
    title: str
    source: str
    url: str
    date: str
    metadata: dict[str, Any]
    n_chunks: int
    chunks: list[ChunkOut]
    generation: int


class CollectionIn(Strict):
    name: str = Field(pattern=NAME_PATTERN)


class CollectionOut(BaseModel):
    name: str
    documents: int


class ErrorOut(BaseModel):
    error: str = Field(description="A stable code, e.g. invalid_input, unauthorized, rate_limited.")
    message: str


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    generation: int | None = None
    documents: int | None = None
    chunks: int | None = None
    jobs_pending: int | None = None
    message: str = ""
