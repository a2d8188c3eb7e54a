"""Real documents in: PDF (pages kept), DOCX, PPTX; scans and encrypted PDFs refused by name; a corpus with
empty documents indexed without them. Files are written by the test with the real libraries (fpdf2,
python-docx, python-pptx, pypdf), plus one real PDF committed (tests/data: the Gettysburg Address, public
domain, typeset by groff)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from docx import Document as DocxDocument
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from cli.main import app
from indexer.chunking import page_at
from indexer.loaders import load_corpus, load_documents
from indexer.parsing import documents_from_upload
from indexer.writer import IndexWriter
from rag.errors import InputError, UnreadableDocumentError
from rag.index.snapshot import Snapshot
from rag.objects import PAGE_OFFSETS
from rag.pipeline import Pipeline

DATA = Path(__file__).resolve().parent / "data"
PAGES = [
    "Chapter one. The harbour master keeps the tide tables in a brass cabinet.",
    "Chapter two. The night ferry carries mail to the northern islands every Tuesday.",
    "Chapter three. Lobster pots are mended in the net loft during the winter storms.",
]


def _pdf(pages: list[str], title: str = "Harbour notes") -> bytes:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _scanned_pdf() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (400, 200), "white").save(image, format="PNG")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(io.BytesIO(image.getvalue()), x=10, y=10, w=150)
    return bytes(pdf.output())


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf(PAGES[:1]))))
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _docx() -> bytes:
    doc = DocxDocument()
    doc.core_properties.title = "Lighthouse rota"
    doc.add_heading("Lighthouse rota", level=1)
    doc.add_paragraph("The lamp is lit by Ada on Mondays and by Tom on Fridays.")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Day", "Keeper"
    table.cell(1, 0).text, table.cell(1, 1).text = "Sunday", "Mirren"
    doc.add_page_break()
    doc.add_paragraph("Second page: in fog the foghorn sounds every thirty seconds from the north gallery.")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _pptx() -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for title, body in [("Tides", "Spring tides follow the full moon."), ("Storms", "Gales close the quay.")]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def test_page_at_finds_the_page_of_an_offset() -> None:
    assert page_at([], 10) is None
    assert [page_at([0, 100, 250], at) for at in (0, 99, 100, 249, 250, 9999)] == [1, 1, 2, 2, 3, 3]


def test_a_pdf_keeps_its_pages(tmp_path) -> None:
    path = tmp_path / "harbour.pdf"
    path.write_bytes(_pdf(PAGES))
    [doc] = load_documents(path)
    offsets = doc.metadata[PAGE_OFFSETS]
    assert doc.title == "Harbour notes" and len(offsets) == 3
    for number, text in enumerate(PAGES, start=1):
        at = doc.text.index(text[:30])
        assert page_at(offsets, at) == number


def test_the_committed_real_pdf_reads_page_by_page() -> None:
    [doc] = load_documents(DATA / "gettysburg-address.pdf")
    offsets = doc.metadata[PAGE_OFFSETS]
    assert len(offsets) == 2 and doc.text.startswith("The Gettysburg Address")
    assert page_at(offsets, doc.text.index("Four score and seven years ago")) == 1
    assert page_at(offsets, doc.text.index("shall not perish from the earth")) == 2


def _xlsx() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Catch"
    sheet.append(["Boat", "Crates"])
    sheet.append(["Morwenna", 42])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_office_documents_are_read(tmp_path) -> None:
    [word] = documents_from_upload(_docx(), "rota.docx")
    assert word.id == "rota.docx" and word.title == "Lighthouse rota"
    assert "lit by Ada on Mondays" in word.text and "Sunday | Mirren" in word.text
    offsets = word.metadata[PAGE_OFFSETS]  # the explicit page break
    assert page_at(offsets, word.text.index("lit by Ada")) == 1 and page_at(offsets, word.text.index("foghorn")) == 2
    [sheet] = documents_from_upload(_xlsx(), "catch.xlsx")
    assert "Morwenna" in sheet.text and "42" in sheet.text and PAGE_OFFSETS not in sheet.metadata
    [deck] = documents_from_upload(_pptx(), "sea.pptx")
    offsets = deck.metadata[PAGE_OFFSETS]  # slides are pages
    assert len(offsets) == 2 and page_at(offsets, deck.text.index("Gales close the quay")) == 2
    assert "<!-- Slide" not in deck.text


def test_scanned_and_encrypted_pdfs_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(UnreadableDocumentError, match=r"scan\.pdf: the PDF has no text layer \(a scan\?\)"):
        documents_from_upload(_scanned_pdf(), "scan.pdf")
    with pytest.raises(UnreadableDocumentError, match=r"locked\.pdf: the PDF is encrypted with a password"):
        documents_from_upload(_encrypted_pdf(), "locked.pdf")
    with pytest.raises(InputError, match=r"broken\.pdf: not a readable PDF"):
        documents_from_upload(b"%PDF-1.4 this is not a pdf", "broken.pdf")
    (tmp_path / "scan.pdf").write_bytes(_scanned_pdf())
    with pytest.raises(UnreadableDocumentError, match=r"scan\.pdf"):
        load_documents(tmp_path / "scan.pdf")  # one file alone is refused, not skipped


def test_a_corpus_with_empty_documents_indexes_the_rest(tmp_path) -> None:
    rows = [{"_id": str(i), "title": f"T{i}", "text": f"Passage number {i} about boats."} for i in range(5)]
    rows[1]["text"], rows[3]["text"] = "", "   "
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = load_corpus(corpus)
    assert [d.id for d in loaded.documents] == ["0", "2", "4"] and len(loaded.skipped) == 2
    assert "corpus.jsonl:2: document '1' has empty text" in loaded.skipped[0]
    result = CliRunner().invoke(app, ["index", "build", "--input", str(corpus), "--index", str(tmp_path / "ix"), "-q"])
    assert result.exit_code == 0, result.output
    assert "3 documents, 2 skipped" in result.output


def test_a_folder_skips_what_holds_no_text_and_names_it(tmp_path) -> None:
    (tmp_path / "notes.pdf").write_bytes(_pdf(PAGES[:2]))
    (tmp_path / "scan.pdf").write_bytes(_scanned_pdf())
    (tmp_path / "locked.pdf").write_bytes(_encrypted_pdf())
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "rota.docx").write_bytes(_docx())
    loaded = load_corpus(tmp_path)
    assert sorted(d.id for d in loaded.documents) == ["notes.pdf", "rota.docx"]
    assert len(loaded.skipped) == 3 and any("scan.pdf" in why and "no text layer" in why for why in loaded.skipped)
    assert any("locked.pdf" in why and "encrypted" in why for why in loaded.skipped)


@pytest.mark.slow
def test_pdf_and_docx_passages_are_cited_with_their_page(tmp_path, encoder, settings) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "harbour.pdf").write_bytes(_pdf(PAGES))
    (tmp_path / "in" / "rota.docx").write_bytes(_docx())
    with IndexWriter(tmp_path / "ix", settings, encoder, show_progress=False) as writer:
        writer.upsert(load_documents(tmp_path / "in") + load_documents(DATA / "gettysburg-address.pdf"), "docs")
    pipeline = Pipeline(Snapshot.load(tmp_path / "ix", settings), settings, encoder)
    # a page is a passage boundary: the three short pages are three passages, not one
    chunks = pipeline.snapshot.store.document_chunks("docs", "harbour.pdf", pipeline.snapshot.generation)
    assert [c.page for c in chunks] == [1, 2, 3]
    answer = pipeline.answer("When does the night ferry carry mail to the northern islands?", generate=False)
    top = answer.hits[0]
    assert top.doc_id == "harbour.pdf" and top.page == 2 and "night ferry" in top.text
    assert answer.evidence[0].page == 2
    hit = pipeline.retrieve("government of the people, by the people, for the people").hits[0]
    assert hit.doc_id == "gettysburg-address.pdf" and hit.page == 2
    hit = pipeline.retrieve("How often does the foghorn sound in fog?").hits[0]
    assert hit.doc_id == "rota.docx" and hit.page == 2
