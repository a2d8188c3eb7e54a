"""Every error the API answers is JSON ``{"error": code, "message": text, "request_id": id}``; this maps
the project's exceptions to HTTP statuses. Nothing an input can trigger answers a traceback."""

from __future__ import annotations

from contextvars import ContextVar

from rag.errors import (
    GeneratorError,
    GeneratorUnavailableError,
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
    InputError,
    ModelError,
    RagError,
)

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")  # set per request by api.app.RequestContext


class ApiError(Exception):
    """An error with its HTTP status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, str]:
        return {"error": self.code, "message": self.message, "request_id": request_id or REQUEST_ID.get()}


# Most specific first: GeneratorUnavailableError is a GeneratorError.
_RAG_ERRORS: list[tuple[type[RagError], int, str]] = [
    (InputError, 400, "invalid_input"),
    (IndexNotFoundError, 503, "index_not_found"),
    (IndexCorruptError, 503, "index_corrupt"),
    (IndexBusyError, 409, "index_busy"),
    (ModelError, 503, "model_unavailable"),
    (GeneratorUnavailableError, 503, "generator_unavailable"),
    (GeneratorError, 502, "generator_failed"),
]


def from_rag_error(exc: RagError) -> ApiError:
    for kind, status, code in _RAG_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc))
    return ApiError(400, "error", str(exc))


OPENAI_PATHS = "/v1/"  # routes that answer errors in OpenAI's shape, for the clients that parse it
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_body(error: ApiError) -> dict[str, dict[str, str | None]]:
    """``{"error": {"message", "type", "param", "code"}}``, OpenAI's error object; the request id rides in
    the message so a report can still be matched to the server log."""
    kind = _OPENAI_TYPES.get(error.status, "server_error" if error.status >= 500 else "invalid_request_error")
    message = f"{error.message} (request {REQUEST_ID.get()})"
    return {"error": {"message": message, "type": kind, "param": None, "code": error.code}}
