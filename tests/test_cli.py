"""The ``rag index`` commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RAG = [sys.executable, "-m", "cli"]

DOCS = [
    {
        "_id": "oil",
        "title": "1973 oil crisis",
        "date": "1974-03-01",
        "text": "The price of oil rose from $3 per barrel to nearly $12 globally by March 1974.",
    },
    {"_id": "cat", "title": "Cat", "text": "The cat is a small domesticated carnivorous mammal."},
    {"_id": "tea", "title": "Tea", "text": "Tea is an aromatic beverage prepared by pouring hot water over leaves."},
]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RAG, *args], capture_output=True, text=True, timeout=300, check=False)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_build_stats_add_delete(tmp_path) -> None:
    index = str(tmp_path / "ix")
    built = _run("index", "build", "--input", str(_jsonl(tmp_path / "d.jsonl", DOCS)), "--index", index)
    assert built.returncode == 0, built.stderr
    assert "3 added" in built.stderr and "encoding" in built.stderr  # progress bar on stderr
    stats = json.loads(_run("index", "stats", "--index", index, "--json").stdout)
    assert stats["documents"] == 3 and stats["chunks"] == 3 and stats["token_vectors"] > 30
    assert set(stats["bytes"]) >= {"dense", "sparse", "multivector", "store"}

    again = _run("index", "build", "--input", str(tmp_path / "d.jsonl"), "--index", index)
    assert again.returncode == 2 and "already holds an index" in again.stderr
    unforced = _run("index", "build", "--input", str(tmp_path / "d.jsonl"), "--index", index, "--rebuild")
    assert unforced.returncode == 2 and "give --force with it" in unforced.stderr
    rebuilt = _run("index", "build", "--input", str(tmp_path / "d.jsonl"), "--index", index, "--force", "--rebuild")
    assert rebuilt.returncode == 0 and "generation 2: 0 added, 3 replaced" in rebuilt.stderr, rebuilt.stderr

    extra = _jsonl(tmp_path / "e.jsonl", [{"_id": "sun", "text": "The Sun is the star at the centre."}])
    assert _run("index", "add", "--input", str(extra), "--index", index, "-q").returncode == 0
    deleted = _run("index", "delete", "--index", index, "cat", "tea")
    assert deleted.returncode == 0 and "2 deleted" in deleted.stderr
    stats = json.loads(_run("index", "stats", "--index", index, "--json").stdout)
    assert stats["documents"] == 2 and stats["generation"] == 4
    missing = _run("index", "delete", "--index", index, "nope")
    assert missing.returncode == 2 and "error: no such document(s)" in missing.stderr
    assert "ok: generation 4" in _run("index", "verify", "--index", index).stdout


def test_bad_input_is_named_and_leaves_no_index(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(DOCS[0]) + "\n{not json}\n")
    result = _run("index", "build", "--input", str(bad), "--index", str(tmp_path / "ix"))
    assert result.returncode == 2
    assert f"error: {bad}:2: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ix" / "CURRENT").exists()
    stats = _run("index", "stats", "--index", str(tmp_path / "ix"))
    assert stats.returncode == 2 and "no index at" in stats.stderr


def test_reweight_writes_exact_bm25_weights_on_the_qdrant_engine(tmp_path) -> None:
    import os

    index = str(tmp_path / "ix")
    qdrant = {**os.environ, "RAG_INDEX_ENGINE": "qdrant", "RAG_QDRANT_BM25_DRIFT": "100"}  # never on its own

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*RAG, *args], capture_output=True, text=True, timeout=300, check=False, env=qdrant)

    first = _jsonl(tmp_path / "a.jsonl", DOCS[:2])
    assert run("index", "build", "--input", str(first), "--index", index).returncode == 0
    longer = _jsonl(tmp_path / "b.jsonl", [{**DOCS[2], "text": DOCS[2]["text"] * 6}])  # the mean length grows
    assert run("index", "add", "--input", str(longer), "--index", index).returncode == 0
    done = run("index", "reweight", "--index", index)
    assert done.returncode == 0, done.stderr
    assert "generation 3: BM25 weights of 3 passages written again" in done.stderr
    assert "Exception ignored" not in done.stderr  # the in-process Qdrant closed before shutdown, not in __del__

    def engine(generation: int) -> dict:
        path = tmp_path / "ix" / "snapshots" / f"gen-{generation:06d}" / "manifest.json"
        return json.loads(path.read_text())["engine"]

    stale, exact = engine(2), engine(3)
    assert exact["bm25_slot"] != stale["bm25_slot"]  # written into the slot generation 2 does not read
    assert exact["bm25_avgdl"] > stale["bm25_avgdl"]
    missing = run("index", "reweight", "--index", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no index" in missing.stderr


def test_help_and_a_refused_option_load_no_index_or_model_code() -> None:
    # what `rag --help` and typer's option checks import: the commands' heavy modules load in their bodies
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "runner = CliRunner()\n"
        "assert runner.invoke(app, ['--help']).exit_code == 0\n"
        "assert runner.invoke(app, ['index', 'build', '--bogus']).exit_code == 2\n"
        "assert runner.invoke(app, ['adapt', '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'faiss', 'ranx', 'sqlalchemy', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_serve_splits_the_cores_over_every_batch_computing_at_once() -> None:
    from cli.serve import retrieval_threads

    assert retrieval_threads(cores=2, workers=1, concurrency=2) == 1  # this machine's default
    assert retrieval_threads(cores=16, workers=1, concurrency=2) == 8
    assert retrieval_threads(cores=16, workers=4, concurrency=2) == 2
    assert retrieval_threads(cores=2, workers=2, concurrency=2) == 1  # never none
