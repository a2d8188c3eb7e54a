"""Load documents from a BEIR directory, a JSONL file, or a folder of .txt/.md/.html files.

Every error names the file (and line, for JSONL) so a user can fix the input.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from rag.datatypes import Document
from rag.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_FIELDS = ("title", "source", "url", "date")


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


def document_from_record(record: dict[str, Any], where: str, default_source: str = "") -> Document:
    """A document from a JSON object with ``_id``/``id``, ``text`` and optional fields."""
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None or str(doc_id).strip() == "":
        raise InputError(f"{where}: document has no '_id' or 'id'")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r} has no 'text' string")
    if not text.strip():
        raise InputError(f"{where}: document {doc_id!r} has empty text")
    fields = {f: record.get(f) for f in _FIELDS}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: field {name!r} of document {doc_id!r} must be a string")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{where}: 'metadata' of document {doc_id!r} must be an object")
    return Document(
        id=str(doc_id),
        text=text,
        title=(fields["title"] or "").strip(),
        source=fields["source"] or default_source,
        url=fields["url"] or "",
        date=fields["date"] or "",
        metadata=metadata,
    )


def load_jsonl(path: Path, default_source: str = "") -> list[Document]:
    documents = []
    content = _read_text(path)
    for line_no, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
        documents.append(document_from_record(record, where, default_source or path.stem))
    if not documents:
        raise InputError(f"{path}: no documents")
    return documents


class _HTMLText(HTMLParser):
    """Visible text and <title> of an HTML page (script and style dropped)."""

    _SKIP: ClassVar[frozenset[str]] = frozenset({"script", "style", "noscript", "template"})
    _BLOCK: ClassVar[frozenset[str]] = frozenset(
        {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(tag)
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if any(t in self._SKIP for t in self._stack):
            return
        if self._stack and self._stack[-1] == "title":
            self.title += data
            return
        self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))
    text = re.sub(r"\s*\n\s*\n\s*", "\n\n", text).strip()
    return parser.title.strip(), text


def load_text_file(path: Path, root: Path) -> Document:
    raw = _read_text(path)
    suffix = path.suffix.lower()
    title = ""
    if suffix in {".html", ".htm"}:
        title, text = html_to_text(raw)
    else:
        text = raw.strip()
        if suffix in {".md", ".markdown"}:
            heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
            title = heading.group(1).strip() if heading else ""
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
