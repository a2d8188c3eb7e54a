"""Pure helpers that turn API answers into what the page shows (tested without Streamlit)."""

from __future__ import annotations

from typing import Any

from connect.hits import where_from


def inspector_rows(hits: list[dict[str, Any]], stages: list[str]) -> list[dict[str, Any]]:
    """One row per hit: its rank and score on every stage the API says ranked (None where one missed it)."""
    rows = []
    for position, hit in enumerate(hits, start=1):
        row: dict[str, Any] = {"#": position, "doc": hit["doc_id"], "title": hit["title"][:60]}
        for stage in stages:
            row[f"{stage} rank"] = hit["ranks"].get(stage)
            score = hit["scores"].get(stage)
            row[f"{stage} score"] = None if score is None else round(score, 4)
        rows.append(row)
    return rows


def stage_timings(timings: dict[str, float]) -> dict[str, float]:
    """Per-stage milliseconds worth charting (totals and first-token marks left out)."""
    skip = {"retrieval_total", "total", "first_token"}
    return {stage: round(ms, 2) for stage, ms in timings.items() if stage not in skip}


def evidence_for(answer: dict[str, Any], citation: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence a citation points at (by its number, else by chunk)."""
    for evidence in answer.get("evidence", []):
        if evidence["number"] == citation["number"] or evidence["chunk_id"] == citation["chunk_id"]:
            return evidence
    return None


def citation_label(citation: dict[str, Any]) -> str:
    return f"[{citation['number']}] {where_from(citation)}"


def filters_payload(sources: str, date_from: str, date_to: str) -> dict[str, Any] | None:
    """The query's ``filters`` from the sidebar's fields; None when nothing is filtered."""
    names = [s.strip() for s in sources.split(",") if s.strip()]
    filters: dict[str, Any] = {}
    if names:
        filters["sources"] = names
    if date_from.strip():
        filters["date_from"] = date_from.strip()
    if date_to.strip():
        filters["date_to"] = date_to.strip()
    return filters or None


STATUS_NOTES = {
    "uncited": "This answer cites no evidence: check it against the passages below.",
    "abstained": "The retrieved passages do not hold the answer.",
}


def status_note(answer: dict[str, Any]) -> str:
    """What to say under an answer that is not a cited one (empty when it is, or for retrieval only)."""
    return STATUS_NOTES.get(str(answer.get("status", "")), "")
