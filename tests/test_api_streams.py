"""A streamed answer whose client goes away, through a real ``rag serve`` with the bundled llama.cpp model:
the stream is closed, the model is free for the next request, and /metrics counts the disconnect."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Server, start_api

pytestmark = pytest.mark.slow
KEY = "streams-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api-streams")
    env = {
        "RAG_API_KEYS": KEY,
        "RAG_API_RATE_LIMIT_PER_S": "0",
        "RAG_MAX_ANSWER_TOKENS": "400",  # an abandoned answer left running would hold the model for long
        "RAG_LOCAL_CONTEXT_TOKENS": "1536",
        # long enough for a whole 400-token answer on a busy 2-core CI machine (45 s was not, once); a
        # model still held by the abandoned stream never lets go, so the 504 it caused stays a failure
        "RAG_API_REQUEST_TIMEOUT_S": "150",
    }
    srv = start_api(root / "index", root / "server.log", env)
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        docs = [
            {"id": "rrf", "title": "Fusion", "text": "Reciprocal rank fusion sums 1/(k + rank) over the rankings."},
            {"id": "maxsim", "title": "MaxSim", "text": "MaxSim adds, per query token, its best document token."},
        ]
        job = c.post("/documents", json={"documents": docs}, headers={"X-API-Key": KEY}).json()
        while c.get(f"/jobs/{job['id']}", headers={"X-API-Key": KEY}).json()["status"] not in ("succeeded", "failed"):
            time.sleep(0.5)
    yield srv
    srv.stop()


def _read_the_hits_then_hang_up(server: Server) -> None:
    """A raw HTTP client (so nothing closes politely for it): the retrieval event, then the socket goes
    while the model is still reading its prompt (answers are a few words now, so hanging up after some
    tokens would often be after the last)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    body = b'{"question": "Write a long essay about how rank fusion works, in detail.", "stream": true}'
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"event: retrieval" not in received:
            chunk = sock.recv(4096)
            assert chunk, received[-500:]
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST


def test_a_dropped_stream_frees_the_model_for_the_next_answer(server: Server) -> None:
    _read_the_hits_then_hang_up(server)
    with httpx.Client(base_url=server.base_url, timeout=180) as c:
        r = c.post("/query", json={"question": "What does MaxSim add?", "top_k": 2})
        assert r.status_code == 200, r.text  # before: 504, the lock held by the abandoned stream
        assert r.json()["answer"]
        deadline = time.monotonic() + 30
        while "rag_stream_disconnects_total 1.0" not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the disconnect was never counted"
            time.sleep(0.5)
