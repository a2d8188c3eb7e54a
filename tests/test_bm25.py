from __future__ import annotations

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

import rag.index.bm25 as bm25_module
import rag.index.bm25_select as select_module
from rag.index.bm25 import BM25Index, BM25Params, idf_lucene, idf_okapi, top_n
from rag.index.bm25_tokenizer import make_tokenizer
from tests.conftest import read_jsonl

TINY = [["cat", "sat", "mat"], ["dog", "sat"], ["cat", "cat", "dog", "bird"], ["fish"]]


def test_okapi_scores_follow_the_formula() -> None:
    k1, b, eps = 1.5, 0.75, 0.25
    index = BM25Index.build(TINY, BM25Params("okapi", k1, b, eps))
    n, avgdl = 4, (3 + 2 + 4 + 1) / 4
    raw = {
        t: math.log(n - df + 0.5) - math.log(df + 0.5)
        for t, df in {"cat": 2, "sat": 2, "mat": 1, "dog": 2, "bird": 1, "fish": 1}.items()
    }
    mean_idf = sum(raw.values()) / len(raw)
    idf = {t: (v if v >= 0 else eps * mean_idf) for t, v in raw.items()}

    def expected(tf: int, dl: int, term: str) -> float:
        return idf[term] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    rows, scores = index.scores(["cat", "bird"])
    got = dict(zip(rows.tolist(), scores.tolist(), strict=True))
    assert got[0] == pytest.approx(expected(1, 3, "cat"))
    assert got[2] == pytest.approx(expected(2, 4, "cat") + expected(1, 4, "bird"))
    assert set(got) == {0, 2}
    # a repeated query token counts twice, as in rank_bm25
    _, twice = index.scores(["bird", "bird"])
    assert twice[0] == pytest.approx(2 * expected(1, 4, "bird"))


def test_lucene_idf_is_never_negative() -> None:
    df = np.array([1.0, 50.0, 99.0, 100.0])
    idf = idf_lucene(df, 100)
    assert np.all(idf > 0)
    assert idf[0] == pytest.approx(math.log(1 + (100 - 1 + 0.5) / 1.5))
    raw = np.log(100 - df + 0.5) - np.log(df + 0.5)
    okapi = idf_okapi(df, 100, 0.25)
    # okapi, like rank_bm25, replaces each negative idf by epsilon times the mean idf
    assert okapi.tolist() == pytest.approx(np.where(raw < 0, 0.25 * raw.mean(), raw).tolist())


def test_okapi_equals_rank_bm25_on_scifact(scifact_dir) -> None:
    tokenize = make_tokenizer(stopwords=True, stemmer="english")
    corpus = [tokenize(f"{d['title']} {d['text']}") for d in read_jsonl(scifact_dir / "corpus.jsonl")]
    queries = [tokenize(q["text"]) for q in read_jsonl(scifact_dir / "queries.jsonl", limit=40)]
    reference = BM25Okapi(corpus)
    index = BM25Index.build(corpus, BM25Params("okapi", reference.k1, reference.b, reference.epsilon))
    for query in queries:
        expected = reference.get_scores(query)
        rows, scores = index.search(query, 100)
        ref_top = np.lexsort((np.arange(len(expected)), -expected))[: len(rows)]
        assert len(rows) == min(100, int((expected != 0).sum()))
        assert rows.tolist() == ref_top.tolist()
        assert np.abs(scores - expected[rows]).max() < 1e-6


def test_add_and_delete_equal_a_rebuild() -> None:
    params = BM25Params("okapi", 1.5, 0.75, 0.25)
    grown = BM25Index.build(TINY[:2], params).add(TINY[2:])
    full = BM25Index.build(TINY, params)
    for query in (["cat"], ["dog", "fish"], ["sat", "bird", "cat"]):
        assert np.allclose(grown.scores(query)[1], full.scores(query)[1])
    kept = full.delete(np.array([1, 3]))
    rebuilt = BM25Index.build([TINY[0], TINY[2]], params)
    for query in (["cat"], ["dog"], ["fish"]):
        assert kept.scores(query)[0].tolist() == rebuilt.scores(query)[0].tolist()
        assert np.allclose(kept.scores(query)[1], rebuilt.scores(query)[1])


def test_allowed_mask_filters_rows(tmp_path) -> None:
    index = BM25Index.build(TINY, BM25Params())
    allowed = np.array([False, True, True, True])
    rows, _ = index.search(["cat", "dog"], 10, allowed)
    assert set(rows.tolist()) == {1, 2}
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", BM25Params())
    assert loaded.search(["cat", "dog"], 10)[0].tolist() == index.search(["cat", "dog"], 10)[0].tolist()


def test_tokenizer_options() -> None:
    assert make_tokenizer(stopwords=False, stemmer="none")("The Cats are running") == ["the", "cats", "are", "running"]
    assert make_tokenizer(stopwords=True, stemmer="english")("The Cats are running") == ["cat", "run"]


def test_top_n_breaks_a_tie_at_the_cut_by_the_lower_row() -> None:
    scores = np.array([1.0, 5.0, 3.0, 3.0, 3.0, 3.0, 0.5])
    rows = np.array([10, 11, 16, 15, 13, 14, 12])
    top_rows, top_scores = top_n(scores, rows, 3)
    assert top_rows.tolist() == [11, 13, 14] and top_scores.tolist() == [5.0, 3.0, 3.0]
    assert top_n(scores, rows, 7)[0].tolist() == [11, 13, 14, 15, 16, 10, 12]


@pytest.fixture(scope="module")
def scifact_bm25(scifact_dir) -> tuple[BM25Index, list[list[str]]]:
    """The default BM25 (Lucene idf, stemming, no stopword list) over scifact, and its queries."""
    tokenize = make_tokenizer(stopwords=False, stemmer="english")
    corpus = [tokenize(f"{d['title']} {d['text']}") for d in read_jsonl(scifact_dir / "corpus.jsonl")]
    queries = [tokenize(q["text"]) for q in read_jsonl(scifact_dir / "queries.jsonl")]
    return BM25Index.build(corpus, BM25Params()), queries


def exhaustive(index: BM25Index, query: list[str], n: int, allowed: np.ndarray | None = None):
    rows, scores = index.scores(query, allowed)
    return top_n(scores, rows, n)


@pytest.fixture(params=[select_module.SAMPLE_ROWS, 500])
def selecting(request, monkeypatch: pytest.MonkeyPatch) -> None:
    """search() through the compiled sum and the bounded selection, whatever the query's postings; with a
    sample of 500 rows the bound is below the n-th best (scifact's 5k rows are inside the default's)."""
    monkeypatch.setattr(bm25_module, "SELECT_MIN_POSTINGS", 0)
    monkeypatch.setattr(select_module, "SAMPLE_ROWS", request.param)


def test_the_selected_top_n_equals_the_exhaustive_ranking_bit_for_bit(scifact_bm25, selecting) -> None:
    index, queries = scifact_bm25
    queries = [*queries, ["the", "the", "of", "cell", "in", "cancer"], ["of", "and", "the"], ["nosuchword"]]
    for n in (10, 100):
        for query in queries:
            rows, scores = index.search(query, n)
            exhaustive_rows, exhaustive_scores = exhaustive(index, query, n)
            assert rows.tolist() == exhaustive_rows.tolist(), query
            assert scores.tobytes() == exhaustive_scores.tobytes(), query  # the same floats, not nearly


def test_the_selected_top_n_keeps_to_the_allowed_rows_and_ties(scifact_bm25, selecting) -> None:
    index, queries = scifact_bm25
    allowed = np.random.default_rng(7).random(len(index)) < 0.3
    for query in queries[:60]:
        rows, scores = index.search(query, 20, allowed)
        exhaustive_rows, exhaustive_scores = exhaustive(index, query, 20, allowed)
        assert rows.tolist() == exhaustive_rows.tolist()
        assert scores.tobytes() == exhaustive_scores.tobytes()
        assert allowed[rows].all()
    # many rows tied at the cut (the same passage text repeated): the lower rows win, as exhaustively
    tied = BM25Index.build([["word"] * 3] * 600 + [["rare", "word"]] * 30 + [["other"]] * 1000, BM25Params())
    for n in (35, 700):
        got = tied.search(["rare", "word"], n)[0].tolist()
        assert got == exhaustive(tied, ["rare", "word"], n)[0].tolist()
