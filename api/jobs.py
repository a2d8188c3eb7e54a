"""Background writes: every change to the index is a job, run one at a time, in the order accepted.

A job is accepted only once it is stored (:mod:`api.job_store`: fsynced files in ``DIR/jobs``, or the
PostgreSQL ``rag_jobs`` table that several ``rag serve`` replicas share), so a crash loses nothing that
was accepted: a job that was queued or running when its process died is run again, by this process at
its next start or by another replica at once. That is safe because an upsert of unchanged documents
changes nothing and the index writer rolls back a change that never committed. A job reports
``succeeded`` only after its snapshot is committed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from api.index_service import IndexService
from api.job_record import FINISHED, Job, JobKind, now_iso
from api.job_store import JobStore, job_store_for
from indexer.writer import ChangeSummary, IndexWriter
from rag.encode.encoder import Encoder
from rag.errors import IndexBusyError, RagError
from rag.objects import Document

log = logging.getLogger("rag.api")

__all__ = ["Job", "JobCancelled", "JobNotCancellable", "JobRunner"]

BUSY_RETRY_S = 2.0  # another process holds the index's write lock: try again after this
POLL_S = 0.5  # how often a worker looks for jobs that other processes accepted
PROGRESS_SAVE_S = 1.0  # a running job's record is stored at most this often (and read for cancellation)


class JobCancelled(Exception):
    """Raised from the progress callback of a job whose cancellation was asked for."""


class JobNotCancellable(Exception):
    """The job has finished, or is a kind that cannot be stopped once running."""


class JobRunner:
    """Stores jobs and runs them, oldest first, on one worker thread. Every process on the store runs
    one (``rag serve --workers N``, replicas on PostgreSQL); a job's claim (:meth:`JobStore.claim`)
    keeps it to one runner, and the oldest unfinished job blocks the ones after it, so changes apply in
    the order they were accepted."""

    def __init__(
        self, service: IndexService, on_finish: Callable[[Job], None] | None = None, store: JobStore | None = None
    ) -> None:
        self.service = service
        self.store = store if store is not None else job_store_for(service.index_dir, service.store.engine)
        self.on_finish = on_finish
        self._lock = threading.RLock()  # claims, cancellation and the running job's record change under it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._encoder: Encoder | None = None  # its own: the chunker uses the tokenizer outside the encoder
        self._running: Job | None = None  # the job this process runs, with its latest progress
        self._not_before = 0.0  # after an IndexBusyError: no new try before this (monotonic)
        self.runner_name = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        """Open the store and start the worker; it runs again whatever a crash or a stop interrupted."""
        self.store.open()
        self.store.prune()
        self._thread = threading.Thread(target=self._work, name="rag-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the running job (an interrupted one runs again at the next start, or on a replica)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.store.close()

    def _update(self, job: Job, **changes: Any) -> Job:
        updated = replace(job, **changes)
        self.store.save(updated)
        return updated

    # --- submitting --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            if self._running is not None and self._running.id == job_id:
                return self._running  # progress newer than the stored record
        return self.store.get(job_id)

    def pending(self) -> int:
        return self.store.pending()

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or stop a running upsert at its next encoded batch (here or on another
        replica); the index stays at its last commit either way. A finished job cannot be cancelled
        (:class:`JobNotCancellable`)."""
        with self._lock:  # the worker claims under the same lock: queued cannot turn running here meanwhile
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.status in FINISHED:
                raise JobNotCancellable(f"job {job_id} has {job.status} already")
            running_here = self._running is not None and self._running.id == job_id
            if running_here or not self.store.claim(job_id):  # it runs, in this process or another
                if job.kind != "upsert":
                    raise JobNotCancellable(f"a running {job.kind} job cannot be stopped; it finishes soon")
                self.store.request_cancel(job_id)
                return job
            try:  # claimed: nobody runs it, nobody can start it until it is released
                job = self.store.get(job_id) or job
                if job.status in FINISHED:
                    raise JobNotCancellable(f"job {job_id} has {job.status} already")
                job = self._update(job, status="cancelled", finished_at=now_iso(), message="cancelled before it ran")
                self.store.finished(job_id)
            finally:
                self.store.release(job_id)
        return job

    def _submit(self, job: Job, documents: Sequence[Document] = ()) -> Job:
        payload = "".join(json.dumps(asdict(d), ensure_ascii=False) + "\n" for d in documents) if documents else None
        self.store.add(job, payload)
        self._wake.set()
        return job

    def _new(self, kind: JobKind, collection: str | None, key_id: str | None, **fields: Any) -> Job:
        return Job(uuid.uuid4().hex, kind, collection, "queued", now_iso(), key_id=key_id, **fields)

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
            self._wake.clear()
            try:
                job = self._claim_next()
            except Exception:  # the store is unreachable for a moment: look again later
                log.exception("could not read the job queue")
                job = None
            if job is None:
                self._wake.wait(POLL_S)
                continue
            try:
                self._run(job)
            except Exception:  # the worker must outlive any one job
                log.exception("job %s crashed the worker loop", job.id)
            finally:
                with self._lock:
                    self._running = None
                    self.store.release(job.id)

    def _claim_next(self) -> Job | None:
        """Claim the oldest unfinished job and mark it running; None when there is none, or while another
        process runs it (the jobs after it wait their turn)."""
        if time.monotonic() < self._not_before:
            return None
        with self._lock:
            while (oldest := self.store.oldest_pending()) is not None:
                if not self.store.claim(oldest.id):
                    return None
                job = self.store.get(oldest.id)  # read again under the claim: it may have ended meanwhile
                if job is None or job.status in FINISHED:
                    self.store.release(oldest.id)
                    continue
                resumed = job.status == "running"  # its runner died
                self._running = self._update(
                    job,
                    status="running",
                    started_at=now_iso(),
                    attempts=job.attempts + 1,
                    runner=self.runner_name,
                    message="resumed after its runner stopped" if resumed else "",
                )
                return self._running
        return None

    def _finish(self, job: Job, **changes: Any) -> Job:
        return self._update(job, finished_at=now_iso(), eta_s=None, **changes)

    def _run(self, job: Job) -> None:
        last_saved = time.monotonic()
        started = last_saved

        def progress(done: int, total: int) -> None:
            nonlocal job, last_saved
            now = time.monotonic()
            due = now - last_saved >= PROGRESS_SAVE_S or done == total
            # a remote store is read for cancel requests only when the record is saved: at most once a second
            if (due or not self.store.remote) and self.store.cancel_requested(job.id):
                raise JobCancelled  # raised inside the writer, before its commit: nothing is written
            elapsed = now - started
            eta = (total - done) * elapsed / done if done and elapsed > 0 else None
            job = replace(job, passages_done=done, passages_total=total, eta_s=eta)
            with self._lock:
                self._running = job
            if due:
                self.store.save(job)
                last_saved = now

        payload = self.store.payload(job.id) if job.kind == "upsert" else None
        try:
            if job.kind == "upsert" and payload is None:
                raise RagError("the job's payload was lost")
            if self.store.cancel_requested(job.id):  # asked of a runner that died before it could stop
                raise JobCancelled
            summary = self._apply(job, payload or "", progress)
        except JobCancelled:
            job = self._finish(job, status="cancelled", message="cancelled while running")
        except IndexBusyError as exc:
            self._update(job, status="queued", message=f"{exc}; retrying")
            self._not_before = time.monotonic() + BUSY_RETRY_S
            return
        except RagError as exc:
            job = self._finish(job, status="failed", error=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            job = self._finish(job, status="failed", error=f"internal error: {exc!r}")
        else:
            self.service.swap()
            job = self._finish(job, status="succeeded", result=asdict(summary))
        self.store.finished(job.id)
        self.store.prune()
        if self.on_finish is not None:
            self.on_finish(job)

    def _apply(self, job: Job, payload: str, progress: Callable[[int, int], None]) -> ChangeSummary:
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
                documents = [Document(**json.loads(line)) for line in payload.splitlines() if line.strip()]
                return writer.upsert(documents, job.collection or "default")
            if job.kind == "delete":
                # (a delete job recorded before documents were keyed by collection has none: ids must be unambiguous)
                return writer.delete(job.document_ids, job.collection, missing_ok=True)
            return writer.delete_collection(job.collection or "")
