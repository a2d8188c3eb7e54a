from __future__ import annotations

import pytest

from indexer.loaders import load_documents
from indexer.parsing import html_to_text
from rag.errors import InputError


def test_beir_directory(scifact_dir) -> None:
    docs = load_documents(scifact_dir)
    assert len(docs) == 5183
    assert docs[0].id and docs[0].title and docs[0].text and docs[0].source == "scifact"


def test_jsonl_keeps_fields(tmp_path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": "x1", "title": "T", "text": "Body.", "url": "https://e.org/x", "date": "2023-02-01", '
        '"source": "news", "metadata": {"lang": "en"}}\n\n{"_id": 7, "text": "Other."}\n'
    )
    first, second = load_documents(path)
    assert (first.id, first.title, first.url, first.date, first.source) == (
        "x1",
        "T",
        "https://e.org/x",
        "2023-02-01",
        "news",
    )
    assert first.metadata == {"lang": "en"}
    assert second.id == "7" and second.source == "docs"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', r"docs.jsonl:2: malformed JSON"),
        ('{"id": "a", "text": "   "}\n', r"docs.jsonl:1: document 'a' has empty text"),
        ('{"text": "no id"}\n', r"docs.jsonl:1: document has no '_id' or 'id'"),
        ('["a list"]\n', r"docs.jsonl:1: expected a JSON object"),
        ('{"id": "a", "text": "x", "date": 5}\n', r"docs.jsonl:1: field 'date'"),
        ("", r"docs.jsonl: no documents"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_documents(path)


def test_folder_of_text_markdown_and_html(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Plain text here.")
    (tmp_path / "sub" / "b.md").write_text("# Guide Title\n\nSome *markdown* body.")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page T</title><style>p{}</style></head><body><p>Hello &amp; bye</p>"
        "<script>var x=1;</script></body></html>"
    )
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    docs = {d.id: d for d in load_documents(tmp_path)}
    assert set(docs) == {"a.txt", "sub/b.md", "c.html"}
    assert docs["sub/b.md"].title == "Guide Title"
    assert docs["c.html"].title == "Page T" and docs["c.html"].text == "Hello & bye"
    assert docs["a.txt"].url.startswith("file://") and len(docs["a.txt"].date) == 10


def test_unreadable_and_unknown_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_documents(tmp_path / "missing.jsonl")
    bad = tmp_path / "x.csv"
    bad.write_text("a,b")
    with pytest.raises(InputError, match=r"unknown format '\.csv'"):
        load_documents(bad)
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match=r"l\.txt: not UTF-8"):
        load_documents(latin)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no \.docx, .* \.txt, \.xlsx files"):
        load_documents(empty)


def test_html_to_text_keeps_blocks_apart() -> None:
    title, text = html_to_text("<title> X </title><h1>Head</h1><p>One.</p><p>Two.</p>")
    assert title == "X" and text == "Head\n\nOne.\n\nTwo."
