"""What a hit of the API carries into a framework's document objects and MCP results."""

from __future__ import annotations

from typing import Any

_FIELDS = ("doc_id", "chunk_id", "collection", "title", "url", "source", "date")


def where_from(fields: dict[str, Any]) -> str:
    """How to cite it: the title (else the document id), its page, and its date."""
    label = fields.get("title") or fields["doc_id"]
    if fields.get("page") is not None:
        label += f", p. {fields['page']}"
    if fields.get("date"):
        label += f" ({str(fields['date'])[:10]})"
    return label


def hit_metadata(hit: dict[str, Any]) -> dict[str, Any]:
    """The hit's document fields, its page, its final score, and its rank and score on every stage."""
    metadata = {name: hit[name] for name in _FIELDS}
    metadata["page"] = hit.get("page")
    metadata["score"] = hit["score"]
    metadata["ranks"] = dict(hit["ranks"])
    metadata["scores"] = dict(hit["scores"])
    metadata["citation"] = where_from(metadata)
    return metadata


def search_payload(query: str, collection: str | None, top_k: int) -> dict[str, Any]:
    """A retrieval-only ``/query`` body."""
    return {"question": query, "top_k": top_k, "generate": False, "collection": collection}
