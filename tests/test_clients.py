"""The clients users already have, against a real ``rag serve`` on loopback with the bundled model: the
official ``openai`` package on /v1, the ``mcp`` SDK's client over stdio and streamable HTTP (``rag mcp``),
and the LangChain and LlamaIndex retrievers of ``connect/``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from connect.client import ApiClient
from tests.servers import Server, free_port, rag_command, start_api, start_server

pytestmark = pytest.mark.slow
WRITE_KEY = "clients-write-key"
READ_KEY = "clients-read-key"
DOCUMENTS = [
    {
        "id": "lighthouse",
        "title": "The Brightwater lighthouse",
        "text": "The Brightwater lighthouse was built in 1871 on Gull Point. Its lamp is visible for 22 nautical "
        "miles. The keeper's cottage beside it is now a small museum of shipwrecks.",
    },
    {
        "id": "bakery",
        "title": "Marlow's bakery",
        "text": "Marlow's bakery on Quay Street opens at six every morning. It is known for rye bread baked in a "
        "wood-fired oven that dates from 1903.",
    },
    {
        "id": "ferry",
        "title": "The island ferry",
        "text": "The ferry to Holm Island leaves the harbour every two hours in summer. The crossing takes 40 "
        "minutes, and bicycles travel free.",
    },
]
QUESTION = "In what year was the Brightwater lighthouse built?"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("clients")
    env = {
        "RAG_API_KEYS": f"{WRITE_KEY},{READ_KEY}:read",
        "RAG_API_RATE_LIMIT_PER_S": "0",
        "RAG_API_REQUEST_TIMEOUT_S": "120",
        # the default model, whose answers cite (SmolLM2, the other tests' model, rarely does); without the
        # answerability check, which has tests of its own, an answer takes seconds, not twenty
        "RAG_LOCAL_MODEL": "qwen2.5-coder-1.5b",
        "RAG_ANSWERABILITY_CHECK": "false",
    }
    srv = start_api(root / "index", root / "server.log", env)
    client = ApiClient(srv.base_url, WRITE_KEY)
    job = client.wait(client.add_documents(DOCUMENTS, "default")["id"], timeout_s=300)
    client.close()
    assert job["status"] == "succeeded", job
    yield srv
    srv.stop()


def _openai(server: Server, key: str = READ_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=180)


# --- OpenAI-compatible routes ---------------------------------------------------------------------------


def test_the_models_are_the_collections(server: Server) -> None:
    ids = [m.id for m in _openai(server).models.list()]
    assert ids == ["rag", "rag:default"]


def test_openai_sdk_gets_a_cited_answer(server: Server) -> None:
    completion = _openai(server).chat.completions.create(
        model="rag:default",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": QUESTION},
        ],
    )
    answer = completion.choices[0].message.content or ""
    assert "1871" in answer
    extra = completion.model_extra or {}
    cited = [c["doc_id"] for c in extra["citations"]]
    assert cited and set(cited) == {"lighthouse"}, (answer, extra["citations"])
    assert f"[{extra['citations'][0]['number']}]" in answer
    assert extra["rag"]["status"] == "cited" and extra["rag"]["hits"][0]["doc_id"] == "lighthouse"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.choices[0].finish_reason == "stop" and completion.model == "rag:default"


def test_openai_sdk_streams_the_answer_and_ends_with_its_citations(server: Server) -> None:
    stream = _openai(server).chat.completions.create(
        model="rag",
        messages=[
            {"role": "user", "content": "Which island does the ferry go to?"},
            {"role": "assistant", "content": "The ferry goes to Holm Island."},
            {"role": "user", "content": QUESTION},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1871" in text
    closing = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    citations = (closing.model_extra or {})["citations"]
    assert [c["doc_id"] for c in citations] == ["lighthouse"]
    assert f"[{citations[0]['number']}]" in text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_the_raw_stream_is_openais_format_ending_with_done(server: Server) -> None:
    body = {"model": "rag", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=180) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_openai_errors_come_in_openais_shape(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        _openai(server, "not-a-key").chat.completions.create(
            model="rag", messages=[{"role": "user", "content": QUESTION}]
        )
    error = bad_key.value.body
    assert isinstance(error, dict) and error["type"] == "authentication_error" and error["code"] == "unauthorized"
    with pytest.raises(openai.NotFoundError) as no_model:
        _openai(server).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert "rag:<collection>" in str(no_model.value)
    with pytest.raises(openai.NotFoundError):
        _openai(server).chat.completions.create(model="rag:nowhere", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as not_a_question:
        _openai(server).chat.completions.create(model="rag", messages=[{"role": "assistant", "content": "hi"}])
    assert "last message must be the user's question" in str(not_a_question.value)
    with pytest.raises(openai.BadRequestError):
        _openai(server).chat.completions.create(model="rag", n=2, messages=[{"role": "user", "content": QUESTION}])
    raw = httpx.post(f"{server.base_url}/v1/chat/completions", json={"model": "rag"}, timeout=30)
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert raw.headers["x-request-id"] in raw.json()["error"]["message"]


# --- MCP ----------------------------------------------------------------------------------------------


def _tool_result(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    structured: dict[str, Any] = result.structured_content
    return structured


async def _stdio_session_run(server: Server, key: str, ask: bool) -> dict[str, Any]:
    params = StdioServerParameters(
        command=rag_command()[0],
        args=[*rag_command()[1:], "mcp"],
        env={**os.environ, "RAG_API_URL": server.base_url, "RAG_API_KEY": key},
    )
    seen: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        seen["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
        seen["search"] = _tool_result(await session.call_tool("search", {"query": "lighthouse lamp", "top_k": 2}))
        seen["document"] = _tool_result(await session.call_tool("get_document", {"doc_id": "bakery"}))
        if ask:
            seen["ask"] = _tool_result(await session.call_tool("ask", {"question": QUESTION}))
        note = {"id": "tides", "title": "Tide table", "text": "High tide at Gull Point is at 14:20 on Sundays."}
        seen["add"] = await session.call_tool("add_documents", {"documents": [note], "collection": "mcp"})
    return seen


def test_mcp_over_stdio_lists_and_calls_the_tools(server: Server) -> None:
    seen = asyncio.run(_stdio_session_run(server, READ_KEY, ask=True))
    assert seen["tools"] == ["add_documents", "ask", "get_document", "search"]
    hits = seen["search"]["hits"]
    assert hits[0]["doc_id"] == "lighthouse" and hits[0]["rank"] == 1
    assert {"dense", "bm25"} <= set(hits[0]["ranks"]) and hits[0]["snippet"].startswith("The Brightwater")
    assert seen["document"]["title"] == "Marlow's bakery" and seen["document"]["chunks"][0]["text"]
    assert "1871" in seen["ask"]["answer"] and [c["doc_id"] for c in seen["ask"]["citations"]] == ["lighthouse"]
    refused = seen["add"]  # a read key: the write tool answers the API's refusal, and writes nothing
    assert refused.is_error and "403" in refused.content[0].text and "may only read" in refused.content[0].text


def test_mcp_over_stdio_adds_documents_with_a_write_key(server: Server) -> None:
    seen = asyncio.run(_stdio_session_run(server, WRITE_KEY, ask=False))
    assert _tool_result(seen["add"])["status"] == "succeeded"
    query = {"question": "high tide Gull Point", "collection": "mcp", "generate": False}
    assert ApiClient(server.base_url).query(query)["hits"][0]["doc_id"] == "tides"


def test_mcp_over_streamable_http_uses_the_callers_key(server: Server, tmp_path) -> None:
    port = free_port()
    argv = [*rag_command(), "mcp", "--transport", "http", "--port", str(port)]
    env = {"RAG_API_URL": server.base_url, "RAG_API_KEY": WRITE_KEY}  # never lent to HTTP callers
    mcp_server = start_server(
        argv, f"http://127.0.0.1:{port}/mcp", tmp_path / "mcp.log", env, ok_statuses=(400, 405, 406)
    )

    async def run(headers: dict[str, str]) -> tuple[list[str], Any, Any]:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            search = await session.call_tool("search", {"query": "rye bread oven"})
            note = {"id": "http-note", "text": "Anonymous notes must not be written."}
            add = await session.call_tool("add_documents", {"documents": [note], "collection": "http"})
            return tools, search, add

    try:
        tools, search, add = asyncio.run(run({}))
        assert "search" in tools and _tool_result(search)["hits"][0]["doc_id"] == "bakery"
        assert add.is_error and "401" in add.content[0].text  # the process's own write key was not used
        _, _, add = asyncio.run(run({"Authorization": f"Bearer {WRITE_KEY}"}))
        assert _tool_result(add)["status"] == "succeeded"
    finally:
        mcp_server.stop()


# --- framework retrievers ------------------------------------------------------------------------------


def test_langchain_retriever_returns_documents_with_scores_and_citations(server: Server) -> None:
    from langchain_core.documents import Document

    from connect.langchain import RagRetriever

    docs = RagRetriever(api_url=server.base_url, api_key=READ_KEY, top_k=2).invoke("When does the bakery open?")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["doc_id"] == "bakery" and "opens at six" in docs[0].page_content
    assert docs[0].metadata["citation"] == "Marlow's bakery" and docs[0].id == docs[0].metadata["chunk_id"]
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]
    assert set(docs[0].metadata["ranks"]) >= {"dense", "bm25", "rrf"}


def test_llama_index_retriever_returns_scored_nodes(server: Server) -> None:
    from llama_index.core.schema import NodeWithScore

    from connect.llama_index import RagRetriever

    nodes = RagRetriever(api_url=server.base_url, top_k=3).retrieve("How long is the ferry crossing?")
    assert len(nodes) == 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.metadata["doc_id"] == "ferry" and "40 minutes" in nodes[0].node.get_content()
    metadata = nodes[0].node.metadata
    assert nodes[0].score == metadata["score"] and nodes[0].node.node_id == metadata["chunk_id"]


# --- documents in --------------------------------------------------------------------------------------


def test_an_uploaded_pdf_is_cited_with_its_page_and_a_scan_is_refused(server: Server) -> None:
    from tests.test_document_formats import PAGES, _pdf, _scanned_pdf

    writer = ApiClient(server.base_url, WRITE_KEY)
    job = writer.wait(writer.upload("harbour.pdf", _pdf(PAGES), "pdfs")["id"], timeout_s=300)
    assert job["status"] == "succeeded", job
    completion = _openai(server).chat.completions.create(
        model="rag:pdfs",
        messages=[{"role": "user", "content": "Which day does the night ferry carry mail to the northern islands?"}],
    )
    citations = (completion.model_extra or {})["citations"]
    assert citations and citations[0]["doc_id"] == "harbour.pdf" and citations[0]["page"] == 2, citations
    refused = httpx.post(
        f"{server.base_url}/documents",
        files={"file": ("scan.pdf", _scanned_pdf())},
        data={"collection": "pdfs"},
        headers={"X-API-Key": WRITE_KEY},
    )
    assert refused.status_code == 400 and "scan.pdf: the PDF has no text layer" in refused.json()["message"]
    writer.close()
