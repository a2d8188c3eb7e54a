"""The review's defects 3, 5 and 6, each reproduced through a real ``rag serve`` on 127.0.0.1 (SQLite store):
jobs that can be cancelled and documents with a size limit, key roles and scopes, and the edges of HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import read_jsonl
from tests.servers import Server, start_api

pytestmark = pytest.mark.slow

WRITER, OTHER, READER, ADMIN = "sec-writer", "sec-other", "sec-reader", "sec-admin"
ORIGIN = "http://app.example"


def _key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api-security")
    env = {
        "RAG_API_KEYS": f"{WRITER},{OTHER},{READER}:news:read,{ADMIN}:admin",
        "RAG_API_MAX_UPLOAD_BYTES": "1000000",
        "RAG_API_MAX_DOCUMENT_BYTES": "20000",
        "RAG_API_RATE_LIMIT_PER_S": "20",
        "RAG_API_RATE_BURST": "40",
        "RAG_API_AUTH_FAILURE_BURST": "3",
        "RAG_API_AUTH_FAILURE_PER_S": "0.01",
        "RAG_API_CORS_ORIGINS": ORIGIN,
    }
    srv = start_api(root / "index", root / "server.log", env)
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        docs = [{"id": "news-1", "text": "Reciprocal rank fusion sums one over k plus rank over the rankings."}]
        job = c.post("/documents", json={"collection": "news", "documents": docs}, headers=_key(WRITER)).json()
        _wait(c, job["id"], WRITER)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


def _wait(client: httpx.Client, job_id: str, key: str, until: tuple[str, ...] = ("succeeded", "failed")) -> dict:
    deadline = time.monotonic() + 300
    while (job := client.get(f"/jobs/{job_id}", headers=_key(key)).json())["status"] not in until:
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_a_long_job_shows_its_eta_and_can_be_cancelled(client: httpx.Client, scifact_dir: Path) -> None:
    """Defect 3: one large upload held the only job worker with no way to stop it."""
    rows = read_jsonl(scifact_dir / "corpus.jsonl", limit=400)[100:400]
    docs = [{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows]
    before = client.get("/readyz").json()
    big = client.post("/documents", json={"documents": docs[:200]}, headers=_key(WRITER)).json()
    queued = client.post("/documents", json={"documents": docs[200:]}, headers=_key(WRITER)).json()
    running = _wait(client, big["id"], WRITER, until=("running",))
    deadline = time.monotonic() + 120
    while not (running := client.get(f"/jobs/{big['id']}", headers=_key(WRITER)).json())["passages_done"]:
        assert time.monotonic() < deadline, running
        time.sleep(0.2)
    assert running["passages_total"] > running["passages_done"] > 0 and running["eta_s"] > 0
    # the queued one goes at once, without running; another writer cannot touch either
    assert client.delete(f"/jobs/{queued['id']}", headers=_key(OTHER)).status_code == 404
    cancelled = client.delete(f"/jobs/{queued['id']}", headers=_key(WRITER))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/jobs/{big['id']}", headers=_key(WRITER)).status_code == 202
    stopped = _wait(client, big["id"], WRITER, until=("cancelled", "succeeded", "failed"))
    assert stopped["status"] == "cancelled" and stopped["passages_done"] < stopped["passages_total"]
    assert client.get(f"/jobs/{queued['id']}", headers=_key(WRITER)).json()["status"] == "cancelled"
    after = client.get("/readyz").json()
    assert (after["generation"], after["documents"]) == (before["generation"], before["documents"])
    assert client.delete(f"/jobs/{big['id']}", headers=_key(WRITER)).status_code == 409  # finished


def test_one_document_over_the_size_limit_is_refused_with_413(client: httpx.Client) -> None:
    body = {"documents": [{"id": "huge", "text": "word " * 5000}]}
    r = client.post("/documents", json=body, headers=_key(WRITER))
    assert r.status_code == 413 and "RAG_API_MAX_DOCUMENT_BYTES" in r.json()["message"]


def test_roles_and_scopes(client: httpx.Client, server: Server) -> None:
    """Defect 5: no read-only key, jobs visible to anyone, collection limits silently open to anonymous reads."""
    doc = {"documents": [{"id": "n2", "text": "MaxSim sums each query token's best match."}], "collection": "news"}
    r = client.post("/documents", json=doc, headers=_key(READER))
    assert r.status_code == 403 and "only read" in r.json()["message"]
    job = client.post("/documents", json=doc, headers=_key(WRITER)).json()
    _wait(client, job["id"], WRITER)
    for stranger in ({}, _key(READER), _key(OTHER)):
        assert client.get(f"/jobs/{job['id']}", headers=stranger).status_code == 404
    assert client.get(f"/jobs/{job['id']}", headers=_key(ADMIN)).json()["status"] == "succeeded"
    hits = client.post("/query", json={"question": "MaxSim", "generate": False}, headers=_key(READER)).json()["hits"]
    assert hits and {h["collection"] for h in hits} == {"news"}
    assert "QUERIES NEED NO KEY" in server.log()  # said loudly at start-up


def test_wrong_keys_run_out_of_tries(client: httpx.Client) -> None:
    statuses = [client.get("/collections", headers=_key(f"guess-{i}")).status_code for i in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    assert int(client.get("/collections", headers=_key("guess-9")).headers["retry-after"]) >= 1
    assert client.get("/collections", headers=_key(WRITER)).status_code == 200  # the valid key is unaffected


def test_a_key_in_the_url_never_reaches_the_log(client: httpx.Client, server: Server) -> None:
    client.get("/healthz?api_key=leaked-secret-77&x=1")
    time.sleep(0.5)
    assert "leaked-secret-77" not in server.log() and "api_key=[redacted]" in server.log()


def test_http_edges(client: httpx.Client, server: Server) -> None:
    """Defect 6, one edge after another."""

    def sixty_megabytes() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield b'{"question": "'
        for _ in range(60):
            yield b"x" * (1 << 20)
        yield b'"}'

    r = client.post("/query", content=sixty_megabytes(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    files = [("file", ("a.txt", b"one")), ("file", ("b.txt", b"two"))]
    r = client.post("/documents", files=files, data={"collection": "news"}, headers=_key(WRITER))
    assert r.status_code == 422 and "one 'file' part" in r.json()["message"]
    for invisible in ("\u200b\u200b", "\x00", "\u200b\x00\ufeff "):
        r = client.post("/query", json={"question": invisible, "generate": False})
        assert r.status_code == 400 and r.json()["error"] == "invalid_input", (invisible, r.text)
    # a request id: the client's, echoed, in the error body and in the log line
    r = client.get("/documents/nothing-here", headers={"X-Request-ID": "trace-abc-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "trace-abc-123"
    assert r.json()["request_id"] == "trace-abc-123"
    fresh = client.get("/healthz").headers["x-request-id"]
    assert len(fresh) == 32 and fresh != client.get("/healthz").headers["x-request-id"]
    r = client.post("/query", json={"question": "rank fusion", "generate": False})
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    assert client.head("/healthz").status_code == 200
    docs = client.get("/docs").text
    assert "cdn" not in docs and "/static-offline-docs/swagger-ui-bundle.js" in docs
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-API-Key"}
    allowed = client.options("/query", headers={"Origin": ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    denied = client.options("/query", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    time.sleep(0.5)
    assert "[trace-abc-123]" in server.log()


def test_forwarded_for_does_not_reset_the_rate_limit(client: httpx.Client) -> None:
    """Defect 5: each request claimed another address in X-Forwarded-For and got a fresh bucket."""
    statuses = [client.get("/collections", headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(120)]
    assert 429 in statuses, statuses
    assert json.loads(client.get("/collections", headers={"X-Forwarded-For": "10.9.9.9"}).text)["error"] == (
        "rate_limited"
    )
