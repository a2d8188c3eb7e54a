"""Two ``rag serve`` replicas on one index folder and one PostgreSQL store share one job queue: a job
accepted by either is seen and can be cancelled from both, runs once, and is run again by the other
when its runner is killed. ``rag serve --workers 2`` on the default SQLite store does the same with the
queue's files in ``DIR/jobs``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import read_jsonl
from tests.servers import Server, start_api

pytestmark = pytest.mark.slow

KEY = "replica-key"
HEADERS = {"X-API-Key": KEY}


def _batch(rows: list[dict]) -> dict:
    return {"documents": [{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows]}


def _job(server: Server, job_id: str) -> dict:
    response = httpx.get(f"{server.base_url}/jobs/{job_id}", headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _wait(server: Server, job_id: str, until: tuple[str, ...], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := _job(server, job_id))["status"] not in until:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    return state


def _wait_running(server: Server, job_id: str, passages: int) -> dict:
    """Until the stored record shows the job running with at least ``passages`` encoded."""
    deadline = time.monotonic() + 300
    while (state := _job(server, job_id))["passages_done"] < passages or state["status"] != "running":
        assert time.monotonic() < deadline and state["status"] in ("queued", "running"), state
        time.sleep(0.1)
    return state


def _pid(server: Server) -> int:
    return server.proc.pid


@pytest.fixture()
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[list[Server]]:
    env = {"RAG_STORE_URL": postgres_url, "RAG_API_KEYS": KEY, "RAG_API_RATE_LIMIT_PER_S": "0"}
    index = tmp_path / "index"
    servers = [start_api(index, tmp_path / "a.log", env)]
    try:
        servers.append(start_api(index, tmp_path / "b.log", env))
        yield servers
    finally:
        for server in servers:
            server.kill()


def test_replicas_share_one_job_queue(replicas: list[Server], scifact_dir: Path) -> None:
    a, b = replicas
    rows = read_jsonl(scifact_dir / "corpus.jsonl", limit=430)

    # Accepted by A, seen by B, succeeds once; B answers from the snapshot it committed.
    small = httpx.post(f"{a.base_url}/documents", json=_batch(rows[:20]), headers=HEADERS, timeout=60).json()
    done = _wait(b, small["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["result"]["added"] == 20, done
    assert done["runner"].endswith(f":{_pid(a)}") or done["runner"].endswith(f":{_pid(b)}")
    probe = rows[7]
    deadline = time.monotonic() + 30
    while True:  # B notices the new commit on its next query
        question = {"question": probe["title"], "generate": False}
        hits = httpx.post(f"{b.base_url}/query", json=question, timeout=60).json()
        if any(h["doc_id"] == probe["_id"] for h in hits["hits"]):
            break
        assert time.monotonic() < deadline, hits
        time.sleep(0.5)

    # Cancelled from the replica that does not run it: it stops before its commit.
    big = httpx.post(f"{b.base_url}/documents", json=_batch(rows[20:220]), headers=HEADERS, timeout=60).json()
    running = _wait_running(a, big["id"], passages=20)
    runner, other = (a, b) if running["runner"].endswith(f":{_pid(a)}") else (b, a)
    response = httpx.delete(f"{other.base_url}/jobs/{big['id']}", headers=HEADERS, timeout=30)
    assert response.status_code == 202, response.text
    stopped = _wait(runner, big["id"], ("cancelled", "succeeded", "failed"))
    assert stopped["status"] == "cancelled" and stopped["passages_done"] < stopped["passages_total"], stopped
    assert httpx.get(f"{runner.base_url}/documents/{rows[30]['_id']}", timeout=30).status_code == 404

    # Its runner killed mid-encoding, the job is run again by the survivor, and a job queued behind it
    # on the dead replica runs after it, in the order accepted.
    third = httpx.post(f"{a.base_url}/documents", json=_batch(rows[220:430]), headers=HEADERS, timeout=60).json()
    behind = httpx.delete(f"{a.base_url}/documents/{rows[0]['_id']}", headers=HEADERS, timeout=60)
    assert behind.status_code == 202, behind.text
    running = _wait_running(a, third["id"], passages=40)
    victim, survivor = (a, b) if running["runner"].endswith(f":{_pid(a)}") else (b, a)
    victim.kill()
    resumed = _wait(survivor, third["id"], ("succeeded", "failed"))
    assert resumed["status"] == "succeeded" and resumed["attempts"] == 2, resumed
    assert resumed["runner"].endswith(f":{_pid(survivor)}") and resumed["result"]["added"] == 210, resumed
    assert "resumed" in resumed["message"]
    after = _wait(survivor, behind.json()["id"], ("succeeded", "failed"))
    assert after["status"] == "succeeded" and after["started_at"] >= resumed["finished_at"], after
    assert httpx.get(f"{survivor.base_url}/documents/{rows[0]['_id']}", timeout=30).status_code == 404
    for row in rows[220:430:30]:
        doc = httpx.get(f"{survivor.base_url}/documents/{row['_id']}", timeout=30).json()
        assert doc["n_chunks"] == len(doc["chunks"]) >= 1


def test_workers_share_the_snapshot_and_the_job_queue(tmp_path: Path, scifact_dir: Path) -> None:
    rows = read_jsonl(scifact_dir / "corpus.jsonl", limit=240)
    env = {"RAG_API_KEYS": KEY, "RAG_API_RATE_LIMIT_PER_S": "0"}
    server = start_api(tmp_path / "index", tmp_path / "serve.log", env, args=["--workers", "2"])
    try:
        url = server.base_url
        small = httpx.post(f"{url}/documents", json=_batch(rows[:20]), headers=HEADERS, timeout=60).json()
        assert _wait(server, small["id"], ("succeeded", "failed"))["status"] == "succeeded"
        generations = set()
        for _ in range(12):  # a new connection each time: both workers answer, from the new snapshot
            body = {"question": rows[5]["title"], "generate": False}
            answer = httpx.post(f"{url}/query", json=body, timeout=60).json()
            assert answer["hits"][0]["doc_id"] == rows[5]["_id"], answer["hits"][0]
            generations.add(answer["generation"])
        assert generations == {2}

        big = httpx.post(f"{url}/documents", json=_batch(rows[20:240]), headers=HEADERS, timeout=60).json()
        running = _wait_running(server, big["id"], passages=40)
        runner_pid = int(running["runner"].rsplit(":", 1)[1])
        assert runner_pid != server.proc.pid  # a worker runs it, not the supervisor
        os.kill(runner_pid, signal.SIGKILL)
        resumed = _wait(server, big["id"], ("succeeded", "failed"))
        assert resumed["status"] == "succeeded" and resumed["attempts"] == 2, resumed
        assert resumed["runner"] != running["runner"] and resumed["result"]["added"] == 220, resumed
        for row in rows[20:240:40]:
            doc = httpx.get(f"{url}/documents/{row['_id']}", timeout=30).json()
            assert doc["n_chunks"] == len(doc["chunks"]) >= 1
    finally:
        server.stop()
