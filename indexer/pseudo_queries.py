"""Training queries made from the corpus itself, no labels: the inverse cloze task (ICT) and titles.

ICT (Lee et al., 2019): a sentence of a passage is the query and the rest of the passage its positive.
Removing the sentence from the positive forces the model to match meaning rather than copied words;
keeping it in a small share of examples keeps exact matches rewarded too. A title is a query for its
document's first passage when no other sampled document shares it (shared titles, as in Wikipedia
sections, would make every sibling passage a false negative).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rag.sentences import sentence_spans

NO_SPAN = (0, 0)


@dataclass(frozen=True)
class PseudoQuery:
    """A query for passage ``row``; ``removed`` is the char span of the passage's encoded text
    (title, newline, text) that its positive leaves out, ``NO_SPAN`` when nothing is removed."""

    text: str
    row: int
    removed: tuple[int, int] = NO_SPAN


def inverse_cloze_queries(
    rows: Sequence[int],
    titles: Sequence[str],
    texts: Sequence[str],
    first_chunk: Sequence[bool],
    rng: random.Random,
    keep_probability: float = 0.1,
    min_words: int = 4,
    max_words: int = 40,
) -> list[PseudoQuery]:
    """One ICT query per passage that has at least two sentences, plus one title query per first
    passage whose title is unique among ``titles``."""
    title_counts = Counter(t.strip().lower() for t in titles if t.strip())
    queries: list[PseudoQuery] = []
    for row, title, text, first in zip(rows, titles, texts, first_chunk, strict=True):
        offset = len(title) + 1 if title else 0  # the encoded text is "title\ntext"
        spans = [s for s in sentence_spans(text) if min_words <= len(text[s[0] : s[1]].split()) <= max_words]
        if spans and len(sentence_spans(text)) >= 2:
            start, end = rng.choice(spans)
            removed = NO_SPAN if rng.random() < keep_probability else (offset + start, offset + end)
            queries.append(PseudoQuery(text[start:end], row, removed))
        if first and title.strip() and title_counts[title.strip().lower()] == 1 and len(title.split()) >= 3:
            # The title is part of the encoded passage: leave it out, as a sentence is.
            queries.append(PseudoQuery(title.strip(), row, (0, len(title))))
    return queries


def kept_token_mask(offsets: Sequence[tuple[int, int]], removed: tuple[int, int]) -> list[bool]:
    """Which of a passage's tokens stay in its positive: those not inside ``removed``. Special tokens
    (empty offsets) always stay."""
    start, end = removed
    if start == end:
        return [True] * len(offsets)
    return [not (a != b and a >= start and b <= end) for a, b in offsets]
