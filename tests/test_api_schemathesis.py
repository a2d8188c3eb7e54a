"""Schemathesis against the app's own OpenAPI schema, served by a real ``rag serve``: no generated
request (valid or not, with or without a key) may produce a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import start_api

pytestmark = pytest.mark.slow

KEY = "fuzz-key"


def test_no_server_error_over_generated_cases(tmp_path: Path) -> None:
    env = {
        "RAG_API_KEYS": KEY,
        "RAG_API_RATE_LIMIT_PER_S": "0",
        "RAG_MAX_ANSWER_TOKENS": "4",  # generated queries run the real local generator: keep each one short
        "RAG_LOCAL_CONTEXT_TOKENS": "1024",
    }
    server = start_api(tmp_path / "index", tmp_path / "server.log", env)
    try:
        docs = {"documents": [{"id": "seed", "text": "A seed document so that queries find something."}]}
        httpx.post(f"{server.base_url}/documents", json=docs, headers={"X-API-Key": KEY}).raise_for_status()
        st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        result = subprocess.run(
            [
                st, "run", f"{server.base_url}/openapi.json",
                "--checks", "not_a_server_error",
                "--header", f"X-API-Key: {KEY}",
                "--max-examples", "25",
                "--seed", "20261123",
                "--request-timeout", "60",
                "--report", "junit", "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        summary = result.stdout[-4000:]
        assert result.returncode == 0, summary
        assert "Server error" not in summary and "passed" in summary
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]
