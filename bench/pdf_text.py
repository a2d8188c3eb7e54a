"""PDF text extraction: pypdf (plain and layout modes) against markitdown's PDF converter (pdfminer.six),
on PDFs whose source text is known: the committed groff PDF (tests/data, with its groff source) and an
fpdf2 PDF made here. Scores: source words found whole (recall), source word pairs found in order
(bigram recall: catches scrambled lines), pages told apart, and milliseconds per document.

    python -m bench.pdf_text            # needs markitdown[pdf] for its column (pip install 'markitdown[pdf]')
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from bench.common import ROOT, machine, print_table, write_result

DATA = ROOT / "tests" / "data"
FPDF_PAGES = [
    "The harbour master keeps the tide tables in a brass cabinet beside the chart room door, and every "
    "morning the keeper copies the day's high and low water onto the slate outside.",
    "The night ferry carries mail to the northern islands every Tuesday; when gales close the quay, the "
    "sacks wait in the net loft, where lobster pots are mended through the winter storms.",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _recall(source: list[str], found: list[str], n: int) -> float:
    want = Counter(tuple(source[i : i + n]) for i in range(len(source) - n + 1))
    have = Counter(tuple(found[i : i + n]) for i in range(len(found) - n + 1))
    return sum(min(c, have[g]) for g, c in want.items()) / max(1, sum(want.values()))


def _groff_source() -> str:
    lines = (DATA / "gettysburg-address.ms").read_text("utf-8").splitlines()
    return " ".join(line for line in lines if not line.startswith(".")).replace("\\(em", "—")


def _fpdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in FPDF_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _pypdf(mode: Literal["plain", "layout"]) -> Callable[[bytes], list[str]]:
    def extract(data: bytes) -> list[str]:
        from pypdf import PdfReader

        return [p.extract_text(extraction_mode=mode) or "" for p in PdfReader(io.BytesIO(data)).pages]

    return extract


def _markitdown(data: bytes) -> list[str]:
    from markitdown import MarkItDown, StreamInfo

    result = MarkItDown(enable_plugins=False).convert_stream(io.BytesIO(data), stream_info=StreamInfo(extension=".pdf"))
    return [result.markdown]  # one text: pdfminer's converter keeps no page boundaries


def main() -> None:
    documents = {
        "groff (gettysburg)": ((DATA / "gettysburg-address.pdf").read_bytes(), _groff_source(), 2),
        "fpdf2 (harbour)": (_fpdf(), " ".join(FPDF_PAGES), len(FPDF_PAGES)),
    }
    extractors: dict[str, Callable[[bytes], list[str]]] = {
        "pypdf plain": _pypdf("plain"),
        "pypdf layout": _pypdf("layout"),
        "markitdown (pdfminer)": _markitdown,
    }
    rows: list[dict[str, Any]] = []
    for doc_name, (data, source, n_pages) in documents.items():
        for name, extract in extractors.items():
            try:
                start = time.perf_counter()
                pages = extract(data)
                ms = (time.perf_counter() - start) * 1000
            except Exception as exc:  # a converter whose extra is not installed
                rows.append({"document": doc_name, "extractor": name, "error": exc.__class__.__name__})
                continue
            found = _words(" ".join(pages))
            rows.append(
                {
                    "document": doc_name,
                    "extractor": name,
                    "word recall": round(_recall(_words(source), found, 1), 4),
                    "bigram recall": round(_recall(_words(source), found, 2), 4),
                    "pages": f"{len(pages)}/{n_pages}",
                    "ms": round(ms, 1),
                }
            )
    print_table(rows, ["document", "extractor", "word recall", "bigram recall", "pages", "ms"])
    print(f"wrote {write_result('pdf_text', {'machine': machine(), 'rows': rows})}")


if __name__ == "__main__":
    main()
