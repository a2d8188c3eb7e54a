"""The frozen objects stages pass to each other, declared once and built by keyword.

Documents, hits, evidence and citations share one declaration of what a document says about itself
(:class:`DocumentFields`); stage names are one enum (:class:`Stage`); a streamed answer is a sequence
of typed events (:data:`StreamEvent`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Literal

from rag.errors import InputError


class Stage(StrEnum):
    """Every ranking the retrieval recipe (:mod:`rag.retrieval`) can produce, by its published name."""

    DENSE = "dense"
    BM25 = "bm25"
    RRF = "rrf"
    MAXSIM = "maxsim"  # MaxSim's own order of the fused candidates
    FINAL = "rrf+maxsim"  # what the MaxSim mode in use returns (replace, fuse or scores)
    # Each MaxSim mode's answer when another is in use (evaluation, and choosing an index's final stage):
    MAXSIM_REPLACE = "maxsim-replace"
    MAXSIM_FUSE = "maxsim-fuse"
    MAXSIM_SCORES = "maxsim-scores"
    MAXSIM_RAW = "rrf+maxsim-raw"  # the final stage with raw token vectors, on an adapted index (evaluation)


# replace: MaxSim orders the fused candidates; fuse: MaxSim joins RRF as a third ranking; scores: the
# three paths' standardised scores summed over the fused candidates (rag/score_fusion.py); off: RRF.
MaxSimMode = Literal["replace", "fuse", "scores", "off"]
CitedHow = Literal["model", "selected", "matched"]
# cited: the answer cites valid evidence; uncited: it cites none (shown as such, never attributed by
# guesswork); abstained: "I don't know", with no citation; not_generated: retrieval only.
AnswerStatus = Literal["cited", "uncited", "abstained", "not_generated"]
PATHS = (Stage.DENSE, Stage.BM25)  # the first-stage retrieval paths, in the order they run


@dataclass(frozen=True, kw_only=True)
class DocumentFields:
    """What a document says about itself; shown with every hit, evidence and citation of it."""

    title: str = ""
    source: str = ""
    url: str = ""
    date: str = ""  # ISO 8601 (YYYY-MM-DD or full timestamp) or empty

    def document_fields(self) -> dict[str, str]:
        """These fields by name, to build another object about the same document."""
        return {"title": self.title, "source": self.source, "url": self.url, "date": self.date}


@dataclass(frozen=True, kw_only=True)
class PassageFields(DocumentFields):
    """A passage's document fields and the page it starts on (documents with pages: PDF, slides)."""

    page: int | None = None  # from 1; None where the document has no pages

    def passage_fields(self) -> dict[str, Any]:
        """These fields by name, to build another object about the same passage."""
        return {**self.document_fields(), "page": self.page}


PAGE_OFFSETS = "page_offsets"  # Document.metadata key: the character offset each page starts at, in order


@dataclass(frozen=True, kw_only=True)
class Document(DocumentFields):
    """A source document as loaded, before chunking."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A passage of a document that fits the encoder; ``id`` is shared by the store and all indexes."""

    id: str
    document_id: str
    ordinal: int
    text: str
    title: str
    token_start: int  # span in the document's word pieces, end exclusive
    token_end: int
    char_start: int  # span in the document's text, end exclusive
    char_end: int
    page: int | None = None  # the page the passage starts on, where the document has pages

    @property
    def encoded_text(self) -> str:
        """What the encoder and BM25 see: the title, then the passage."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Filters:
    """Keep only chunks whose document matches every given field (applied on every path before fusion).

    ``date_from``/``date_to`` are inclusive ISO dates (YYYY-MM-DD); an undated document never
    matches a date range.
    """

    collection: str | None = None
    sources: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None

    @property
    def empty(self) -> bool:
        return self.collection is None and not self.sources and self.date_from is None and self.date_to is None

    def validate(self) -> None:
        """Refuse dates that are not ISO dates, and a range that ends before it starts."""
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if value is not None and not is_iso_date(value):
                raise InputError(f"{name} must be an ISO date YYYY-MM-DD, got {value!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InputError(f"date_from {self.date_from} is after date_to {self.date_to}")


def is_iso_date(value: str) -> bool:
    """Whether all of ``value`` is an ISO 8601 date (YYYY-MM-DD) or timestamp; nothing may trail it."""
    if not value or len(value) > 40 or not value[:4].isdigit():
        return False
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class Hit(PassageFields):
    """A retrieved chunk and why it is here: its rank (from 1) and score on every stage that saw it,
    and each path's share of its fused score: RRF shares (``weight / (k + rank)``), or in the ``scores``
    mode each path's weighted standardised score (the name is the API's, kept)."""

    chunk_id: str
    doc_id: str
    text: str
    collection: str
    score: float
    # keyed by Stage values (plain strings, so a decoded JSON answer indexes the same way)
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    rrf_contributions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalRequest:
    """One question for :meth:`rag.pipeline.Pipeline.retrieve_batch`; None takes the setting."""

    question: str
    top_k: int | None = None
    filters: Filters | None = None
    depth: int | None = None
    alternative: bool = False  # also rank by the MaxSim modes not in use (evaluation)


@dataclass(frozen=True)
class Retrieval:
    """Hits plus every stage's full ranking ((chunk id, score), best first) and per-stage timings in ms.

    ``elapsed_ms[stage]`` is the time from the question to that stage's ranking, query encoding included.
    """

    question: str
    hits: list[Hit]
    rankings: dict[str, list[tuple[str, float]]]  # keyed by Stage values
    timings_ms: dict[str, float]
    elapsed_ms: dict[str, float]
    final_stage: Stage

    def without(self, chunk_ids: set[str]) -> Retrieval:
        """This retrieval as if the collection lacked ``chunk_ids``: gone from the hits and from every
        stage's ranking (evaluation's questions without their gold passages)."""
        return replace(
            self,
            hits=[h for h in self.hits if h.chunk_id not in chunk_ids],
            rankings={
                stage: [(c, s) for c, s in ranking if c not in chunk_ids] for stage, ranking in self.rankings.items()
            },
        )


@dataclass(frozen=True, kw_only=True)
class Evidence(PassageFields):
    """One numbered piece of evidence as the generator sees it (``number`` is what answers cite)."""

    number: int
    chunk_id: str
    doc_id: str
    collection: str
    snippet: str
    highlight: str


@dataclass(frozen=True, kw_only=True)
class Citation(PassageFields):
    """An evidence the answer relies on; ``how`` is ``model`` (cited in the answer's text), ``matched``
    (the evidence that holds a short answer word for word, where the one the model cited does not) or
    ``selected`` (the evidence whose own candidate answer won the marginalisation)."""

    number: int
    chunk_id: str
    doc_id: str
    collection: str
    how: CitedHow


@dataclass(frozen=True, kw_only=True)
class Answer:
    """The answer text with its citations, and the retrieval it comes from: its hits, the evidence the
    generator saw, the stages that ranked (in the order they ran) and the one the hits come from."""

    question: str
    answer: str
    citations: list[Citation]
    hits: list[Hit]
    evidence: list[Evidence]
    timings_ms: dict[str, float]
    generator: str | None
    stages: list[str]
    final_stage: Stage
    status: AnswerStatus = "not_generated"
    prompt_tokens: int = 0  # what the generator read (all candidates' prompts, when marginalising)
    answer_tokens: int = 0
    answerable_log_odds: float | None = None  # the generator's log p(yes) - log p(no) that the evidence answers
    # how far retrieval's best candidate stands out (rag/answerability.py); None: not computed
    retrieval_confidence: float | None = None


@dataclass(frozen=True)
class Message:
    """One chat message: role is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


@dataclass(frozen=True)
class Generation:
    """A finished answer with the generator's own accounting."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    logprob: float | None = None  # log p(text | prompt), where the generator reports it


@dataclass(frozen=True)
class RetrievalEvent:
    """The hits are ready (sent before the first token)."""

    kind: ClassVar[str] = "retrieval"  # the event's name on the wire (SSE)
    retrieval: Retrieval


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer, as the generator wrote it."""

    kind: ClassVar[str] = "token"
    text: str


@dataclass(frozen=True)
class AnswerEvent:
    """The finished answer; always the last event of a stream."""

    kind: ClassVar[str] = "answer"
    answer: Answer


StreamEvent = RetrievalEvent | TokenEvent | AnswerEvent
