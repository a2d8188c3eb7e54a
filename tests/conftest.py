"""Shared fixtures: real data from ../shared/datasets, the real bundled encoder, real databases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.encode.encoder import Encoder
from rag.objects import Document
from rag.settings import Settings

# The fast local model for every test and every server a test starts; the default model (1.5B) has a
# test of its own (test_default_model.py).
os.environ.setdefault("RAG_LOCAL_MODEL", "smollm2-135m")
# SmolLM2's yes/no odds sit below the 1.5B's threshold, so the check would abstain on every question and
# no test would see an answer; the check has tests of its own (test_pipeline.py).
os.environ.setdefault("RAG_ANSWERABILITY_CHECK", "false")

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RAG_DATASETS", ROOT.parent / "shared" / "datasets"))
POSTGRES_URL = os.environ.get("RAG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    path = DATASETS / "scifact"
    if not (path / "corpus.jsonl").exists():
        pytest.fail(f"dataset missing: {path} (tests read ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def squad_dir() -> Path:
    path = DATASETS / "squad-dev-a"
    if not (path / "corpus.jsonl").exists():
        pytest.fail(f"dataset missing: {path} (tests read ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def scifact_docs(scifact_dir: Path) -> list[Document]:
    """The first 40 SciFact abstracts: real text, small enough to encode in seconds."""
    return [
        Document(id=r["_id"], title=r["title"], text=r["text"], source="scifact")
        for r in read_jsonl(scifact_dir / "corpus.jsonl", limit=40)
    ]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def encoder(settings: Settings) -> Encoder:
    return Encoder(settings.encoder_model, settings.encoder_batch_size)


def _postgres_reachable() -> bool:
    import sqlalchemy as sa

    try:
        with sa.create_engine(POSTGRES_URL).connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except Exception:
        return False


def require_postgres() -> None:
    """Skip without the PostgreSQL server, except in CI, where its absence is a failure."""
    if not _postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")


def drop_postgres_schema() -> None:
    from api.job_store import drop_job_table
    from rag.index.store import DocumentStore

    store = DocumentStore(POSTGRES_URL)
    store.drop_schema()
    drop_job_table(store.engine)
    store.close()


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A clean PostgreSQL database; in CI its absence is a failure, elsewhere a skip."""
    require_postgres()
    drop_postgres_schema()
    yield POSTGRES_URL
    drop_postgres_schema()
