"""A ``kill -9`` of an index update at a random moment leaves the previous snapshot whole."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from rag.index.snapshot import Snapshot
from rag.settings import Settings
from tests.conftest import read_jsonl

RAG = [sys.executable, "-m", "cli"]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(RAG + args, capture_output=True, text=True, timeout=600, check=False)


def test_kill_9_during_update_leaves_a_consistent_index(tmp_path, scifact_dir, settings: Settings) -> None:
    records = read_jsonl(scifact_dir / "corpus.jsonl", limit=70)
    base, more = tmp_path / "base.jsonl", tmp_path / "more.jsonl"
    _write_jsonl(base, records[:10])
    _write_jsonl(more, records[10:])
    index = tmp_path / "ix"
    assert _run(["index", "build", "--input", str(base), "--index", str(index), "-q"]).returncode == 0

    # how long an uninterrupted update takes, on a copy
    start = time.perf_counter()
    probe = _run(["index", "build", "--input", str(more), "--index", str(tmp_path / "probe"), "-q"])
    assert probe.returncode == 0, probe.stderr
    duration = time.perf_counter() - start

    seed = int(os.environ.get("RAG_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash seed {seed}, update takes {duration:.1f} s")
    outcomes = []
    for _ in range(3):
        delay = rng.uniform(0.3, duration * 1.02)
        proc = subprocess.Popen(
            [*RAG, "index", "add", "--input", str(more), "--index", str(index), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        snapshot = Snapshot.load(index, settings)
        snapshot.verify()  # checksums, row counts of all three indexes, store rows all agree
        documents = snapshot.stats()["documents"]
        assert documents in (10, 70), f"seed {seed}, delay {delay:.2f}: {documents} documents"
        assert {str(d) for d in snapshot.doc_ids} <= {r["_id"] for r in records}
        outcomes.append(documents)
        snapshot.store.close()
        if documents == 70:  # the kill came after the commit: start again from the base
            assert _run(["index", "delete", "--index", str(index), *[r["_id"] for r in records[10:]]]).returncode == 0

    # the next writer rolls back whatever the killed ones left and completes the update
    finish = _run(["index", "add", "--input", str(more), "--index", str(index), "-q"])
    assert finish.returncode == 0, finish.stderr
    snapshot = Snapshot.load(index, settings)
    snapshot.verify()
    assert snapshot.stats()["documents"] == 70
    assert not list((index / "snapshots").glob("*.tmp"))
