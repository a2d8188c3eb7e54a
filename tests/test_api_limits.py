"""Limits and failures through a real ``rag serve`` (SQLite store): upload size (413), rate limit (429),
request timeout (504), and a remote generator that hangs or is down (503 that says so, while
``generate=false`` still works)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Server, free_port, start_api

pytestmark = pytest.mark.slow

# Each test has its own key: rate limits count per key.
SETUP_KEY, KEY, GEN_KEY, RATE_KEY = "setup-key", "limits-key", "generator-key", "rate-key"


@pytest.fixture(scope="module")
def silent_llm() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers: a generator that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", free_port()))
    listener.listen(64)
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, silent_llm: socket.socket) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api-limits")
    port = silent_llm.getsockname()[1]
    env = {
        "RAG_API_KEYS": ",".join([SETUP_KEY, KEY, GEN_KEY, RATE_KEY]),
        "RAG_API_MAX_UPLOAD_BYTES": "4096",
        "RAG_API_RATE_LIMIT_PER_S": "1",
        "RAG_API_RATE_BURST": "5",
        "RAG_GENERATOR": "remote",
        "RAG_REMOTE_URL": f"http://127.0.0.1:{port}/v1",
        "RAG_REMOTE_TIMEOUT_S": "1",
        "RAG_REMOTE_RETRIES": "1",  # a hanging generator: 1 s + 0.5 s backoff + 1 s, past the request timeout
        "RAG_API_REQUEST_TIMEOUT_S": "2",
    }
    srv = start_api(root / "index", root / "server.log", env)
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        docs = [
            {"id": "rrf", "text": "Reciprocal rank fusion sums 1/(k + rank) over the rankings.", "date": "2009-07-19"},
            {"id": "maxsim", "text": "MaxSim adds, per query token, its best similarity to a document token."},
        ]
        setup = {"X-API-Key": SETUP_KEY}
        job = c.post("/documents", json={"documents": docs}, headers=setup).json()
        while c.get(f"/jobs/{job['id']}", headers=setup).json()["status"] not in ("succeeded", "failed"):
            time.sleep(1.0)
    yield srv
    srv.stop()


def test_oversized_uploads_answer_413(server: Server) -> None:
    big = {"documents": [{"id": "big", "text": "word " * 2000}]}
    headers = {"X-API-Key": KEY}
    r = httpx.post(f"{server.base_url}/documents", json=big, headers=headers)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    r = httpx.post(f"{server.base_url}/documents", files={"file": ("a.txt", b"x" * 10_000)}, headers=headers)
    assert r.status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(
        f"{server.base_url}/documents", content=chunked(), headers={**headers, "content-type": "application/json"}
    )
    assert r.status_code == 413


def test_generator_that_hangs_or_is_down_answers_503_and_retrieval_still_works(
    server: Server, silent_llm: socket.socket
) -> None:
    headers = {"X-API-Key": GEN_KEY}
    url = f"{server.base_url}/query"
    # streamed (no request timeout): the generator's own timeout, as an error event after the retrieval
    with httpx.stream("POST", url, json={"question": "rank fusion", "stream": True}, headers=headers) as response:
        text = response.read().decode()
    assert response.status_code == 200 and text.startswith("event: retrieval")
    assert "event: error" in text and '"status": 503' in text and "timed out" in text
    # not streamed: the request timeout (2 s) comes first
    r = httpx.post(url, json={"question": "what is rank fusion"}, headers=headers, timeout=60)
    assert r.status_code == 504 and r.json()["error"] == "timeout" and "2 s" in r.json()["message"]
    silent_llm.close()  # now nothing listens: the generator is down
    r = httpx.post(url, json={"question": "what is rank fusion"}, headers=headers, timeout=60)
    assert r.status_code == 503 and r.json()["error"] == "generator_unavailable"
    assert "unreachable" in r.json()["message"]
    r = httpx.post(url, json={"question": "what is rank fusion", "generate": False}, headers=headers)
    assert r.status_code == 200 and r.json()["hits"][0]["doc_id"] == "rrf"


def test_rate_limit_per_key_answers_429_with_retry_after(server: Server) -> None:
    headers = {"X-API-Key": RATE_KEY}
    statuses = [httpx.get(f"{server.base_url}/collections", headers=headers).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    r = httpx.get(f"{server.base_url}/collections", headers=headers)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
    # another key has its own bucket
    assert httpx.get(f"{server.base_url}/collections", headers={"X-API-Key": KEY}).status_code == 200
