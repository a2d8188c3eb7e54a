"""The job stores' contract, as two processes see it: two store objects on one folder (files) or one
database (PostgreSQL, two engines: two server sessions) stand for two ``rag serve`` workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from api import job_store
from api.job_record import Job
from api.job_store import FileJobStore, JobStore, PostgresJobStore

StorePair = tuple[JobStore, JobStore]


def _job(created_at: str, status: str = "queued") -> Job:
    return Job(uuid.uuid4().hex, "upsert", "default", status, created_at, documents=1)  # type: ignore[arg-type]


@pytest.fixture(params=["files", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorePair]:
    make: Callable[[], JobStore]
    if request.param == "files":

        def make() -> JobStore:
            return FileJobStore(tmp_path / "jobs")

        engines = []
    else:
        url = request.getfixturevalue("postgres_url")
        engines = [create_engine(url), create_engine(url)]
        made = iter(engines)

        def make() -> JobStore:
            return PostgresJobStore(next(made))

    pair = (make(), make())
    for store in pair:
        store.open()
    yield pair
    for store in pair:
        store.close()
    for engine in engines:
        engine.dispose()


def test_a_job_one_process_stores_is_seen_by_the_other(stores: StorePair) -> None:
    a, b = stores
    first, second = _job("2026-01-01T00:00:01"), _job("2026-01-01T00:00:02")
    a.add(second, "{}\n")
    b.add(first, None)
    assert b.get(second.id) == second and a.get(first.id) == first
    assert a.payload(second.id) == "{}\n" and b.payload(first.id) is None
    assert a.pending() == b.pending() == 2
    oldest = b.oldest_pending()
    assert oldest is not None and oldest.id == first.id  # the order accepted, whoever accepted it
    a.save(running := replace(first, status="running", passages_done=3))
    assert b.get(first.id) == running
    a.save(replace(first, status="succeeded"))
    oldest = b.oldest_pending()
    assert oldest is not None and oldest.id == second.id and b.pending() == 1


def test_a_claim_keeps_a_job_to_one_runner_until_it_is_released(stores: StorePair) -> None:
    a, b = stores
    job = _job("2026-01-01T00:00:01")
    a.add(job, "{}\n")
    assert a.claim(job.id)
    assert not b.claim(job.id) and not a.claim(job.id)
    a.release(job.id)
    assert b.claim(job.id)
    b.close()  # a runner that goes away (its process dies) drops its claims
    assert a.claim(job.id)


def test_a_cancel_request_reaches_the_runner_and_ends_with_the_job(stores: StorePair) -> None:
    a, b = stores
    job = _job("2026-01-01T00:00:01", "running")
    a.add(job, "{}\n")
    assert not a.cancel_requested(job.id)
    b.request_cancel(job.id)
    assert a.cancel_requested(job.id)
    a.finished(job.id)
    assert a.payload(job.id) is None and not b.cancel_requested(job.id)


def test_only_the_newest_finished_jobs_are_kept(stores: StorePair, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = stores
    monkeypatch.setattr(job_store, "KEEP_FINISHED_JOBS", 5)
    jobs = [_job(f"2026-01-01T00:00:{i:02d}", "succeeded") for i in range(8)]
    pending = _job("2025-01-01T00:00:00")  # older than all, but unfinished: never pruned
    for job in [*jobs, pending]:
        a.add(job, None)
    b.prune()
    assert [a.get(job.id) for job in jobs[:3]] == [None, None, None]
    assert a.get(jobs[3].id) == jobs[3] and a.get(pending.id) == pending


def test_a_job_id_from_a_url_never_names_another_file(tmp_path: Path) -> None:
    store = FileJobStore(tmp_path / "jobs")
    store.open()
    (tmp_path / "secret.json").write_text('{"id": "x"}')
    assert store.get("../secret") is None and store.get("") is None


def test_a_record_saved_twice_in_one_clock_tick_is_read_fresh(tmp_path: Path) -> None:
    """Two saves by another worker within one timestamp tick leave the same mtime: the reader must not
    serve the first from a cache."""
    a, b = FileJobStore(tmp_path / "jobs"), FileJobStore(tmp_path / "jobs")
    a.open()
    b.open()
    job = _job("2026-01-01T00:00:01", "running")
    a.add(job, None)
    path = tmp_path / "jobs" / f"{job.id}.json"
    tick = path.stat().st_mtime_ns
    assert b.get(job.id) == job
    a.save(done := replace(job, status="succeeded"))
    os.utime(path, ns=(tick, tick))
    assert b.get(job.id) == done
