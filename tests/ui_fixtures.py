"""A real API with a few SciFact abstracts, shared by the UI tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import read_jsonl
from tests.servers import Server, start_api

UI_KEY = "ui-key"


@pytest.fixture(scope="module")
def api(tmp_path_factory, scifact_dir: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-api")
    # The default 1.5B model: what a user of the chat sees (the 135M test model abstains on these questions).
    env = {"RAG_API_KEYS": UI_KEY, "RAG_LOCAL_MODEL": "qwen2.5-coder-1.5b"}
    server = start_api(root / "index", root / "server.log", env)
    rows = read_jsonl(scifact_dir / "corpus.jsonl", limit=12)
    docs = [
        {"id": r["_id"], "title": r["title"], "text": r["text"], "source": "scifact",
         "url": f"https://example.org/scifact/{r['_id']}", "date": f"20{10 + i:02d}-01-01"}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    job = httpx.post(
        f"{server.base_url}/documents", json={"collection": "papers", "documents": docs}, headers={"X-API-Key": UI_KEY}
    ).json()
    while httpx.get(f"{server.base_url}/jobs/{job['id']}", headers={"X-API-Key": UI_KEY}).json()["status"] not in (
        "succeeded",
        "failed",
    ):
        time.sleep(0.3)
    yield server
    server.stop()
