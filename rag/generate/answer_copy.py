"""A short answer as the evidence words it: the span of the cited evidence it was meant to copy.

The reader is told to copy the shortest span of the evidence word for word, and a 4-bit 1.5B model
mostly does, but not always exactly: it writes "1905" where the evidence says 1505, "1975" for 1875,
"Healthcare professional" for "health care professional", "1963-1989" for "1963–1989". A short answer
that the evidence does not hold word for word is replaced by the evidence's most similar span (by
:class:`difflib.SequenceMatcher`'s ratio, case and spacing ignored) when that span is close enough;
otherwise it stays as written. Only short answers: a sentence the model wrote in its own words is
meant as such, and a span near it would change what it says. And only spans that keep every word of
the answer but function words, each as itself or a close variant (:func:`keeps_words`): "Cam Newton"
never becomes "a Newton", nor "The Denver Broncos" "the Broncos", where the closest span lacks a name
the model knew from elsewhere (measured in docs/benchmarks.md). A small number is written as the
evidence writes it: "8" becomes "eight" when the cited evidence holds "eight" and not "8" (and the other
way round), since no spelling is alike enough to the other for the span rule.

The model also cites the wrong number at times: "Soap [2]" where evidence 3 holds "Soap" and evidence 2
does not. A short answer that no cited evidence holds word for word (neither the highlight the model
read nor the whole passage its citation shows), nor yields a close span, cites the evidences whose
highlight holds it word for word instead (:meth:`EvidenceCopy.holders`); one that no evidence holds
keeps the model's citation, and an answer that cites nothing is never attributed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from itertools import pairwise

from rag.generate.answer_span import capitalised

MAX_WORDS = 6
MIN_SIMILARITY = 0.75
_MARKS = re.compile(r"(?:\s*\[\d+\])+")
_TOKEN = re.compile(r"\S+")
_EDGE = "\"'()“”‘’,.;:!?"
_ALNUM = re.compile(r"\w+")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
# Words an answer may lose to its span ("By authorizing ..." → "Authorized ...", "In 'The Space Museum'").
FUNCTION_WORDS = frozenset(
    {"a", "an", "the", "by", "in", "on", "at", "of", "to", "and", "or", "for", "from", "with", "as"}
)
_ZERO_TO_TWENTY = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)
_TENS = "thirty forty fifty sixty seventy eighty ninety"
# The numbers a text may write either way: 0-20 and the tens to 90, as digits and as words.
NUMBER_WORDS: dict[str, str] = {
    **{str(n): word for n, word in enumerate(_ZERO_TO_TWENTY.split())},
    **{str(10 * n): word for n, word in enumerate(_TENS.split(), start=3)},
}
_NUMBER_OF_WORD = {word: digits for digits, word in NUMBER_WORDS.items()}


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def holds_words(passage: str, words: str) -> bool:
    """Whether ``passage`` holds ``words`` as whole words (case and spacing ignored): "freight services"
    holds "freight services", not "freight service"."""
    return re.search(rf"(?<!\w){re.escape(_normal(words))}(?!\w)", _normal(passage)) is not None


def answer_body(answer: str) -> str:
    """The answer's words before its first citation mark, without a closing full stop."""
    marks = _MARKS.search(answer)
    return (answer[: marks.start()] if marks else answer).strip().rstrip(".!?").strip()


def may_be_copied(answer: str, max_words: int = MAX_WORDS) -> bool:
    """Whether ``answer`` is short enough to be replaced by an evidence span (its body has 1..max_words words)."""
    return 0 < len(answer_body(answer).split()) <= max_words


def closest_span(text: str, passages: Sequence[str]) -> tuple[str, float]:
    """The span of ``passages`` (whole whitespace-separated words, edge punctuation stripped, from two
    words fewer to two more than ``text``) most similar to ``text``, and that similarity in [0, 1]."""
    wanted = _normal(text)
    n = len(wanted.split())
    best, best_ratio = "", 0.0
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(wanted)
    for passage in passages:
        tokens = list(_TOKEN.finditer(passage))
        for i in range(len(tokens)):
            for length in range(max(1, n - 2), n + 3):
                if i + length > len(tokens):
                    break
                span = passage[tokens[i].start() : tokens[i + length - 1].end()].strip(_EDGE)
                matcher.set_seq1(_normal(span))
                if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
                    continue
                ratio = matcher.ratio()
                if ratio > best_ratio:
                    best, best_ratio = span, ratio
    return best, best_ratio


def number_as_written(text: str, passages: Sequence[str]) -> str | None:
    """``text``, a small number in digits or in words that ``passages`` do not hold as written (the
    caller's check), in the other form when they hold that ("8" → "eight"); else None."""
    word = _normal(text)
    other = NUMBER_WORDS.get(word) or _NUMBER_OF_WORD.get(word)
    return other if other is not None and any(holds_words(p, other) for p in passages) else None


def keeps_words(answer: str, span: str, min_similarity: float = MIN_SIMILARITY) -> bool:
    """Whether every word of ``answer`` but :data:`FUNCTION_WORDS` has a word in ``span`` (or two
    adjacent ones joined: "healthcare" in "health care") at least ``min_similarity`` alike."""
    words = [w.casefold() for w in _ALNUM.findall(span)]
    variants = words + [a + b for a, b in pairwise(words)]
    matcher = SequenceMatcher(autojunk=False)
    for word in _ALNUM.findall(answer):
        word = word.casefold()
        if word in FUNCTION_WORDS:
            continue
        matcher.set_seq2(word)
        if not any(_alike(matcher, v, min_similarity) for v in variants):
            return False
    return True


def _alike(matcher: SequenceMatcher[str], word: str, min_similarity: float) -> bool:
    matcher.set_seq1(word)
    return matcher.ratio() >= min_similarity


def copied_from_evidence(
    answer: str, passages: Sequence[str], max_words: int = MAX_WORDS, min_similarity: float = MIN_SIMILARITY
) -> str:
    """``answer`` (its citation marks included) with its body replaced by the closest span of
    ``passages`` when the body is short, not in them word for word, and that span is at least
    ``min_similarity`` alike and keeps the body's words (:func:`keeps_words`), or by the passages' way of
    writing a small number (:func:`number_as_written`); the citation marks and the closing stop stay."""
    body = answer_body(answer)
    if not may_be_copied(answer, max_words) or not passages:
        return answer
    if any(holds_words(p, body) for p in passages):
        return answer
    span = number_as_written(body, passages)
    if span is None:
        span, similarity = closest_span(body, passages)
        if not span or similarity < min_similarity or not keeps_words(body, span, min_similarity):
            return answer
    marks = _MARKS.search(answer)
    tail = answer[marks.start() :] if marks else answer.rstrip()[len(answer.rstrip().rstrip(".!?")) :]
    return capitalised(span) + tail


@dataclass(frozen=True)
class EvidenceCopy:
    """What a short answer is copied from: the text of each evidence as the model read it, by its
    number, and the rule's bounds (``max_words`` 0: never); ``whole``: each evidence's passage as its
    citation shows it, where that is more than the model read (a highlight)."""

    passages: Mapping[int, str]
    max_words: int = MAX_WORDS
    min_similarity: float = MIN_SIMILARITY
    whole: Mapping[int, str] = field(default_factory=dict)

    def apply(self, answer: str, cited: Sequence[int]) -> str:
        """``answer`` copied from the evidence it cites (from all of it when it cites none)."""
        if self.max_words <= 0:
            return answer
        texts = [self.passages[n] for n in cited if n in self.passages] or list(self.passages.values())
        return copied_from_evidence(answer, texts, self.max_words, self.min_similarity)

    def holders(self, answer: str, cited: Sequence[int]) -> tuple[int, ...]:
        """The evidence numbers whose text, as the model read it, holds the short ``answer``'s words as
        written (a leading article aside: "The Broncos" is held by "the Denver Broncos"), when it cites
        some and none of those it cites holds them, neither as read nor as its citation shows the whole
        passage ((): keep its citations)."""
        if self.max_words <= 0 or not cited or not may_be_copied(answer, self.max_words):
            return ()
        body = _LEADING_ARTICLE.sub("", answer_body(answer)) or answer_body(answer)
        texts = [self.passages[n] for n in cited if n in self.passages]
        texts += [self.whole[n] for n in cited if n in self.whole]
        if any(holds_words(text, body) for text in texts):
            return ()
        return tuple(n for n, passage in sorted(self.passages.items()) if holds_words(passage, body))

    def holds_back(self, shown: str) -> bool:
        """Whether an answer still being written, ``shown`` so far, might yet be replaced by a span: then
        none of it is shown until it is finished."""
        return self.max_words > 0 and len(answer_body(shown).split()) <= self.max_words
