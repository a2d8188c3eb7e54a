"""The peer of the load benchmark: LangChain's EnsembleRetriever behind a minimal FastAPI app.

What a LangChain user would serve (bench/run.py ``langchain_ensemble``: BM25Retriever + FAISS over the
index's own passages and MiniLM vectors, RRF), one ``POST /query`` that answers the top ``top_k``
passages as JSON, under the same uvicorn as ``rag serve``.

    python -m bench.peer_app --index data/scifact-index --port 8100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Query(BaseModel):
    """Module level, so that FastAPI can resolve the annotation (this module defers them) as a body."""

    question: str
    top_k: int = 10


def make_app(index: Path) -> Any:
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    from bench.run import langchain_ensemble
    from rag.index.snapshot import Snapshot
    from rag.settings import Settings

    settings = Settings()
    snapshot = Snapshot.load(index, settings)
    retrieve = langchain_ensemble(snapshot, snapshot.params.encoder_model, settings.candidate_depth)
    retrieve("warm up")

    app = FastAPI(title="LangChain EnsembleRetriever peer")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/query")
    async def query(body: Query) -> dict[str, Any]:
        ranking, _ = await run_in_threadpool(retrieve, body.question)
        return {"hits": [{"chunk_id": c, "score": s} for c, s in ranking[: body.top_k]]}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(make_app(args.index), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
