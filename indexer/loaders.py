"""Load documents from a BEIR directory, a JSONL file, or a folder of .txt/.md/.html files.

Every error names the file (and line, for JSONL) so a user can fix the input; the parsing itself
lives in :mod:`indexer.parsing`, shared with uploads through the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from indexer.parsing import JSONL_SUFFIXES, TEXT_SUFFIXES, documents_from_jsonl, html_to_text, title_and_text
from rag.errors import InputError
from rag.objects import Document

__all__ = ["html_to_text", "load_documents", "load_folder", "load_jsonl", "load_text_file"]


def load_documents(path: Path) -> list[Document]:
    """Detect the input's format and load it; raises :class:`InputError` on anything malformed."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return load_jsonl(path / "corpus.jsonl", default_source=path.name)
        return load_folder(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return load_jsonl(path)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return [load_text_file(path, path.parent)]
    raise InputError(
        f"{path}: unknown format {path.suffix or '(no suffix)'!r}; expected a BEIR directory, "
        f"a .jsonl file, or .txt/.md/.html files"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def load_jsonl(path: Path, default_source: str = "") -> list[Document]:
    return documents_from_jsonl(_read_text(path), str(path), default_source or path.stem)


def load_text_file(path: Path, root: Path) -> Document:
    title, text = title_and_text(_read_text(path), path.suffix)
    if not text:
        raise InputError(f"{path}: empty text")
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date().isoformat()
    return Document(
        id=path.relative_to(root).as_posix(),
        text=text,
        title=title or path.stem.replace("_", " ").replace("-", " "),
        source=str(path.resolve()),
        url=path.resolve().as_uri(),
        date=modified,
    )


def load_folder(root: Path) -> list[Document]:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in TEXT_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise InputError(f"{root}: no .txt, .md or .html files (and no corpus.jsonl)")
    return [load_text_file(p, root) for p in files]
