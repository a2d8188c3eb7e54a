"""Request and response bodies (pydantic), the API's published contract."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from rag.objects import Answer, AnswerStatus, CitedHow, Retrieval
from rag.settings import MAX_QUESTION_CHARS

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


class DocumentFieldsOut(BaseModel):
    title: str
    source: str
    url: str
    date: str = Field(description="ISO 8601, or empty.")


class PassageFieldsOut(DocumentFieldsOut):
    page: int | None = Field(None, description="The page (from 1) the passage starts on; null: no pages.")


class HitOut(PassageFieldsOut):
    chunk_id: str
    doc_id: str
    text: str
    collection: str
    score: float = Field(description="The score on the final stage.")
    ranks: dict[str, int] = Field(description="Rank (from 1) on each stage that saw the hit, by stage name.")
    scores: dict[str, float] = Field(description="Score on each stage that saw the hit, by stage name.")
    rrf_contributions: dict[str, float] = Field(description="Each path's share of the hit's RRF score.")


class EvidenceOut(PassageFieldsOut):
    number: int = Field(description="What the answer cites, as [number].")
    chunk_id: str
    doc_id: str
    collection: str
    snippet: str
    highlight: str


class CitationOut(PassageFieldsOut):
    number: int
    chunk_id: str
    doc_id: str
    collection: str = Field(description="A document is (collection, doc_id).")
    how: CitedHow = Field(
        description="model: cited in the answer's text; matched: the evidence that holds a short answer word for "
        "word, where the one the model cited does not; selected: the evidence whose own candidate answer won "
        "(answer marginalisation)."
    )


class RetrievalOut(BaseModel):
    """The SSE ``retrieval`` event: the hits, before the first token."""

    hits: list[HitOut]
    timings: dict[str, float] = Field(description="Milliseconds per stage.")
    stages: list[str] = Field(description="The stages that ranked, in the order they ran.")
    final_stage: str = Field(description="The stage the hits come from.")
    generation: int = Field(description="The index snapshot the hits come from.")


class UsageOut(BaseModel):
    prompt_tokens: int = Field(description="What the generator read (every candidate's prompt, marginalising).")
    answer_tokens: int
    answerable_log_odds: float | None = Field(
        description="The generator's log p(yes) - log p(no) that the evidence holds the answer; null: not asked."
    )
    retrieval_confidence: float | None = Field(
        description="How far retrieval's best candidate stands out: its standardised dense, BM25 and MaxSim "
        "scores summed; with the log-odds it decides whether to answer. Null: not asked."
    )


class QueryOut(BaseModel):
    question: str
    answer: str
    status: AnswerStatus = Field(
        description="cited: the answer cites valid evidence; uncited: it cites none; abstained: the evidence "
        'lacks the answer ("I don\'t know.", no citation); not_generated: retrieval only.'
    )
    generator: str | None
    citations: list[CitationOut]
    hits: list[HitOut]
    evidence: list[EvidenceOut]
    usage: UsageOut
    timings: dict[str, float] = Field(description="Milliseconds per stage.")
    stages: list[str] = Field(description="The stages that ranked, in the order they ran.")
    final_stage: str = Field(description="The stage the hits come from.")
    generation: int = Field(description="The index snapshot the answer comes from.")


# The one place the library's objects become the HTTP contract. Fields are read by name
# (from_attributes): one renamed in rag/ fails validation here instead of silently changing what
# clients receive, and a field added there stays out of the API until it is added here.
Out = TypeVar("Out", bound=BaseModel)


def _out(model: type[Out], obj: object) -> Out:
    return model.model_validate(obj, from_attributes=True)


def retrieval_out(retrieval: Retrieval, generation: int) -> RetrievalOut:
    return RetrievalOut(
        hits=[_out(HitOut, h) for h in retrieval.hits],
        timings=retrieval.timings_ms,
        stages=list(retrieval.rankings),
        final_stage=retrieval.final_stage,
        generation=generation,
    )


def query_out(answer: Answer, generation: int) -> QueryOut:
    return QueryOut(
        question=answer.question,
        answer=answer.answer,
        status=answer.status,
        generator=answer.generator,
        citations=[_out(CitationOut, c) for c in answer.citations],
        hits=[_out(HitOut, h) for h in answer.hits],
        evidence=[_out(EvidenceOut, e) for e in answer.evidence],
        usage=_out(UsageOut, answer),
        timings=answer.timings_ms,
        stages=answer.stages,
        final_stage=answer.final_stage,
        generation=generation,
    )


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
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    documents: int
    passages_done: int
    passages_total: int
    eta_s: float | None = Field(None, description="Seconds left while running, from the passages encoded so far.")
    attempts: int
    message: str
    result: dict[str, int] | None
    error: str | None
    runner: str | None = Field(
        None, description="host:pid of the `rag serve` process that runs (or last ran) the job; replicas share jobs."
    )


class ChunkOut(BaseModel):
    id: str
    ordinal: int
    text: str
    page: int | None = Field(None, description="The page (from 1) the passage starts on; null: no pages.")


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
    request_id: str = Field(description="This request's id, also in the X-Request-ID header and the server log.")


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    generation: int | None = None
    documents: int | None = None
    chunks: int | None = None
    jobs_pending: int | None = None
    message: str = ""
