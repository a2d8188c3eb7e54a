"""The shortest complete answer: a restated question cut from around the answer, and the answer kept to
its first sentence(s).

A small reader told to answer with the shortest span still often writes the question back around it:
"The price of oil is usually a stable commodity until **the oil shock**", "**The owner** selects and
hires the best ideas and appropriate contractors", then runs on into the evidence's next sentence. Of
300 squad-dev-a answers by the default 1.5B model, 113 held the gold span inside such a sentence
(docs/benchmarks.md). What restates the question tells the user nothing they did not ask, so it goes.

A restatement is a run of the answer's words that follows the question's own words in order (function
words such as "the" or "was" may come in between), at the start or at the end of the answer, holding at
least :data:`MIN_RESTATED` of the question's words and leaving something else. Words are compared by a
crude stem (case, a plural ``s``, the first five letters), so "resembles" restates "resemble".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MIN_RESTATED = 2  # one shared word is often the answer's own ("protein A" for "What protein ...?")

# Left in front of the answer by the cut ("Clades are | genetic branches"): dropped with the restatement.
_LINKING_VERBS = frozenset({"is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "do", "did"})
_LINKING_VERBS |= {"does"}
# Free inside a restatement: they join the question's words without being the question's.
_FUNCTION_WORDS = _LINKING_VERBS | {"a", "an", "the", "it", "its", "they", "their", "there", "this", "that", "these"}
_FUNCTION_WORDS |= {"those", "which", "who", "whom", "whose"}
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_CITATION = re.compile(r"\[\d+\]")
# A sentence ends at . ! ? (a closing quote or bracket, citation marks may follow), then space and a
# capital or a digit; a single capital before the full stop is an initial ("E. W. Scripps"), not an end.
_SENTENCE_END = re.compile(r"(?<![\s.][A-Z])(?<!^[A-Z])[.!?][\"'”’)]*(?:\s*\[\d+\])*(?=\s+[A-Z0-9\"“(])")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "no", "gen", "prof", "inc", "co"})


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:5]


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    stem: str
    capital: bool


def _words(text: str) -> list[_Word]:
    return [_Word(m.start(), m.end(), _stem(m.group(0)), m.group(0)[0].isupper()) for m in _WORD.finditer(text)]


def _answer_words(text: str) -> list[_Word]:
    """The words of an answer, its citation marks blanked (offsets stay those of ``text``)."""
    return _words(_CITATION.sub(lambda m: " " * len(m.group(0)), text))


def _inside_name(words: Sequence[_Word], at: int) -> bool:
    """Whether a cut before ``words[at]`` would split a name ("Super Bowl | XLV")."""
    return 0 < at < len(words) and words[at - 1].capital and words[at].capital


def _restates(words: Sequence[_Word], question: Sequence[str]) -> tuple[int, int]:
    """How many of ``words``, from the first, follow ``question``'s words in order, counted up to the
    last that is the question's own; and how many of them are the question's own."""
    position = matched = taken = 0
    for i, word in enumerate(words):
        if word.stem in _FUNCTION_WORDS:
            continue
        try:
            position = question.index(word.stem, position) + 1
        except ValueError:
            break
        matched, taken = matched + 1, i + 1
    return taken, matched


def _question_stems(question: str) -> list[str]:
    return [w.stem for w in _words(question)]


def _tells_more(words: Sequence[_Word], question: Sequence[str]) -> bool:
    """Whether ``words`` hold a word of their own, not the question's: what is left after a cut must."""
    asked = set(question)
    return any(w.stem not in _FUNCTION_WORDS and w.stem not in asked for w in words)


def _restated_prefix_end(words: Sequence[_Word], question: Sequence[str]) -> int:
    """Where the answer starts after a restated question at its front (0: none)."""
    taken, matched = _restates(words, question)
    if matched < MIN_RESTATED or not _tells_more(words[taken:], question) or _inside_name(words, taken):
        return 0
    while taken < len(words) - 1 and words[taken].stem in _LINKING_VERBS:
        taken += 1
    return taken


def _restated_suffix_start(words: Sequence[_Word], question: Sequence[str], first: int) -> int:
    """Where a restated question that runs to the end starts (len(words): none); not before ``first``+1."""
    for start in range(first + 1, len(words)):
        if words[start].stem in _FUNCTION_WORDS or _inside_name(words, start):
            continue
        taken, matched = _restates(words[start:], question)
        if taken == len(words) - start and matched >= MIN_RESTATED and _tells_more(words[first:start], question):
            return start
    return len(words)


def without_restated_question(text: str, question: str) -> str:
    """``text`` (an answer, its citation marks included) less a restatement of ``question`` at its start
    or its end; the citation marks and the closing full stop stay."""
    words = _answer_words(text)
    stems = _question_stems(question)
    if not words or not stems:
        return text
    first = _restated_prefix_end(words, stems)
    last = _restated_suffix_start(words, stems, first)
    if first == 0 and last == len(words):
        return text
    begin = words[first].start if first else 0
    end = words[last].start if last < len(words) else len(text)
    kept, cut = text[begin:end].rstrip(" ,;:"), (text[:begin] + text[end:]).rstrip()
    marks = "".join(dict.fromkeys(m.group(0) for m in _CITATION.finditer(cut) if m.group(0) not in kept))
    stop = kept[-1] if kept[-1:] in ".!?" else (cut[-1] if cut[-1:] in ".!?" else "")
    body = kept.rstrip(".!? ")
    return capitalised(f"{body} {marks}{stop}" if marks else f"{body}{stop}")


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each sentence of ``text`` but the last (its citation marks included)."""
    ends = []
    for match in _SENTENCE_END.finditer(text):
        before = text[: match.start()].split()
        if before and before[-1].lower().strip("\"'(") in _ABBREVIATIONS:
            continue
        ends.append(match.end())
    return ends


def first_sentences(text: str, count: int) -> str:
    """The first ``count`` sentences of ``text`` (0: all), with the citation marks of those left out."""
    ends = sentence_ends(text)
    if count <= 0 or len(ends) < count:
        return text
    kept, rest = text[: ends[count - 1]].rstrip(), text[ends[count - 1] :]
    marks = "".join(dict.fromkeys(m.group(0) for m in _CITATION.finditer(rest) if m.group(0) not in kept))
    if not marks:
        return kept
    if kept[-1:] in ".!?":
        return f"{kept[:-1]} {marks}{kept[-1]}"
    return f"{kept} {marks}"


def shortest_answer(text: str, question: str, max_sentences: int) -> str:
    """``text`` kept to its first ``max_sentences`` sentences, less a restated ``question``."""
    text = first_sentences(text, max_sentences)
    return without_restated_question(text, question) if question else text


def showable(text: str, question: str) -> tuple[int, int]:
    """Which part of ``text`` — an answer still being written — may be shown now without being cut later
    as a restated question: (start, end) offsets. Nothing while its words so far all restate the
    question; from where the restatement ends once one does; never a trailing run that might turn out
    to end the answer with one."""
    words = _answer_words(text)
    stems = _question_stems(question)
    if not words or not stems:
        return 0, len(text)
    taken, _ = _restates(words, stems)
    if all(w.stem in _FUNCTION_WORDS for w in words[taken:]):
        return 0, 0
    first = _restated_prefix_end(words, stems)
    begin = words[first].start if first else 0
    for start in range(first + 1, len(words)):
        if words[start].stem in _FUNCTION_WORDS:
            continue
        taken, _ = _restates(words[start:], stems)
        if all(w.stem in _FUNCTION_WORDS for w in words[start + taken :]):
            return begin, words[start].start
    return begin, len(text)
