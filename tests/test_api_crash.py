"""``kill -9`` of the API in the middle of a document upload job, then a restart: the index loads and
verifies, holds every document whose job reported success, and no half-written document."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from rag.index.snapshot import Snapshot
from rag.settings import Settings
from tests.conftest import read_jsonl
from tests.servers import start_api

pytestmark = pytest.mark.slow

KEY = "crash-key"


def _job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/jobs/{job_id}", headers={"X-API-Key": KEY}).json()


def batch(rows: list[dict]) -> dict:
    return {"documents": [{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows]}


def test_kill_9_during_upload_loses_nothing_that_succeeded(tmp_path: Path, scifact_dir: Path) -> None:
    rows = read_jsonl(scifact_dir / "corpus.jsonl", limit=230)
    first, second = rows[:30], rows[30:230]
    index = tmp_path / "index"
    env = {"RAG_API_KEYS": KEY}
    headers = {"X-API-Key": KEY}
    server = start_api(index, tmp_path / "server.log", env)
    try:
        url = server.base_url
        job1 = httpx.post(f"{url}/documents", json=batch(first), headers=headers).json()
        while (done := _job(url, job1["id"]))["status"] not in (
            "succeeded",
            "failed",
        ):
            time.sleep(0.2)
        assert done["status"] == "succeeded"
        job2 = httpx.post(f"{url}/documents", json=batch(second), headers=headers).json()
        deadline = time.monotonic() + 120
        while (state := _job(url, job2["id"]))["passages_done"] < 40:
            assert time.monotonic() < deadline and state["status"] in ("queued", "running"), state
            time.sleep(0.1)
        server.kill()  # mid-encoding: the second job has neither committed nor failed
    finally:
        server.kill()

    # What is on disk right after the kill: the first job's snapshot, whole.
    snapshot = Snapshot.load(index, Settings(_env_file=None))  # type: ignore[call-arg]
    snapshot.verify()
    live = snapshot.store.live_documents("default", [r["_id"] for r in rows], snapshot.generation)
    assert set(live) == {r["_id"] for r in first}
    record = json.loads((index / "jobs" / f"{job2['id']}.json").read_text())
    assert record["status"] == "running"
    snapshot.store.close()

    # The restart resumes the accepted job; nothing half-written was ever visible.
    server = start_api(index, tmp_path / "server2.log", env)
    try:
        url = server.base_url
        deadline = time.monotonic() + 300
        while (state := _job(url, job2["id"]))["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert state["status"] == "succeeded" and state["attempts"] == 2 and state["result"]["added"] == 200
        assert _job(url, job1["id"])["status"] == "succeeded"
        for r in rows[::23]:
            doc = httpx.get(f"{url}/documents/{r['_id']}").json()
            assert doc["n_chunks"] == len(doc["chunks"]) >= 1
    finally:
        server.stop()
    snapshot = Snapshot.load(index, Settings(_env_file=None))  # type: ignore[call-arg]
    snapshot.verify()
    assert snapshot.store.count_documents(snapshot.generation) == 230
    snapshot.store.close()


def test_jobs_wait_for_another_writer_and_queries_see_its_commit(tmp_path: Path, encoder) -> None:
    """A CLI-style writer in another process holds the lock: the API's job waits, then runs; the writer's
    own commit is served without a restart."""
    from indexer.writer import IndexWriter
    from rag.objects import Document

    index = tmp_path / "index"
    server = start_api(index, tmp_path / "server.log", {"RAG_API_KEYS": KEY})
    try:
        url = server.base_url
        with IndexWriter(index, Settings(_env_file=None), encoder=encoder, show_progress=False) as writer:  # type: ignore[call-arg]
            job = httpx.post(
                f"{url}/documents", json={"documents": [{"id": "api", "text": "Sent through the API."}]},
                headers={"X-API-Key": KEY},
            ).json()  # fmt: skip
            deadline = time.monotonic() + 30
            while "retrying" not in (state := _job(url, job["id"]))["message"]:
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
            assert state["status"] == "queued" and "another process" in state["message"]
            writer.upsert([Document(id="cli", text="Written by another process holding the lock.")], "default")
        hits = httpx.post(f"{url}/query", json={"question": "another process lock", "generate": False}).json()["hits"]
        assert hits[0]["doc_id"] == "cli"  # the other writer's snapshot, noticed through CURRENT
        deadline = time.monotonic() + 60
        while (state := _job(url, job["id"]))["status"] != "succeeded":
            assert time.monotonic() < deadline and state["status"] != "failed", state
            time.sleep(0.3)
        assert httpx.get(f"{url}/documents/api").status_code == 200
        assert httpx.get(f"{url}/documents/cli").status_code == 200
    finally:
        server.stop()
