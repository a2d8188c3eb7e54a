"""The HTTP contract is the API's own models, mapped from the library's objects in one place."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from api.schemas import HitOut, QueryOut, query_out
from rag.objects import Answer, Citation, Evidence, Hit, Stage


def _answer() -> Answer:
    hit = Hit(chunk_id="c1", doc_id="d1", text="text", collection="default", score=0.5, ranks={"rrf": 1}, title="T")
    evidence = Evidence(
        number=1, chunk_id="c1", doc_id="d1", collection="default", snippet="text", highlight="text", title="T"
    )
    citation = Citation(
        number=1, chunk_id="c1", doc_id="d1", collection="default", how="model", title="T", date="2020-01-01"
    )
    return Answer(
        question="q",
        answer="a [1]",
        citations=[citation],
        hits=[hit],
        evidence=[evidence],
        timings_ms={"total": 1.0},
        generator="local:x",
        stages=[Stage.DENSE, Stage.BM25, Stage.RRF],
        final_stage=Stage.RRF,
    )


def test_an_answer_maps_to_the_published_body() -> None:
    body = query_out(_answer(), generation=3).model_dump()
    assert set(body) == set(QueryOut.model_fields)
    assert body["timings"] == {"total": 1.0} and body["generation"] == 3 and body["final_stage"] == "rrf"
    assert body["hits"][0]["ranks"] == {"rrf": 1} and body["citations"][0]["how"] == "model"
    assert body["citations"][0]["date"] == "2020-01-01" and body["evidence"][0]["title"] == "T"


def test_a_library_field_renamed_fails_the_mapping_instead_of_changing_the_api() -> None:
    @dataclass(frozen=True)
    class RenamedHit:  # Hit with ``doc_id`` renamed
        chunk_id: str
        document_id: str
        text: str
        collection: str
        score: float
        ranks: dict
        scores: dict
        rrf_contributions: dict
        title: str = ""
        source: str = ""
        url: str = ""
        date: str = ""

    with pytest.raises(ValidationError, match="doc_id"):
        HitOut.model_validate(RenamedHit("c", "d", "t", "x", 1.0, {}, {}, {}), from_attributes=True)
