"""Sentence boundaries, shared by chunking, evidence highlights and inverse-cloze pseudo-queries."""

from __future__ import annotations

import itertools
import re

# A sentence ends at . ! ? (optionally closed by a quote or bracket) followed by space, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n\s*\n")


def sentence_starts(text: str) -> list[int]:
    """Character offsets where sentences begin (always including 0)."""
    return [0] + [m.end() for m in _SENTENCE_END.finditer(text) if m.end() < len(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, surrounding whitespace trimmed."""
    starts = sentence_starts(text)
    spans = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        piece = text[start:end]
        left = len(piece) - len(piece.lstrip())
        right = len(piece.rstrip())
        if right > left:
            spans.append((start + left, start + right))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones left out."""
    starts = sentence_starts(text)
    bounds = [*starts, len(text)]
    return [text[a:b].strip() for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


def sentence_head(previous: str, offset: int, max_chars: int) -> str:
    """The start of the sentence a passage opens inside: the text of ``previous`` (the passage before it
    in the document, which it overlaps) from that sentence's start up to ``offset``, where the passage
    begins; "" where the passage begins a sentence, or where the head would pass ``max_chars``."""
    if not 0 < offset <= len(previous):
        return ""
    begun = [s for s in sentence_starts(previous) if s <= offset]
    start = begun[-1]
    head = previous[start:offset]
    if start == offset or not head.strip() or len(head) > max_chars:
        return ""
    return head
