"""Documents from raw content: JSON records, JSON Lines, plain text, Markdown, HTML, and the binary
formats of :mod:`indexer.converters` (PDF, Word, PowerPoint, Excel).

Shared by the file loaders (``indexer``) and uploads (``api``); every error says where (``file:line``)
so a user can fix the input. A document with nothing to index raises :class:`UnreadableDocumentError`;
where a caller passes ``skipped``, such documents are left out and their messages added to it instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, ClassVar

from indexer.converters import BINARY_SUFFIXES, convert
from rag.errors import InputError, UnreadableDocumentError
from rag.objects import PAGE_OFFSETS, Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_FIELDS = ("title", "source", "url", "date")


def document_from_record(record: dict[str, Any], where: str, default_source: str = "") -> Document:
    """A document from a JSON object with ``_id``/``id``, ``text`` and optional fields."""
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None or str(doc_id).strip() == "":
        raise InputError(f"{where}: document has no '_id' or 'id'")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r} has no 'text' string")
    if not text.strip():
        raise UnreadableDocumentError(f"{where}: document {doc_id!r} has empty text")
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


def documents_from_jsonl(
    content: str, where: str, default_source: str = "", skipped: list[str] | None = None
) -> list[Document]:
    """One document per non-empty line of JSON Lines text; ``where`` names the input in errors."""
    documents: list[Document] = []
    for line_no, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        at = f"{where}:{line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{at}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{at}: expected a JSON object, got {type(record).__name__}")
        kept(documents, skipped, document_from_record, record, at, default_source)
    if not documents:
        raise InputError(
            f"{where}: no documents" + (f"; {len(skipped)} skipped, first {skipped[0]}" if skipped else "")
        )
    return documents


def kept(documents: list[Document], skipped: list[str] | None, read: Callable[..., Document], *args: Any) -> None:
    """``read(*args)``'s document into ``documents``; one with nothing to index into ``skipped`` instead,
    where the caller keeps such a list (else it is raised)."""
    try:
        documents.append(read(*args))
    except UnreadableDocumentError as exc:
        if skipped is None:
            raise
        skipped.append(str(exc))


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


def title_and_text(raw: str, suffix: str) -> tuple[str, str]:
    """(title, text) of a .txt/.md/.html file's content; the title is empty when the content names none."""
    suffix = suffix.lower()
    if suffix in {".html", ".htm"}:
        return html_to_text(raw)
    text = raw.strip()
    title = ""
    if suffix in {".md", ".markdown"}:
        heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
        title = heading.group(1).strip() if heading else ""
    return title, text


def document_from_bytes(data: bytes, name: str) -> tuple[str, str, dict[str, Any]]:
    """(title, text, metadata) of one file's content by its suffix: text formats decoded as UTF-8, binary
    ones converted (their pages kept in ``metadata``)."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in BINARY_SUFFIXES:
        converted = convert(data, name, suffix)
        metadata = {PAGE_OFFSETS: list(converted.page_offsets)} if converted.page_offsets else {}
        return converted.title, converted.text, metadata
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    title, text = title_and_text(content, suffix)
    if not text:
        raise UnreadableDocumentError(f"{name}: empty text")
    return title, text, {}


def documents_from_upload(data: bytes, filename: str, default_source: str = "") -> list[Document]:
    """Documents in an uploaded file: .jsonl (one per line), .json (an object or a list of them), or one
    .txt/.md/.html/.pdf/.docx/.pptx/.xlsx document whose id is the file name. Strict: a document with
    nothing to index is refused by name, since the uploader is there to fix it."""
    name = filename.rsplit("/", 1)[-1].strip() or "upload"
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    source = default_source or name
    if suffix in JSONL_SUFFIXES or suffix == ".json":
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if suffix in JSONL_SUFFIXES:
            return documents_from_jsonl(content, name, source)
        return _documents_from_json(content, name, source)
    if suffix in TEXT_SUFFIXES | BINARY_SUFFIXES:
        title, text, metadata = document_from_bytes(data, name)
        stem = name.rsplit(".", 1)[0]
        title = title or stem.replace("_", " ").replace("-", " ")
        return [Document(id=name, text=text, title=title, source=source, metadata=metadata)]
    raise InputError(
        f"{name}: unknown format {suffix or '(no suffix)'!r}; expected .jsonl, .json, .txt, .md, .html, "
        ".pdf, .docx, .pptx or .xlsx"
    )


def _documents_from_json(content: str, name: str, source: str) -> list[Document]:
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: malformed JSON ({exc.msg} at line {exc.lineno})") from exc
    records = parsed if isinstance(parsed, list) else [parsed]
    if not records:
        raise InputError(f"{name}: no documents")
    documents = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"{name}[{i}]: expected a JSON object, got {type(record).__name__}")
        documents.append(document_from_record(record, f"{name}[{i}]", source))
    return documents
