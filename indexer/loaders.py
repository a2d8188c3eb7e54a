"""Load documents from a BEIR directory, a JSONL file, a folder of files, or one file (.txt, .md, .html,
.pdf, .docx, .pptx, .xlsx).

Every error names the file (and line, for JSONL) so a user can fix the input; the parsing itself
lives in :mod:`indexer.parsing`, shared with uploads through the API. A corpus (a JSONL file, a BEIR
directory, a folder) is loaded without its documents that hold nothing to index (empty text, a scanned
PDF, a file that needs a password), and says which in :attr:`Corpus.skipped`; one file alone is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from indexer.converters import BINARY_SUFFIXES
from indexer.parsing import JSONL_SUFFIXES, TEXT_SUFFIXES, document_from_bytes, documents_from_jsonl, kept
from rag.errors import InputError
from rag.objects import Document

FILE_SUFFIXES = TEXT_SUFFIXES | BINARY_SUFFIXES


@dataclass(frozen=True)
class Corpus:
    """What was loaded, and why each document that was left out was (its file, line and reason)."""

    documents: list[Document]
    skipped: list[str]


def load_corpus(path: Path) -> Corpus:
    """Detect the input's format and load it; raises :class:`InputError` on anything malformed."""
    path = Path(path)
    skipped: list[str] = []
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            documents = load_jsonl(path / "corpus.jsonl", default_source=path.name, skipped=skipped)
        else:
            documents = load_folder(path, skipped)
    elif path.suffix.lower() in JSONL_SUFFIXES:
        documents = load_jsonl(path, skipped=skipped)
    elif path.suffix.lower() in FILE_SUFFIXES:
        documents = [load_file(path, path.parent)]
    else:
        raise InputError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; expected a BEIR directory, a .jsonl "
            f"file, or {', '.join(sorted(FILE_SUFFIXES))} files"
        )
    return Corpus(documents, skipped)


def load_documents(path: Path) -> list[Document]:
    """:func:`load_corpus`'s documents."""
    return load_corpus(path).documents


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def load_jsonl(path: Path, default_source: str = "", skipped: list[str] | None = None) -> list[Document]:
    data = _read_bytes(path)
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return documents_from_jsonl(content, str(path), default_source or path.stem, skipped)


def load_file(path: Path, root: Path) -> Document:
    """One file as a document whose id is its path under ``root``."""
    title, text, metadata = document_from_bytes(_read_bytes(path), str(path))
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date().isoformat()
    return Document(
        id=path.relative_to(root).as_posix(),
        text=text,
        title=title or path.stem.replace("_", " ").replace("-", " "),
        source=str(path.resolve()),
        url=path.resolve().as_uri(),
        date=modified,
        metadata=metadata,
    )


def load_folder(root: Path, skipped: list[str] | None = None) -> list[Document]:
    skipped = [] if skipped is None else skipped
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in FILE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise InputError(f"{root}: no {', '.join(sorted(FILE_SUFFIXES))} files (and no corpus.jsonl)")
    documents: list[Document] = []
    for path in files:
        kept(documents, skipped, load_file, path, root)
    if not documents:
        raise InputError(f"{root}: no document holds text to index; {len(files)} skipped, first {skipped[0]}")
    return documents
