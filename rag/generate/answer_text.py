"""What a generator wrote, made into what a user reads: markup, invented links and prompt echoes removed,
citations checked against the evidence, an abstention recognised as one.

Small models leak their prompt: an ``<evidence id="2">`` tag, a ``<ref>`` with a URL no evidence holds,
a ``question:`` line, a sentence of the instructions. None of that is the answer. A citation mark that
names no evidence is dropped; a short answer that its cited evidence does not hold, but another does word
for word, cites that one (:mod:`rag.generate.answer_copy`); an answer that cites nothing is reported as
uncited, never attributed by guesswork; an answer that says it does not know carries no citation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rag.generate.answer_copy import EvidenceCopy
from rag.generate.answer_span import capitalised, first_sentences, sentence_ends, shortest_answer, showable
from rag.objects import AnswerStatus, Citation, CitedHow, Evidence

ABSTENTION = "I don't know."

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][\w:-]*(?:\s[^<>]*)?/?\s*>")  # <evidence id="2">, </ref>, <br/>
_OPEN_TAG = re.compile(r"<[^<>]*$")  # a tag still being written
_URL = re.compile(r"(?:https?://|www\.)[^\s<>()\[\]{}\"']+", re.IGNORECASE)
_CITATION_GROUP = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")
_OPEN_BRACKET = re.compile(r"\[[\d\s,;]*$")
_LABEL_LINE = re.compile(
    r"^\s*(?:question|source|date|title|snippet|highlight|reasoning|evidence|system|user)\s*:.*$",
    re.IGNORECASE | re.MULTILINE,
)
_ANSWER_LABEL = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*", re.IGNORECASE | re.MULTILINE)
_AS_OF_TODAY = re.compile(r"\(\s*as of today\b[^)]*\)?", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_WORD = re.compile(r"[a-z0-9]+")
_ABSTAINS = re.compile(
    r"^\W*(?:i\s+(?:do\s*n[o']?t|don't|cannot|can't)\s+know|unknown\b|not\s+(?:enough|sufficient)\s+information"
    r"|(?:the\s+)?(?:provided\s+)?evidence\s+(?:does\s+not|doesn't)\s+(?:contain|say|mention|provide|state)"
    r"|(?:there\s+is\s+)?no\s+(?:information|evidence)\b|(?:i\s+)?(?:cannot|can't)\s+(?:answer|find|determine))",
    re.IGNORECASE,
)
_EMPTY_ASIDE = re.compile(
    r"\((?:\s*(?:see|at|from|source|via)\b\s*:?)?\s*\)", re.IGNORECASE
)  # what a removed URL leaves
_MIN_ECHO_WORDS = 4  # a sentence this long found word for word in the instructions is an echo


@dataclass(frozen=True)
class CheckedAnswer:
    """The readable answer, the evidence numbers it cites (valid ones, first-cited order), the numbers
    it cited that name no evidence, whether it is cited, uncited or an abstention, and how its citations
    were found (``matched``: the evidence that holds it, in place of the one the model named)."""

    text: str
    numbers: tuple[int, ...]
    dropped: tuple[int, ...]
    status: AnswerStatus
    how: CitedHow = "model"


def check_answer(
    raw: str,
    n_evidences: int,
    instructions: Sequence[str] = (),
    known_text: str = "",
    question: str = "",
    max_sentences: int = 0,
    copy: EvidenceCopy | None = None,
) -> CheckedAnswer:
    """``raw`` as a user should read it. ``instructions`` are the prompt's own texts (system prompt,
    closing instruction), whose sentences an answer must not repeat; ``known_text`` is everything the
    evidence says, so a URL it holds may stay and any other is removed; ``question`` restated around
    the answer is cut, and only the first ``max_sentences`` sentences are kept (0: all;
    :mod:`rag.generate.answer_span`); with ``copy``, a short answer the evidence does not hold word for
    word becomes the evidence's closest span, or else cites the evidence that holds it
    (:mod:`rag.generate.answer_copy`)."""
    text = _clean(raw, instructions, known_text)
    text, _, dropped = _checked_citations(text, n_evidences)
    text, numbers, _ = _checked_citations(shortest_answer(text, question, max_sentences), n_evidences)
    bare = _CITATION_GROUP.sub(" ", text).strip()
    if not _WORD.search(bare.lower()) or _ABSTAINS.match(bare):
        return CheckedAnswer(ABSTENTION, (), tuple(dropped), "abstained")
    how: CitedHow = "model"
    if copy is not None:  # after the abstention check: "I don't know" is never copied into a span
        copied = copy.apply(text, numbers)
        holders = copy.holders(text, numbers) if copied == text else ()
        if holders:
            text, numbers, how = cite_as(text, holders), list(holders), "matched"
        else:
            text = copied
    return CheckedAnswer(text, tuple(numbers), tuple(dropped), "cited" if numbers else "uncited", how)


def shown_so_far(
    raw: str,
    instructions: Sequence[str] = (),
    known_text: str = "",
    question: str = "",
    max_sentences: int = 0,
    copy: EvidenceCopy | None = None,
) -> str:
    """What may be shown of an answer still being written: its cleaned text up to the last whole word,
    holding back a tag or a citation until it is complete, the sentence being written while it could
    still turn out to repeat the instructions, and what may yet be cut as a restated ``question``;
    nothing past the first ``max_sentences`` sentences; with ``copy``, nothing while the answer is short
    enough to be replaced by an evidence span."""
    text = _shown_text(raw, instructions, known_text)
    text = first_sentences(text, max_sentences)
    if question:
        begin, end = showable(text, question)
        text = capitalised(text[begin:end].rstrip(" ,;:"))
    if copy is not None and copy.holds_back(text):
        return ""
    return text


def answer_complete(raw: str, max_sentences: int) -> bool:
    """Whether ``raw`` has written its first ``max_sentences`` sentences and begun another (0: never), with
    a citation somewhere, so that the generation can stop: what follows would be cut (an uncited first
    sentence waits for the citation the next may carry)."""
    if max_sentences <= 0 or not _CITATION_GROUP.search(raw):
        return False
    return len(sentence_ends(_clean(raw, (), ""))) >= max_sentences


def _shown_text(raw: str, instructions: Sequence[str], known_text: str) -> str:
    cut = max(raw.rfind(" "), raw.rfind("\n"))
    text = raw[: cut + 1] if cut >= 0 else ""
    text = _OPEN_BRACKET.sub("", _OPEN_TAG.sub("", text))
    sentences = list(_SENTENCE.finditer(text))
    if sentences and not re.search(r"[.!?\n]\s*$", text):
        words = _normal_words(sentences[-1].group(0))
        if not words or f" {words} " in f" {_frame(instructions)} ":
            text = text[: sentences[-1].start()]
    return _clean(text, instructions, known_text)


def _clean(raw: str, instructions: Sequence[str], known_text: str) -> str:
    text = raw.replace("\r", "")
    # The answer after the last "answer:" label: what precedes it is echoed frame or reasoning.
    labels = list(_ANSWER_LABEL.finditer(text))
    if labels:
        text = text[labels[-1].end() :]
    text = _LABEL_LINE.sub("", text)
    text = _AS_OF_TODAY.sub("", text)
    text = _TAG.sub(" ", text)
    known = known_text.lower()
    text = _URL.sub(lambda m: m.group(0) if m.group(0).lower().rstrip(".,;:") in known else " ", text)
    text = _EMPTY_ASIDE.sub(" ", _without_echoes(text, instructions))
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    text = re.sub(r"\n\s*\n+", "\n", text)
    return text.strip()


def _normal_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _frame(instructions: Iterable[str]) -> str:
    return " ".join(_normal_words(i) for i in instructions)


def _without_echoes(text: str, instructions: Iterable[str]) -> str:
    """``text`` less each sentence found word for word in the instructions."""
    frame = f" {_frame(instructions)} "
    if not frame.strip():
        return text
    for sentence in reversed(list(_SENTENCE.finditer(text))):
        words = _normal_words(sentence.group(0))
        if len(words.split()) >= _MIN_ECHO_WORDS and f" {words} " in frame:
            text = text[: sentence.start()] + text[sentence.end() :]
    return text


def _checked_citations(text: str, n_evidences: int) -> tuple[str, list[int], list[int]]:
    """Each citation group rewritten as ``[a][b]`` of the numbers that name evidence; those that do
    not are dropped and returned apart."""
    numbers: dict[int, None] = {}
    dropped: dict[int, None] = {}

    def rewrite(match: re.Match[str]) -> str:
        valid = []
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if 1 <= number <= n_evidences:
                valid.append(number)
                numbers.setdefault(number)
            else:
                dropped.setdefault(number)
        return "".join(f"[{n}]" for n in dict.fromkeys(valid))

    rewritten = _CITATION_GROUP.sub(rewrite, text)
    rewritten = re.sub(r"(\[\d+\])\s+(?=\[\d)", r"\1", rewritten)  # [2] [1] is [2][1]
    rewritten = re.sub(r"(\[\d+\])(?:\1)+", r"\1", rewritten)  # [1][1] is [1]
    rewritten = re.sub(r"[ \t]+", " ", re.sub(r"\s+(\[\d)", r" \1", rewritten)).strip()
    return rewritten, list(numbers), list(dropped)


def citations_of(numbers: Sequence[int], evidences: Sequence[Evidence], how: CitedHow = "model") -> list[Citation]:
    """The citations for evidence ``numbers`` (each must name one of ``evidences``)."""
    by_number = {e.number: e for e in evidences}
    return [
        Citation(
            number=n,
            chunk_id=by_number[n].chunk_id,
            doc_id=by_number[n].doc_id,
            collection=by_number[n].collection,
            how=how,
            **by_number[n].passage_fields(),
        )
        for n in numbers
    ]


def answer_key(text: str) -> str:
    """What two answers that say the same thing share: their words, citations left out."""
    return _normal_words(_CITATION_GROUP.sub(" ", text))


def answer_key_text(text: str) -> str:
    """The answer without its citation marks."""
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]+", " ", _CITATION_GROUP.sub(" ", text))).strip()


def cite_as(text: str, numbers: Sequence[int]) -> str:
    """``text`` citing evidence ``numbers`` alone: its own marks replaced by theirs, added if it had none."""
    bare = answer_key_text(text)
    marks = "".join(f"[{n}]" for n in numbers)
    if bare and bare[-1] in ".!?":
        return f"{bare[:-1]} {marks}{bare[-1]}"
    return f"{bare} {marks}"
