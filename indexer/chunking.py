"""Split documents into passages that fit the encoder, on sentence boundaries where possible."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Any

from rag.errors import InputError
from rag.objects import PAGE_OFFSETS, Chunk, Document
from rag.sentences import sentence_starts

_SPECIAL_TOKENS = 2  # [CLS] and [SEP] around every passage
_TOKENIZE_BATCH = 512


def chunk_id(collection: str, document_id: str, ordinal: int, title: str, text: str) -> str:
    """Stable id from the content: the same passage of the same document keeps its id across rebuilds;
    a document is (collection, id), so the same id and text in two collections are two chunks."""
    digest = hashlib.sha256("\x1f".join((collection, document_id, str(ordinal), title, text)).encode("utf-8"))
    return digest.hexdigest()[:24]


def page_at(page_offsets: Sequence[int], char_offset: int) -> int | None:
    """The page (from 1) that the character at ``char_offset`` is on; None without pages."""
    if not page_offsets:
        return None
    return max(1, bisect.bisect_right(page_offsets, char_offset))


def _sentence_units(offsets: Sequence[tuple[int, int]], starts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Token spans of sentences; a sentence longer than ``budget`` is cut into budget-sized pieces."""
    units: list[tuple[int, int]] = []
    unit_start = 0
    next_start = 1
    for tok, (char_start, _) in enumerate(offsets):
        while next_start < len(starts) and char_start >= starts[next_start]:
            if tok > unit_start:
                units.append((unit_start, tok))
                unit_start = tok
            next_start += 1
    units.append((unit_start, len(offsets)))
    pieces: list[tuple[int, int]] = []
    for start, end in units:
        pieces.extend((s, min(s + budget, end)) for s in range(start, end, budget))
    return pieces


def pack_units(units: Sequence[tuple[int, int]], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily pack consecutive token spans into passages of at most ``budget`` tokens.

    Each new passage repeats the trailing whole units of the previous one that total at most
    ``overlap`` tokens; when even the last unit is longer, its last ``overlap`` tokens. Passages
    therefore end on sentence boundaries and a fact cut by a boundary is still whole in one of them.
    """
    passages: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for unit in units:
        if current and unit[1] - current[0][0] > budget:
            passages.append((current[0][0], current[-1][1]))
            carried: list[tuple[int, int]] = []
            for prev in reversed(current):
                if current[-1][1] - prev[0] > overlap or unit[1] - prev[0] > budget:
                    break
                carried.insert(0, prev)
            last_end = current[-1][1]
            if not carried and overlap > 0 and unit[1] - (last_end - overlap) <= budget:
                carried = [(max(current[-1][0], last_end - overlap), last_end)]
            current = carried
        current.append(unit)
    if current:
        passages.append((current[0][0], current[-1][1]))
    return passages


def _pack_pages(
    units: Sequence[tuple[int, int]],
    offsets: Sequence[tuple[int, int]],
    pages: Sequence[int],
    budget: int,
    overlap: int,
) -> list[tuple[int, int]]:
    """:func:`pack_units` page by page (no passage spans two pages, none overlaps the last page's)."""
    if not pages:
        return pack_units(units, budget, overlap)
    by_page: dict[int | None, list[tuple[int, int]]] = {}
    for unit in units:
        by_page.setdefault(page_at(pages, offsets[unit[0]][0]), []).append(unit)
    return [span for page_units in by_page.values() for span in pack_units(page_units, budget, overlap)]


def chunk_documents(
    documents: Sequence[Document],
    tokenizer: Any,
    max_tokens: int = 256,
    overlap: int = 32,
    min_tokens: int = 32,
    *,
    collection: str = "default",
) -> list[list[Chunk]]:
    """Chunk each document with the encoder's own tokenizer; one list of passages per document.

    ``max_tokens`` counts word pieces including the two special tokens and the title, which is
    encoded with every passage.
    """
    result: list[list[Chunk]] = []
    for batch_start in range(0, len(documents), _TOKENIZE_BATCH):
        batch = documents[batch_start : batch_start + _TOKENIZE_BATCH]
        texts = tokenizer([d.text for d in batch], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        titles = tokenizer([d.title for d in batch], add_special_tokens=False, verbose=False)
        for i, doc in enumerate(batch):
            offsets = texts["offset_mapping"][i]
            if not offsets:
                raise InputError(f"document {doc.id!r} has no text to index")
            # The title and a separator newline take part of every passage's budget.
            budget = max(min_tokens, max_tokens - _SPECIAL_TOKENS - len(titles["input_ids"][i]) - 1)
            pages = doc.metadata.get(PAGE_OFFSETS) or []
            # a page starts a sentence, and a passage: so a citation's page is where its words are
            starts = sorted(set(sentence_starts(doc.text)) | set(pages))
            units = _sentence_units(offsets, starts, budget)
            chunks = []
            for ordinal, (tok_start, tok_end) in enumerate(_pack_pages(units, offsets, pages, budget, overlap)):
                char_start, char_end = offsets[tok_start][0], offsets[tok_end - 1][1]
                text = doc.text[char_start:char_end]
                chunks.append(
                    Chunk(
                        id=chunk_id(collection, doc.id, ordinal, doc.title, text),
                        document_id=doc.id,
                        ordinal=ordinal,
                        text=text,
                        title=doc.title,
                        token_start=tok_start,
                        token_end=tok_end,
                        char_start=char_start,
                        char_end=char_end,
                        page=page_at(pages, char_start),
                    )
                )
            result.append(chunks)
    return result
