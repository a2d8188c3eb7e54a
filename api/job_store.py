"""Where jobs live: files in ``DIR/jobs`` (every ``rag serve`` worker process on one machine), or a
PostgreSQL table that every ``rag serve`` replica on a shared store reads and runs from.

Both keep the same contract for :class:`api.jobs.JobRunner`: a job is stored before it is accepted;
``claim`` makes one process the job's only runner until ``release`` (or its death); the oldest unfinished
job is the next to run, so changes apply in the order they were accepted, whichever replica took them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from sqlalchemy import Boolean, String, Text, delete, func, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from api.job_record import FINISHED, Job
from rag.index.arrays import write_text_atomic
from rag.index.store import DocumentStore

log = logging.getLogger("rag.api")

KEEP_FINISHED_JOBS = 1000
JOB_LOCK_CLASS = 0x7261_6731  # the first key of a job's advisory lock ("rag1"); the second is its id's CRC-32
PENDING = ("queued", "running")
JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
STALE_PART_S = 60.0  # a ``.part`` file older than this is a crashed write, not one in progress


class JobStore(Protocol):
    """One interface over both places jobs live."""

    remote: bool  # a round trip to a server: read cancel requests only when the progress is saved

    def open(self) -> None:
        """Create what is missing and drop what a crash left half-written."""

    def add(self, job: Job, payload: str | None) -> None:
        """Store a new job (and its documents as JSON lines) durably, before it is acknowledged."""

    def save(self, job: Job) -> None: ...

    def get(self, job_id: str) -> Job | None: ...

    def oldest_pending(self) -> Job | None:
        """The oldest queued or running job: the next one to run."""

    def pending(self) -> int: ...

    def payload(self, job_id: str) -> str | None: ...

    def finished(self, job_id: str) -> None:
        """Drop what only a running job needs (its payload, a cancel request)."""

    def claim(self, job_id: str) -> bool:
        """Become the job's only runner; False while another process holds it."""

    def release(self, job_id: str) -> None: ...

    def request_cancel(self, job_id: str) -> None:
        """Ask the process running the job to stop it."""

    def cancel_requested(self, job_id: str) -> bool: ...

    def prune(self) -> None:
        """Forget all but the newest ``KEEP_FINISHED_JOBS`` finished jobs."""

    def close(self) -> None: ...


def _job_from_json(raw: str) -> Job:
    record = json.loads(raw)
    record["document_ids"] = tuple(record.get("document_ids", ()))
    return Job(**record)


def _oldest_first(jobs: Sequence[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.created_at, j.id))


class FileJobStore:
    """``DIR/jobs/<id>.json`` records and ``<id>.jsonl`` payloads, written beside and renamed, fsynced.
    Every ``rag serve`` worker process on the folder reads the records from disk (a finished one
    parsed once), claims a job with an ``flock`` on ``<id>.claim`` (the kernel drops it when the process
    dies) and asks a job's runner to stop with an ``<id>.cancel`` marker."""

    remote = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Finished records, parsed once. Unfinished ones are read every time: two saves within one clock
        # tick leave the same mtime, so a cache keyed on it could serve a stale record.
        self._finished: dict[str, Job] = {}
        self._claims: dict[str, int] = {}  # job id -> the open descriptor that holds its flock
        self._lock = threading.Lock()

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.directory / f"{job_id}{suffix}"

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stale = time.time() - STALE_PART_S  # another worker may be writing a fresh one right now
        for leftover in self.directory.glob("*.part"):  # a write that a crash cut short
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < stale:
                    leftover.unlink()

    def _read(self, path: Path) -> Job | None:
        with self._lock:
            cached = self._finished.get(path.name)
        if cached is not None:
            return cached
        try:
            job = _job_from_json(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipping unreadable job record %s: %s", path.name, exc)
            return None
        if job.status in FINISHED:  # a finished record never changes again: parse it once
            with self._lock:
                self._finished[path.name] = job
        return job

    def _all(self) -> list[Job]:
        jobs = [self._read(path) for path in self.directory.glob("*.json")]
        return [job for job in jobs if job is not None]

    def add(self, job: Job, payload: str | None) -> None:
        if payload is not None:
            write_text_atomic(self._path(job.id, ".jsonl"), payload)
        self.save(job)

    def save(self, job: Job) -> None:
        write_text_atomic(self._path(job.id, ".json"), _dump(job))

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.fullmatch(job_id):  # the id comes from a URL: it names a file only if it is one of ours
            return None
        return self._read(self._path(job_id, ".json"))

    def oldest_pending(self) -> Job | None:
        pending = [j for j in self._all() if j.status in PENDING]
        return _oldest_first(pending)[0] if pending else None

    def pending(self) -> int:
        return sum(1 for j in self._all() if j.status in PENDING)

    def payload(self, job_id: str) -> str | None:
        try:
            return self._path(job_id, ".jsonl").read_text("utf-8")
        except FileNotFoundError:
            return None

    def finished(self, job_id: str) -> None:
        for suffix in (".jsonl", ".cancel"):
            self._path(job_id, suffix).unlink(missing_ok=True)

    def claim(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._claims:
                return False
            fd = os.open(self._path(job_id, ".claim"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._claims[job_id] = fd
            return True

    def release(self, job_id: str) -> None:
        with self._lock:
            fd = self._claims.pop(job_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops its flock

    def request_cancel(self, job_id: str) -> None:
        write_text_atomic(self._path(job_id, ".cancel"), "")

    def cancel_requested(self, job_id: str) -> bool:
        return self._path(job_id, ".cancel").exists()

    def prune(self) -> None:
        finished = _oldest_first([j for j in self._all() if j.status in FINISHED])
        for job in finished[: max(0, len(finished) - KEEP_FINISHED_JOBS)]:
            for suffix in (".json", ".jsonl", ".cancel", ".claim"):
                self._path(job.id, suffix).unlink(missing_ok=True)
            with self._lock:
                self._finished.pop(f"{job.id}.json", None)

    def close(self) -> None:
        for job_id in list(self._claims):
            self.release(job_id)


class _Base(DeclarativeBase):
    pass


class JobRow(_Base):
    __tablename__ = "rag_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    record: Mapped[str] = mapped_column(Text)  # the Job as JSON
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # an upsert's documents, JSON lines
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


def _job_lock_key(job_id: str) -> int:
    """A job's advisory lock key: its id's CRC-32 as PostgreSQL's signed int4 (a collision only makes two
    jobs wait for each other, which the queue's order makes them do anyway)."""
    crc = zlib.crc32(job_id.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class PostgresJobStore:
    """The ``rag_jobs`` table in the PostgreSQL document store. A runner claims a job with a session-level
    advisory lock on a connection of its own: another replica cannot run the job meanwhile, and the server
    releases the lock when the runner's process dies, so the job is run again by whichever replica is next
    to look. Cancelling a job that runs elsewhere sets a flag its runner reads with its progress."""

    remote = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._claims: Connection | None = None
        self._claims_lock = threading.RLock()  # one connection, used from the API's threads and the worker
        self._held: set[str] = set()

    def open(self) -> None:
        _Base.metadata.create_all(self.engine)
        self._claims = self.engine.connect()

    def add(self, job: Job, payload: str | None) -> None:
        with Session(self.engine) as session, session.begin():
            row = JobRow(id=job.id, created_at=job.created_at, status=job.status, record=_dump(job), payload=payload)
            session.add(row)

    def save(self, job: Job) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobRow).where(JobRow.id == job.id).values(status=job.status, record=_dump(job)))

    def get(self, job_id: str) -> Job | None:
        with Session(self.engine) as session:
            raw = session.scalar(select(JobRow.record).where(JobRow.id == job_id))
        return None if raw is None else _job_from_json(raw)

    def oldest_pending(self) -> Job | None:
        with Session(self.engine) as session:
            raw = session.scalar(
                select(JobRow.record).where(JobRow.status.in_(PENDING)).order_by(JobRow.created_at, JobRow.id).limit(1)
            )
        return None if raw is None else _job_from_json(raw)

    def pending(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(PENDING))) or 0

    def payload(self, job_id: str) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(select(JobRow.payload).where(JobRow.id == job_id))

    def finished(self, job_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobRow).where(JobRow.id == job_id).values(payload=None, cancel_requested=False))

    def _lock_call(self, function: str, job_id: str) -> bool:
        if self._claims is None:
            raise RuntimeError("PostgresJobStore.open() was not called")
        with self._claims_lock:
            result = self._claims.execute(
                text(f"SELECT {function}(:cls, :key)"), {"cls": JOB_LOCK_CLASS, "key": _job_lock_key(job_id)}
            ).scalar()
            self._claims.commit()  # the lock belongs to the session, not to this transaction
        return bool(result)

    def claim(self, job_id: str) -> bool:
        with self._claims_lock:  # the server's locks are re-entrant within a session: ours are not
            if job_id in self._held:
                return False
            if not self._lock_call("pg_try_advisory_lock", job_id):
                return False
            self._held.add(job_id)
            return True

    def release(self, job_id: str) -> None:
        with self._claims_lock:
            if job_id in self._held:
                self._held.discard(job_id)
                self._lock_call("pg_advisory_unlock", job_id)

    def request_cancel(self, job_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobRow).where(JobRow.id == job_id).values(cancel_requested=True))

    def cancel_requested(self, job_id: str) -> bool:
        with Session(self.engine) as session:
            return bool(session.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    def prune(self) -> None:
        with Session(self.engine) as session, session.begin():
            keep = (
                select(JobRow.id)
                .where(JobRow.status.in_(FINISHED))
                .order_by(JobRow.created_at.desc())
                .limit(KEEP_FINISHED_JOBS)
            )
            session.execute(delete(JobRow).where(JobRow.status.in_(FINISHED), JobRow.id.not_in(keep)))

    def close(self) -> None:
        with self._claims_lock:
            if self._claims is not None:
                DocumentStore.release_session_locks(self._claims)  # any claim still held goes with it
                self._claims = None
            self._held.clear()


def _dump(job: Job) -> str:
    return json.dumps(asdict(job))


def drop_job_table(engine: Engine) -> None:
    """Tests: remove the job table (the document store's ``drop_schema`` leaves it)."""
    _Base.metadata.drop_all(engine)


def job_store_for(index_dir: Path, engine: Engine) -> JobStore:
    """The PostgreSQL table when the document store is PostgreSQL (replicas share it), else files."""
    if engine.url.get_backend_name() == "postgresql":
        return PostgresJobStore(engine)
    return FileJobStore(index_dir / "jobs")
