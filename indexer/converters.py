"""Text out of binary documents: PDF through pypdf (page by page, so passages know their page), Word
through python-docx (its page breaks kept), PowerPoint and Excel through markitdown (slides are pages).

python-docx over markitdown for Word: markitdown's converter (mammoth) drops page breaks, and a Word
file knows its pages only by them: the breaks Word recorded when it last laid the document out
(``w:lastRenderedPageBreak``), else the explicit ones.

pypdf over markitdown for PDF (bench/pdf_text.py): markitdown's PDF converter (pdfminer) returns one
text without page boundaries, and citations need the page; it found 1.4 points more of the words on
the groff PDF, the same share of word pairs, and took 60 times as long. A PDF with no text layer (a
scan) or one that needs a password is refused by name: it holds nothing this service could index.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from rag.errors import InputError, UnreadableDocumentError

PDF_SUFFIXES = {".pdf"}
WORD_SUFFIXES = {".docx"}
OFFICE_SUFFIXES = {".pptx", ".xlsx"}
BINARY_SUFFIXES = PDF_SUFFIXES | WORD_SUFFIXES | OFFICE_SUFFIXES
_SLIDE = re.compile(r"^<!-- Slide number: (\d+) -->\s*$", re.MULTILINE)
_MIN_PAGE_CHARS = 1  # a page with fewer characters of text has none (a scanned image)


@dataclass(frozen=True)
class Converted:
    """A binary document's title (empty: none named), text, and where each page starts (empty: no pages)."""

    title: str
    text: str
    page_offsets: tuple[int, ...]


def _join_pages(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    """The pages' texts in one, two newlines apart, and the offset each page starts at."""
    offsets, parts, at = [], [], 0
    for page in pages:
        offsets.append(at)
        parts.append(page)
        at += len(page) + 2
    return "\n\n".join(parts), tuple(offsets)


def _tidy(page_text: str) -> str:
    """A page's layout-mode text with the runs of spaces that place words on the page collapsed. Layout
    mode, not plain: on the groff PDF in tests/data it finds 97.5% of the words and 97.1% of the word pairs,
    plain 93.9% and 87.7% (plain splits kerned words, "lar ger"); bench/pdf_text.py."""
    text = re.sub(r"[ \t]+", " ", page_text)
    return re.sub(r"\s*\n\s*\n\s*", "\n\n", re.sub(r" ?\n ?", "\n", text)).strip()


def pdf_text(data: bytes, name: str) -> Converted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # an owner password alone still lets anyone read
            raise UnreadableDocumentError(f"{name}: the PDF is encrypted with a password; decrypt it first")
        pages = [_tidy(page.extract_text(extraction_mode="layout") or "") for page in reader.pages]
        title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    except UnreadableDocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{name}: not a readable PDF ({exc.__class__.__name__}: {exc})") from exc
    except NotImplementedError as exc:  # pypdf's word for an encryption scheme it cannot open
        raise UnreadableDocumentError(f"{name}: the PDF is encrypted in a way that cannot be opened ({exc})") from exc
    if not pages:
        raise UnreadableDocumentError(f"{name}: the PDF has no pages")
    if sum(len(p) for p in pages) < _MIN_PAGE_CHARS:
        raise UnreadableDocumentError(
            f"{name}: the PDF has no text layer (a scan?): run it through OCR (e.g. ocrmypdf) first"
        )
    text, offsets = _join_pages(pages)
    return Converted(title, text, offsets)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_PAGE = "\f"  # where a page starts, while the text is assembled


def _docx_blocks(document: Any, rendered: bool) -> list[str]:
    """The body's paragraphs and tables in order, as text; a page break is :data:`_PAGE`."""
    from docx.table import Table

    blocks = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            blocks.append("\n".join(rows))
            continue
        parts = []
        if not rendered and block.paragraph_format.page_break_before:
            parts.append(_PAGE)
        for node in block._p.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{_W}tab":
                parts.append("\t")
            elif node.tag == f"{_W}lastRenderedPageBreak":
                parts.append(_PAGE if rendered else "")
            elif node.tag == f"{_W}br":
                parts.append(_PAGE if node.get(f"{_W}type") == "page" and not rendered else "\n")
        blocks.append("".join(parts))
    return blocks


def docx_text(data: bytes, name: str) -> Converted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError) as exc:
        raise InputError(f"{name}: not a readable .docx file ({exc.__class__.__name__})") from exc
    rendered = any(True for _ in document.element.body.iter(f"{_W}lastRenderedPageBreak"))
    whole = "\n\n".join(_docx_blocks(document, rendered))
    pages = [_tidy(page) for page in whole.split(_PAGE)]
    pages = pages[1:] if pages and not pages[0] else pages  # a break before the first words starts nothing
    if not any(pages):
        raise UnreadableDocumentError(f"{name}: the .docx file holds no text")
    text, offsets = _join_pages(pages)
    return Converted(document.core_properties.title.strip(), text, offsets if len(pages) > 1 else ())


def office_text(data: bytes, name: str, suffix: str) -> Converted:
    from markitdown import MarkItDown, StreamInfo

    try:
        result = MarkItDown(enable_plugins=False).convert_stream(
            io.BytesIO(data), stream_info=StreamInfo(extension=suffix, filename=name)
        )
    except Exception as exc:  # markitdown wraps each converter's own failure in its own classes
        raise InputError(f"{name}: not a readable {suffix} file ({exc.__class__.__name__})") from exc
    markdown = result.markdown or ""
    offsets: tuple[int, ...] = ()
    if suffix == ".pptx" and _SLIDE.search(markdown):
        slides = [s.strip() for s in _SLIDE.split(markdown)[2::2]]
        markdown, offsets = _join_pages(slides)
    text = markdown.strip()
    if not text:
        raise UnreadableDocumentError(f"{name}: the {suffix} file holds no text")
    lead = len(markdown) - len(markdown.lstrip())
    return Converted((result.title or "").strip(), text, tuple(max(0, o - lead) for o in offsets))


def convert(data: bytes, name: str, suffix: str) -> Converted:
    """The text of a binary document by its suffix (one of :data:`BINARY_SUFFIXES`)."""
    if suffix in PDF_SUFFIXES:
        return pdf_text(data, name)
    if suffix in WORD_SUFFIXES:
        return docx_text(data, name)
    if suffix in OFFICE_SUFFIXES:
        return office_text(data, name, suffix)
    raise InputError(f"{name}: no converter for {suffix!r}")
