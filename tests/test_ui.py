"""The chat page's logic through streamlit.testing's AppTest, against a real API on 127.0.0.1."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.servers import Server, free_port
from tests.ui_fixtures import api  # noqa: F401 - the fixture
from ui.views import citation_label, evidence_for, filters_payload, inspector_rows, stage_timings, status_note

pytestmark = pytest.mark.slow
APP = str(ROOT / "ui" / "app.py")


def page(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    monkeypatch.setenv("RAG_API_URL", url)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_views_turn_api_answers_into_rows() -> None:
    hit = {"doc_id": "d1", "title": "T", "ranks": {"bm25": 2, "rrf": 1, "maxsim": 1},
           "scores": {"bm25": 3.5, "rrf": 0.03, "maxsim": 9.1}}  # fmt: skip
    row = inspector_rows([hit], ["bm25", "dense", "rrf", "maxsim", "a-stage-the-ui-never-heard-of"])[0]
    assert row["bm25 rank"] == 2 and row["dense rank"] is None and row["maxsim score"] == 9.1
    assert row["a-stage-the-ui-never-heard-of rank"] is None  # the API's stages are the columns
    assert stage_timings({"encode": 1.234, "total": 9.0, "first_token": 3.0}) == {"encode": 1.23}
    citation = {"number": 2, "chunk_id": "c", "title": "", "doc_id": "d1", "date": "2020-05-01T00:00"}
    assert citation_label(citation) == "[2] d1 (2020-05-01)"
    assert citation_label({**citation, "title": "Manual", "page": 7}) == "[2] Manual, p. 7 (2020-05-01)"
    assert evidence_for({"evidence": [{"number": 2, "chunk_id": "c"}]}, citation) == {"number": 2, "chunk_id": "c"}
    assert filters_payload(" a, b ,", "", "2020-01-01") == {"sources": ["a", "b"], "date_to": "2020-01-01"}
    assert filters_payload("", " ", "") is None


def test_sidebar_shows_the_api_and_its_collections(monkeypatch: pytest.MonkeyPatch, api: Server) -> None:  # noqa: F811
    at = page(monkeypatch, api.base_url)
    assert any(api.base_url in c.value for c in at.sidebar.caption)
    assert "index ready: 12 documents" in at.sidebar.success[0].value
    assert at.sidebar.selectbox[0].options == ["(all collections)", "default", "papers"]


def test_a_question_streams_an_answer_with_citations(monkeypatch: pytest.MonkeyPatch, api: Server) -> None:  # noqa: F811
    at = page(monkeypatch, api.base_url)
    at.chat_input[0].set_value("What do the studies say about microstructural development of the brain?").run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    history = at.session_state["messages"]
    answer = history[-1]
    assert answer["content"].strip() and answer["content"] == answer["answer"]["answer"]
    assert bool(answer["answer"]["citations"]) == (answer["answer"]["status"] == "cited")
    if answer["answer"]["status"] != "cited":  # said so under the answer, never passed off as cited
        assert any(c.value == status_note(answer["answer"]) for c in at.caption)
    labels = [e.label for e in at.expander]
    cited = [f"[{c['number']}] " for c in answer["answer"]["citations"]]
    assert all(any(label.startswith(c) for label in labels) for c in cited)  # each citation opens its evidence
    assert any("Retrieval inspector" in lb for lb in labels)
    assert len(at.dataframe) == 1
    # the history stays: a second run shows the same two turns
    at.run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]


def test_retrieval_only_in_one_collection(monkeypatch: pytest.MonkeyPatch, api: Server) -> None:  # noqa: F811
    at = page(monkeypatch, api.base_url)
    at.sidebar.selectbox[0].select("papers")
    at.sidebar.radio[0].set_value("none (retrieval only)")
    at.chat_input[0].set_value("brain development in preterm infants").run()
    answer = at.session_state["messages"][-1]
    assert answer["content"].startswith("Retrieval only") and answer["hits"]
    assert {h["collection"] for h in answer["hits"]} == {"papers"}


def test_a_generator_the_server_lacks_is_said_plainly(monkeypatch: pytest.MonkeyPatch, api: Server) -> None:  # noqa: F811
    at = page(monkeypatch, api.base_url)
    at.sidebar.radio[0].set_value("remote")
    at.chat_input[0].set_value("brain development").run()
    assert not at.exception
    assert any("no remote generator" in w.value for w in at.warning)
    at.sidebar.radio[0].set_value("local").run()  # the page keeps working
    assert at.sidebar.success and not at.exception


def test_api_down_is_said_plainly_and_the_page_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    at = page(monkeypatch, dead)
    assert "not reachable" in at.sidebar.error[0].value
    at.chat_input[0].set_value("anything").run()
    assert not at.exception
    assert "not reachable" in at.session_state["messages"][-1]["error"]
    assert any("not reachable" in w.value for w in at.warning)
