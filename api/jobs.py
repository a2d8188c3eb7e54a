"""Background writes: every change to the index is a job, run one at a time by a single worker.

A job is accepted only once its record and payload are on disk (``DIR/jobs/<id>.json`` and
``<id>.jsonl``, written beside and renamed, fsynced), so a crash loses nothing that was accepted:
on restart, jobs that were queued or running are run again. That is safe because an upsert of
unchanged documents changes nothing and the index writer rolls back a change that never committed.
A job reports ``succeeded`` only after its snapshot is committed.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from api.index_service import IndexService
from indexer.writer import ChangeSummary, IndexWriter
from rag.encode.encoder import Encoder
from rag.errors import IndexBusyError, RagError
from rag.index.arrays import fsync_dir, write_text_atomic
from rag.objects import Document

log = logging.getLogger("rag.api")

JobKind = Literal["upsert", "delete", "delete_collection"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
BUSY_RETRY_S = 2.0  # another process holds the index's write lock: try again after this
KEEP_FINISHED_JOBS = 1000


class JobCancelled(Exception):
    """Raised from the progress callback of a job whose cancellation was asked for."""


class JobNotCancellable(Exception):
    """The job has finished, or is a kind that cannot be stopped once running."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    collection: str | None
    status: JobStatus
    created_at: str
    documents: int = 0  # documents in the request (upsert) or ids to delete
    document_ids: tuple[str, ...] = ()  # delete jobs only
    started_at: str | None = None
    finished_at: str | None = None
    passages_done: int = 0
    passages_total: int = 0
    eta_s: float | None = None  # seconds left, from the passages encoded so far
    attempts: int = 0
    message: str = ""
    result: dict[str, int] | None = None
    error: str | None = None
    key_id: str | None = field(default=None, repr=False)


class JobRunner:
    """Persists jobs and runs them in order on one worker thread."""

    def __init__(self, service: IndexService, on_finish: Callable[[Job], None] | None = None) -> None:
        self.service = service
        self.directory = service.index_dir / "jobs"
        self.on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.RLock()  # re-entered: a transition checks and saves under one hold
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._encoder: Encoder | None = None  # its own: the chunker uses the tokenizer outside the encoder
        self._cancel: dict[str, threading.Event] = {}  # the running job's, set by cancel()

    # --- persistence -------------------------------------------------------------------------

    def _record_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def _payload_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.jsonl"

    def _save(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
        write_text_atomic(self._record_path(job.id), json.dumps(asdict(job)))

    def _update(self, job: Job, **changes: Any) -> Job:
        updated = replace(job, **changes)
        self._save(updated)
        return updated

    def start(self) -> None:
        """Load the job records; run again whatever a crash or a stop interrupted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.part"):  # a write that a crash cut short
            leftover.unlink(missing_ok=True)
        pending: list[Job] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = json.loads(path.read_text("utf-8"))
                record["document_ids"] = tuple(record.get("document_ids", ()))
                job = Job(**record)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job record %s: %s", path.name, exc)
                continue
            self._jobs[job.id] = job
            if job.status in ("queued", "running"):
                pending.append(job)
        self._prune()
        for job in sorted(pending, key=lambda j: j.created_at):
            if job.kind == "upsert" and not self._payload_path(job.id).exists():
                self._update(job, status="failed", finished_at=_now(), error="the job's payload was lost")
                continue
            self._update(job, status="queued", message="resumed after a restart" if job.status == "running" else "")
            self._queue.put(job.id)
        self._thread = threading.Thread(target=self._work, name="rag-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the running job (an interrupted one resumes at the next start)."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status in FINISHED), key=lambda j: j.created_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED_JOBS)]:
            self._record_path(job.id).unlink(missing_ok=True)
            self._payload_path(job.id).unlink(missing_ok=True)
            del self._jobs[job.id]

    # --- submitting --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def pending(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.status in ("queued", "running"))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or stop a running upsert at its next encoded batch; the index stays at
        its last commit either way. A finished job cannot be cancelled (:class:`JobNotCancellable`)."""
        with self._lock:  # the worker starts a job under the same lock: queued cannot turn running meanwhile
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.status in FINISHED:
                raise JobNotCancellable(f"job {job_id} has {job.status} already")
            if job.status == "running":
                if job.kind != "upsert":
                    raise JobNotCancellable(f"a running {job.kind} job cannot be stopped; it finishes soon")
                self._cancel.setdefault(job_id, threading.Event()).set()
                return job
            job = self._update(job, status="cancelled", finished_at=_now(), message="cancelled before it ran")
        self._payload_path(job_id).unlink(missing_ok=True)
        return job

    def _submit(self, job: Job, documents: Sequence[Document] = ()) -> Job:
        if documents:
            payload = "".join(json.dumps(asdict(d), ensure_ascii=False) + "\n" for d in documents)
            write_text_atomic(self._payload_path(job.id), payload)
        self._save(job)
        fsync_dir(self.directory)
        self._queue.put(job.id)
        return job

    def _new(self, kind: JobKind, collection: str | None, key_id: str | None, **fields: Any) -> Job:
        return Job(uuid.uuid4().hex, kind, collection, "queued", _now(), key_id=key_id, **fields)

    def submit_upsert(self, documents: Sequence[Document], collection: str, key_id: str | None) -> Job:
        return self._submit(self._new("upsert", collection, key_id, documents=len(documents)), documents)

    def submit_delete(self, collection: str, document_ids: Sequence[str], key_id: str | None) -> Job:
        ids = tuple(document_ids)
        return self._submit(self._new("delete", collection, key_id, documents=len(ids), document_ids=ids))

    def submit_delete_collection(self, collection: str, key_id: str | None) -> Job:
        return self._submit(self._new("delete_collection", collection, key_id))

    # --- running -----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.get(job_id)
            if job is None or job.status != "queued":
                continue
            try:
                self._run(job)
            except Exception:  # the worker must outlive any one job
                log.exception("job %s crashed the worker loop", job_id)

    def _run(self, job: Job) -> None:
        with self._lock:
            current = self._jobs.get(job.id)
            if current is None or current.status != "queued":  # cancelled since it was taken off the queue
                return
            cancelled = self._cancel.setdefault(job.id, threading.Event())
            job = self._update(current, status="running", started_at=_now(), attempts=job.attempts + 1, message="")
        last_saved = 0.0
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal job, last_saved
            if cancelled.is_set():  # raised inside the writer, before its commit: nothing is written
                raise JobCancelled
            elapsed = time.monotonic() - started
            eta = (total - done) * elapsed / done if done and elapsed > 0 else None
            job = replace(job, passages_done=done, passages_total=total, eta_s=eta)
            now = time.monotonic()
            if now - last_saved >= 1.0 or done == total:  # the record on disk: at most once a second
                self._save(job)
                last_saved = now
            else:
                with self._lock:
                    self._jobs[job.id] = job

        try:
            summary = self._apply(job, progress)
        except JobCancelled:
            job = self._update(
                job, status="cancelled", finished_at=_now(), eta_s=None, message="cancelled while running"
            )
        except IndexBusyError as exc:
            self._update(job, status="queued", message=f"{exc}; retrying")
            retry = threading.Timer(BUSY_RETRY_S, self._queue.put, args=(job.id,))
            retry.daemon = True  # never holds up a shutdown; the job resumes at the next start
            retry.start()
            return
        except RagError as exc:
            job = self._update(job, status="failed", finished_at=_now(), error=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            job = self._update(job, status="failed", finished_at=_now(), error=f"internal error: {exc!r}")
        else:
            self.service.swap()
            job = self._update(job, status="succeeded", finished_at=_now(), eta_s=None, result=asdict(summary))
        finally:
            with self._lock:
                self._cancel.pop(job.id, None)
        self._payload_path(job.id).unlink(missing_ok=True)
        if self.on_finish is not None:
            self.on_finish(job)

    def _apply(self, job: Job, progress: Callable[[int, int], None]) -> ChangeSummary:
        service = self.service
        if self._encoder is None:
            shared = service.encoder
            self._encoder = Encoder(
                shared.model_name_or_path, shared.batch_size, shared.torch_threads, shared.backend, shared.cache_dir
            )
        with IndexWriter(
            service.index_dir, service.settings, encoder=self._encoder, show_progress=False, on_progress=progress
        ) as writer:
            if job.kind == "upsert":
                return writer.upsert(self._read_payload(job), job.collection or "default")
            if job.kind == "delete":
                # (a delete job recorded before documents were keyed by collection has none: ids must be unambiguous)
                return writer.delete(job.document_ids, job.collection, missing_ok=True)
            return writer.delete_collection(job.collection or "")

    def _read_payload(self, job: Job) -> list[Document]:
        with open(self._payload_path(job.id), encoding="utf-8") as handle:
            return [Document(**json.loads(line)) for line in handle if line.strip()]
