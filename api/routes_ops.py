"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import AppState, state
from api.schemas import HealthOut, ReadyOut
from rag.errors import RagError

router = APIRouter(tags=["operations"])


@router.api_route("/healthz", methods=["GET", "HEAD"], response_model=HealthOut)
def healthz() -> Any:
    """The process answers (liveness)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(app: AppState = Depends(state)) -> Any:
    """The index is loaded and answers queries (readiness)."""
    try:
        snapshot = app.service.pipeline().snapshot
        documents = snapshot.store.count_documents(snapshot.generation)
    except (RagError, OSError) as exc:
        return JSONResponse({"ready": False, "message": str(exc)}, status_code=503)
    except Exception as exc:  # e.g. the store's database is down
        return JSONResponse({"ready": False, "message": f"{exc.__class__.__name__}: {exc}"}, status_code=503)
    return {
        "ready": True,
        "generation": snapshot.generation,
        "documents": documents,
        "chunks": len(snapshot),
        "jobs_pending": app.jobs.pending(),
    }


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(app: AppState = Depends(state)) -> Response:
    """Prometheus text format."""
    snapshot = app.service.pipeline().snapshot
    app.metrics.generation.set(snapshot.generation)
    app.metrics.chunks.set(len(snapshot))
    return Response(generate_latest(app.metrics.registry), media_type=CONTENT_TYPE_LATEST)
