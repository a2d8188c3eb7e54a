"""``rag serve`` (the API), ``rag llm-server`` (an OpenAI-compatible server for the bundled model), ``rag ui``
and ``rag mcp`` (MCP tools over the API)."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.settings import ApiSettings
from rag.errors import GeneratorUnavailableError
from rag.generate.llamacpp import local_model_path
from rag.settings import Settings

HostOption = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")]


def serve(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (created empty if missing).")],
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on the one memory-mapped snapshot; they share the job queue, and the "
            "encoder threads are split between their retrieval batches (RAG_API_RETRIEVAL_CONCURRENCY each) "
            "unless RAG_TORCH_THREADS is set.",
        ),
    ] = 1,
) -> None:
    """Serve the REST API (POST /query, documents, collections, jobs, /healthz, /readyz, /metrics)."""
    import uvicorn

    from api.app import SERVE_INDEX_ENV, SERVE_LOG_LEVEL_ENV, app_from_environment, configure_logging, create_app

    settings = ApiSettings()
    configure_logging(log_level)
    if "RAG_TORCH_THREADS" not in os.environ and settings.torch_threads == 0:
        threads = retrieval_threads(os.cpu_count() or 1, workers, settings.api_retrieval_concurrency)
        os.environ["RAG_TORCH_THREADS"] = str(threads)  # spawned workers read it
        settings = settings.model_copy(update={"torch_threads": threads})
    app: Any
    if workers == 1:
        app = create_app(index, settings)
    else:  # each worker builds its own app from these (uvicorn spawns them and imports the factory)
        os.environ[SERVE_INDEX_ENV] = str(index.resolve())
        os.environ[SERVE_LOG_LEVEL_ENV] = log_level
        app = f"{app_from_environment.__module__}:{app_from_environment.__name__}"
    proxies = settings.api_trusted_proxies.strip()
    typer.echo(f"serving {index} on http://{host}:{port} with {workers} worker(s) (OpenAPI at /docs)", err=True)
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        log_config=_log_config(),
        timeout_graceful_shutdown=10,
        # X-Forwarded-For is believed only from the proxies named: else any client could choose the
        # address its rate limit counts by (uvicorn's default trusts 127.0.0.1)
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def retrieval_threads(cores: int, workers: int, concurrency: int) -> int:
    """Encoder (torch, ONNX Runtime) threads per retrieval batch: the cores shared by every batch that
    computes at once, one at least. Two batches on one thread each used half the CPU a request of one
    batch on two threads, whose idle OpenMP thread spun (9.5 against 18.5 ms at 60 req/s: docs/benchmarks.md,
    stop 53)."""
    return max(1, cores // (workers * concurrency))


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the request id in every line and secrets kept out of the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_secrets": {"()": "api.app.RedactSecrets"}}
    config["handlers"]["access"]["filters"] = ["redact_secrets"]
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(request_id)s] %(message)s"
    config["formatters"]["access"]["fmt"] = (
        '%(levelprefix)s [%(request_id)s] %(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    return config


def llm_server(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    model: Annotated[str, typer.Option(help="GGUF file or bundled model name; empty: RAG_LOCAL_MODEL.")] = "",
    context: Annotated[int, typer.Option(help="Context length in tokens.")] = 2048,
    alias: Annotated[str, typer.Option(help="Model name clients ask for (RAG_REMOTE_MODEL).")] = "default",
) -> None:
    """Run llama.cpp's OpenAI-compatible server (what RAG_GENERATOR=remote talks to) on a local model."""
    settings = Settings()
    path = local_model_path(model or settings.local_model, settings.model_cache_dir)
    if not path or not Path(path).is_file():
        raise GeneratorUnavailableError(f"no GGUF model at {path!r} (run scripts/install.sh or pass --model)")
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        path,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(context),
        "--model_alias",
        Path(path).stem,
    ]
    typer.echo(f"llama.cpp server for {Path(path).name} on http://{host}:{port}/v1", err=True)
    os.execv(sys.executable, argv)


def ui(ctx: typer.Context) -> None:
    """Start the Streamlit chat UI; further arguments go to Streamlit (e.g. --server.port 8501)."""
    from ui.settings import UiSettings

    app_file = Path(__file__).resolve().parents[1] / "ui" / "app.py"
    typer.echo(f"UI talks to the API at {UiSettings().api_url} (set RAG_API_URL to change it)", err=True)
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        *ctx.args,
    ]
    os.execv(sys.executable, argv)


def mcp(
    transport: Annotated[
        str, typer.Option(help="stdio (for a local agent) or http (streamable HTTP at /mcp).")
    ] = "stdio",
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (http).")] = 8765,
    api_url: Annotated[str, typer.Option(help="The API (rag serve); empty: RAG_API_URL.")] = "",
) -> None:
    """Serve the MCP tools search, ask, get_document and add_documents over a running `rag serve`."""
    from connect.mcp_server import run
    from connect.settings import ClientSettings

    if transport not in ("stdio", "http"):
        raise typer.BadParameter("use stdio or http", param_hint="--transport")
    settings = ClientSettings()
    if api_url:
        settings = settings.model_copy(update={"api_url": api_url})
    typer.echo(f"MCP tools over the API at {settings.api_url} ({transport})", err=True)
    run(settings, "stdio" if transport == "stdio" else "http", host, port)
