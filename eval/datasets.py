"""BEIR-layout datasets: ``corpus.jsonl``, ``queries.jsonl`` (QA sets add ``answers``), ``qrels/test.tsv``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import InputError


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    queries: list[Query]  # only those with qrels, in file order
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def is_qa(self) -> bool:
        return any(q.answers for q in self.queries)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id \\t corpus-id \\t score`` with an optional header line."""
    if not path.exists():
        raise InputError(f"{path}: no qrels file (BEIR layout wants qrels/test.tsv)")
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        parts = line.rstrip("\n").split("\t")
        if not line.strip() or (line_no == 1 and parts[0] == "query-id"):
            continue
        if len(parts) != 3:
            raise InputError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(parts)}")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
        except ValueError as exc:
            raise InputError(f"{path}:{line_no}: relevance {parts[2]!r} is not an integer") from exc
    return qrels


def read_queries(path: Path) -> list[Query]:
    """``{"_id"|"id", "text", "answers"?}`` per line, in file order."""
    queries = []
    for line_no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{line_no}: malformed JSON ({exc.msg})") from exc
        qid = str(record.get("_id", record.get("id", "")))
        queries.append(Query(qid, str(record.get("text", "")), tuple(record.get("answers") or ())))
    return queries


def load_dataset(path: Path, split: str = "test") -> Dataset:
    path = Path(path)
    if not (path / "corpus.jsonl").exists() or not (path / "queries.jsonl").exists():
        raise InputError(f"{path}: not a BEIR dataset (needs corpus.jsonl and queries.jsonl)")
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    queries = [q for q in read_queries(path / "queries.jsonl") if q.id in qrels]
    if not queries:
        raise InputError(f"{path}: no query has qrels")
    return Dataset(path.name, path, queries, {q.id: qrels[q.id] for q in queries})
