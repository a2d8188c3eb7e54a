"""The app factory: ``create_app(index_dir, settings)``; models load in the lifespan, not at import."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_documents, routes_openai, routes_ops, routes_query
from api.auth import KeyRing, RateLimiter, load_keys
from api.deps import AppState
from api.errors import OPENAI_PATHS, REQUEST_ID, ApiError, from_rag_error, openai_body
from api.index_service import IndexService
from api.jobs import Job, JobRunner
from api.metrics import Metrics
from api.schemas import DocumentsIn
from api.settings import ApiSettings
from rag.errors import RagError

log = logging.getLogger("rag.api")


class _BodyTooLarge(BaseException):
    """Not an Exception: FastAPI turns any Exception raised while it reads a body into a 400."""


_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SECRET_PARAMS = re.compile(r"((?:api[_-]?key|key|token|access_token|password|secret)=)[^&\s]*", re.IGNORECASE)


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    """The error body: the service's own shape, or OpenAI's on the OpenAI-compatible routes."""
    error = ApiError(status, code, message)
    body = openai_body(error) if path.startswith(OPENAI_PATHS) else error.body()
    return JSONResponse(body, status_code=status, headers=headers)


class RequestContext:
    """Every request gets an id (the client's ``X-Request-ID`` when it is a sane one, else a new one),
    echoed in the response, in error bodies and in every log line; every response says ``nosniff``,
    and answers are never cached (``no-store``) unless a route says otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CLIENT_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Content-Type-Options"] = "nosniff"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(token)


_request_ids_installed = False


def install_request_ids() -> None:
    """Every log record carries the id of the request it was written for (``%(request_id)s``)."""
    global _request_ids_installed
    if _request_ids_installed:
        return
    make_record = logging.getLogRecordFactory()

    def with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    logging.setLogRecordFactory(with_request_id)
    _request_ids_installed = True


class RedactSecrets(logging.Filter):
    """Keys are only accepted in headers, but a client may still put one in a URL: the access log
    never writes a secret-looking query parameter's value."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            path = record.args[2]
            if isinstance(path, str):
                record.args = (*record.args[:2], _SECRET_PARAMS.sub(r"\1[redacted]", path), *record.args[3:])
        return True


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length, or while reading a chunked one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _json_error(
            413, "too_large", f"the request body is larger than {self.max_bytes:,} bytes", path=scope.get("path", "")
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


class RequestMetrics:
    """Count and time every request by its route template (not its raw path, which would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = scope.get("route")
                name = getattr(route, "path", "unmatched")
                self.metrics.latency.labels(name).observe(time.perf_counter() - start)
                self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            await send(message)

        await self.app(scope, receive, timing_send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc.status, exc.code, exc.message, exc.headers, request.url.path)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        error = from_rag_error(exc)
        return _json_error(error.status, error.code, error.message, path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers a malformed request with 400; its clients map 422 to another exception
        status = 400 if request.url.path.startswith(OPENAI_PATHS) else 422
        return _json_error(status, "invalid_request", _validation_message(exc), path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return _json_error(exc.status_code, code, str(exc.detail), headers, request.url.path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        message = f"internal error ({exc.__class__.__name__}); see the server log"
        return _json_error(500, "internal", message, path=request.url.path)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bodies that routes parse themselves (JSON or multipart uploads)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        extra = DocumentsIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(extra.pop("$defs", {}))
        components["DocumentsIn"] = extra
        app.openapi_schema = schema
    return app.openapi_schema


SERVE_INDEX_ENV = "RAG_SERVE_INDEX"  # set by ``rag serve --workers N`` for its worker processes
SERVE_LOG_LEVEL_ENV = "RAG_SERVE_LOG_LEVEL"


def configure_logging(level: str) -> None:
    install_request_ids()  # before any handler formats %(request_id)s
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")


def app_from_environment() -> FastAPI:
    """The app of one ``rag serve --workers N`` worker process (uvicorn imports this factory in each)."""
    configure_logging(os.environ.get(SERVE_LOG_LEVEL_ENV, "info"))
    return create_app(Path(os.environ[SERVE_INDEX_ENV]), ApiSettings())


def create_app(index_dir: Path, settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    metrics = Metrics()

    def finished(job: Job) -> None:
        metrics.jobs.labels(job.kind, job.status).inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = KeyRing(load_keys(settings))
        if not keys.keys:
            log.warning("no API keys configured (RAG_API_KEYS): the index is read-only over HTTP")
        if any(k.collections is not None for k in keys.keys) and not settings.api_require_key_for_queries:
            log.warning(
                "SOME API KEYS ARE LIMITED TO COLLECTIONS, BUT QUERIES NEED NO KEY: anyone who sends none can "
                "read every collection. Set RAG_API_REQUIRE_KEY_FOR_QUERIES=true to keep collections apart."
            )
        service = IndexService(Path(index_dir), settings, on_batch=metrics.batch_size.observe)
        service.start()
        jobs = JobRunner(service, on_finish=finished)
        jobs.start()
        app.state.rag = AppState(
            settings,
            service,
            jobs,
            keys,
            RateLimiter(settings.api_rate_limit_per_s, settings.api_rate_burst),
            metrics,
            RateLimiter(settings.api_auth_failure_per_s, settings.api_auth_failure_burst),
        )
        log.info("ready: %s", json.dumps({"index": str(index_dir), "keys": len(keys.keys)}))
        try:
            yield
        finally:
            jobs.stop()
            service.close()

    install_request_ids()
    app = FastAPIOffline(  # Swagger UI at /docs from the package's own files: no CDN, works offline
        title="rag-late",
        version="0.1.0",
        description="Hybrid retrieval (dense + BM25, RRF) with MaxSim reranking and cited answers.",
        lifespan=lifespan,
    )
    app.include_router(routes_query.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_openai.router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_upload_bytes)
    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:  # browsers on these origins may call the API; with none configured, no CORS headers at all
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Location", "Retry-After"],
        )
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestContext)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
