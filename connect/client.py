"""A small httpx client of the API: JSON calls, the SSE answer stream, uploads and job polling; the UI, the
MCP server and the framework retrievers all speak to ``rag serve`` through it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse


class ApiUnavailable(Exception):
    """The API cannot be reached at all."""


class ApiRequestError(Exception):
    """The API answered with an error; ``status`` and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class StreamEvent:
    kind: str  # retrieval | token | answer | error
    data: dict[str, Any]


def _error(response: httpx.Response) -> ApiRequestError:
    try:
        message = response.json().get("message") or response.text
    except (ValueError, AttributeError):
        message = response.text[:300] or response.reason_phrase
    return ApiRequestError(response.status_code, message)


class ApiClient:
    """Calls ``rag serve`` at ``base_url``; ``api_key`` goes in ``X-API-Key`` (none: anonymous)."""

    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"the API at {self.base_url} is not reachable ({exc.__class__.__name__})") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def ready(self) -> dict[str, Any]:
        try:
            response = self.http.get("/readyz", timeout=5)
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"the API at {self.base_url} is not reachable ({exc.__class__.__name__})") from exc
        body: dict[str, Any] = response.json()
        return body

    def collections(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/collections")
        return result

    def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/query", json={**payload, "stream": False})
        return result

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamEvent]:
        """The answer as it comes: ``retrieval``, ``token``s, then ``answer`` or ``error``."""
        try:
            with connect_sse(self.http, "POST", "/query", json={**payload, "stream": True}) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _error(source.response)
                for sse in source.iter_sse():
                    yield StreamEvent(sse.event, json.loads(sse.data))
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"the API at {self.base_url} is not reachable ({exc.__class__.__name__})") from exc

    def upload(self, filename: str, content: bytes, collection: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", "/documents", files={"file": (filename, content)}, data={"collection": collection}
        )
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}")
        return result

    def document(self, doc_id: str, collection: str | None = None) -> dict[str, Any]:
        """A live document with its chunks; without ``collection``, the one document with this id."""
        path = quote(doc_id, safe="")
        where = f"/collections/{quote(collection, safe='')}/documents/{path}" if collection else f"/documents/{path}"
        result: dict[str, Any] = self._call("GET", where)
        return result

    def add_documents(self, documents: list[dict[str, Any]], collection: str = "default") -> dict[str, Any]:
        """Submit documents (``id``, ``text``, optional ``title``/``source``/``url``/``date``/``metadata``);
        answers the job."""
        result: dict[str, Any] = self._call(
            "POST", "/documents", json={"collection": collection, "documents": documents}
        )
        return result

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict[str, Any]:
        """The job once it has finished (succeeded, failed or cancelled), or as it stands at ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() >= deadline:
                return job
            time.sleep(poll_s)
