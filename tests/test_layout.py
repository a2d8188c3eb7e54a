"""The rooms of ARCHITECTURE.md: who may import whom, read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "rag": {"indexer", "api", "ui", "eval", "cli", "connect"},
    "indexer": {"api", "ui", "eval", "cli", "connect"},
    "ui": {"rag", "indexer", "api", "eval", "cli"},
    "eval": {"api", "ui", "cli", "connect"},
    "api": {"ui", "eval", "cli", "connect"},
    # the clients of the HTTP API (MCP, retrievers) know it only over HTTP, like the UI
    "connect": {"rag", "indexer", "api", "ui", "eval", "cli"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports (absolute imports, anywhere in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_what_they_may(room: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[room])
        for path in sorted((ROOT / room).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from indexer.writer import IndexWriter\n    import api.app\n", "utf-8")
    assert imported_packages(module) == {"indexer", "api"}


def test_rag_has_no_flat_prefix_families() -> None:
    """Codecs, generators, encoders and index kinds live in their sub-packages, not as name prefixes."""
    flat = [p.name for p in (ROOT / "rag").glob("*.py")]
    assert [n for n in flat if n.startswith(("codec_", "generator_", "encoder", "index", "bm25"))] == []
