"""Frozen data objects passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A source document as loaded, before chunking."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    url: str = ""
    date: str = ""  # ISO 8601 (YYYY-MM-DD or full timestamp) or empty
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
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

    @property
    def encoded_text(self) -> str:
        """What the encoder and BM25 see: the title, then the passage."""
        return f"{self.title}\n{self.text}" if self.title else self.text
