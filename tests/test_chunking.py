from __future__ import annotations

import itertools

import pytest

from indexer.chunking import chunk_documents, chunk_id, pack_units
from rag.encode.encoder import Encoder
from rag.errors import InputError
from rag.objects import Document
from rag.sentences import sentence_starts


def test_sentence_starts_split_on_terminal_punctuation_and_blank_lines() -> None:
    text = "One here. Two (yes.) Three!\n\nFour"
    starts = sentence_starts(text)
    assert [text[s:].split()[0] for s in starts] == ["One", "Two", "Three!", "Four"]


def test_pack_units_respects_budget_and_carries_overlap() -> None:
    units = [(0, 10), (10, 20), (20, 30), (30, 40)]
    # budget 25 fits two units; overlap 10 repeats exactly the previous unit
    assert pack_units(units, budget=25, overlap=10) == [(0, 20), (10, 30), (20, 40)]
    assert pack_units(units, budget=25, overlap=0) == [(0, 20), (20, 40)]
    # a unit longer than the overlap contributes its last `overlap` tokens
    assert pack_units([(0, 30), (30, 60)], budget=40, overlap=8) == [(0, 30), (22, 60)]
    assert pack_units(units, budget=100, overlap=10) == [(0, 40)]


def test_chunk_id_is_stable_and_content_sensitive() -> None:
    assert chunk_id("c", "d", 0, "t", "x") == chunk_id("c", "d", 0, "t", "x")
    assert (
        len(
            {
                chunk_id("c", "d", 0, "t", "x"),
                chunk_id("c", "d", 1, "t", "x"),
                chunk_id("c", "d", 0, "t", "y"),
                chunk_id("c", "e", 0, "t", "x"),
                chunk_id("other", "d", 0, "t", "x"),  # the same document id in another collection
            }
        )
        == 5
    )


def test_long_document_becomes_several_passages_that_fit_the_model(encoder: Encoder, scifact_docs) -> None:
    doc = scifact_docs[0]
    long_doc = Document(id="long", title=doc.title, text=" ".join(d.text for d in scifact_docs[:6]))
    max_tokens = 128
    [chunks] = chunk_documents([long_doc], encoder.tokenizer, max_tokens=max_tokens, overlap=24)
    assert len(chunks) >= 6
    budget = max_tokens - 2 - encoder.count_tokens([long_doc.title])[0] - 1
    lengths = encoder.count_tokens([c.encoded_text for c in chunks])
    # title + newline + passage + [CLS]/[SEP] never exceeds the model budget
    assert max(lengths) + 2 <= max_tokens
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # passages cover the text in order and overlap a little
    assert chunks[0].char_start == 0
    assert chunks[-1].char_end == len(long_doc.text.rstrip())
    for prev, nxt in itertools.pairwise(chunks):
        # overlapping by at most `overlap` pieces; none only when the next sentence alone fills the budget
        assert 0 <= prev.token_end - nxt.token_start <= 24
        assert nxt.char_start < prev.char_end or nxt.token_end - nxt.token_start + 24 > budget
        assert long_doc.text[prev.char_start : prev.char_end] == prev.text
    # passages end where a sentence ends
    ends_on_sentence = sum(long_doc.text[: c.char_end].rstrip().endswith((".", "!", "?", ")")) for c in chunks)
    assert ends_on_sentence >= len(chunks) - 1


def test_short_document_is_one_passage(encoder: Encoder) -> None:
    [chunks] = chunk_documents([Document(id="s", text="A short text. Two sentences.")], encoder.tokenizer)
    assert len(chunks) == 1 and chunks[0].text == "A short text. Two sentences."


def test_empty_document_is_rejected(encoder: Encoder) -> None:
    with pytest.raises(InputError, match="no text"):
        chunk_documents([Document(id="e", text="   ")], encoder.tokenizer)
