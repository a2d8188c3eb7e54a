"""A background job's record, as stored and as served at ``/jobs/{id}``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

JobKind = Literal["upsert", "delete", "delete_collection"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")


def now_iso() -> str:
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
    runner: str | None = None  # host:pid of the process that runs (or last ran) the job
    key_id: str | None = field(default=None, repr=False)
