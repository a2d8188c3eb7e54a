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

    extra = _jsonl(tmp_path / "e.jsonl", [{"_id": "sun", "text": "The Sun is the star at the centre."}])
    assert _run("index", "add", "--input", str(extra), "--index", index, "-q").returncode == 0
    deleted = _run("index", "delete", "--index", index, "cat", "tea")
    assert deleted.returncode == 0 and "2 deleted" in deleted.stderr
    stats = json.loads(_run("index", "stats", "--index", index, "--json").stdout)
    assert stats["documents"] == 2 and stats["generation"] == 3
    missing = _run("index", "delete", "--index", index, "nope")
    assert missing.returncode == 2 and "error: no such document(s)" in missing.stderr
    assert "ok: generation 3" in _run("index", "verify", "--index", index).stdout


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
