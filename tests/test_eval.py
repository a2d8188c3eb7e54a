"""Evaluation plumbing: metrics checked against ranx and by hand, SQuAD scoring, report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ranx import Qrels, Run, evaluate

from eval.answers import answer_in_evidence, exact_match, normalize_answer, token_f1
from eval.compare import compare_runs
from eval.datasets import load_dataset
from eval.metrics import document_scores, retrieval_metrics
from eval.runner import EvalOptions, run_eval
from rag.errors import InputError
from rag.objects import Stage
from rag.retrieval import FALLBACK_MODE, MODE_STAGES
from tests.conftest import read_jsonl

QRELS = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}


def test_perfect_run_scores_one_and_reversed_less() -> None:
    perfect = {"q1": {"a": 3.0, "x": 2.0}, "q2": {"b": 3.0, "c": 2.0, "x": 1.0}}
    means, per_query = retrieval_metrics(QRELS, perfect)
    assert means == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert per_query["ndcg@10"] == {"q1": 1.0, "q2": 1.0}
    reversed_run = {"q1": {"a": 1.0, "x": 2.0}, "q2": {"b": 1.0, "c": 2.0, "x": 3.0}}
    means, _ = retrieval_metrics(QRELS, reversed_run)
    assert means["ndcg@10"] < 1.0 and means["recall@10"] == 1.0
    # q1: relevant at rank 2 → MRR 1/2; q2: first relevant at rank 2 → 1/2
    assert means["mrr@10"] == pytest.approx(0.5)
    # q1 nDCG = 1/log2(3); q2 = (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert means["ndcg@10"] == pytest.approx((1 / math.log2(3) + q2) / 2)
    expected = evaluate(Qrels(QRELS), Run(reversed_run), ["ndcg@10", "mrr@10"])
    assert means["ndcg@10"] == pytest.approx(expected["ndcg@10"])


def test_a_query_with_nothing_retrieved_counts_as_zero() -> None:
    means, per_query = retrieval_metrics(QRELS, {"q1": {"a": 1.0}})
    assert per_query["recall@10"] == {"q1": 1.0, "q2": 0.0}
    assert means["recall@10"] == pytest.approx(0.5)


def test_document_score_is_the_max_over_passages() -> None:
    chunk_to_doc = {"c1": "d1", "c2": "d1", "c3": "d2"}
    assert document_scores([("c2", 0.9), ("c3", 0.5), ("c1", 0.2)], chunk_to_doc) == {"d1": 0.9, "d2": 0.5}


def test_squad_normalisation_and_scores() -> None:
    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # precision 1/1, recall 1/2 → F1 2/3; the max over gold answers counts
    assert token_f1("Denver", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert token_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert token_f1("nothing", ["Denver Broncos"]) == 0.0
    assert answer_in_evidence(["$12"], ["oil rose to $12 by March"]) == 1.0  # "12" after normalisation
    assert answer_in_evidence(["1974"], ["in 19745 units"]) == 0.0  # whole tokens only


def _tiny_dataset(root: Path, squad_dir: Path) -> Path:
    """A BEIR-layout QA set: the 1973 oil crisis article plus 20 other paragraphs, 8 questions."""
    corpus = read_jsonl(squad_dir / "corpus.jsonl")
    oil = [r for r in corpus if r["title"] == "1973 oil crisis"][:8]
    keep = oil + [r for r in corpus[::60] if r["title"] != "1973 oil crisis"][:20]
    ids = {r["_id"] for r in keep}
    qrels = [line.split("\t") for line in (squad_dir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    wanted = [(q, d) for q, d, _ in qrels if d in ids][:8]
    queries = {q["_id"]: q for q in read_jsonl(squad_dir / "queries.jsonl")}
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    (root / "queries.jsonl").write_text(
        "".join(json.dumps(queries[q]) + "\n" for q, _ in wanted)
        + json.dumps({"_id": "no-qrels", "text": "unjudged"})
        + "\n"
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in wanted)
    )
    return root


def test_run_writes_report_with_every_stage(tmp_path, squad_dir, settings) -> None:
    dataset = _tiny_dataset(tmp_path / "tiny", squad_dir)
    assert len(load_dataset(dataset).queries) == 8  # the unjudged query is left out
    report = run_eval(
        EvalOptions(dataset, tmp_path / "run", limit=0, generate=True, show_progress=False, warmup=1), settings
    )
    assert report["dataset"] == "tiny" and report["n_queries"] == 8
    others = [stage for mode, stage in MODE_STAGES.items() if mode != FALLBACK_MODE]
    assert list(report["stages"]) == ["bm25", "dense", "rrf", *others, Stage.FINAL]
    # too small an index to choose for: auto used the fallback, and the report says so
    assert report["maxsim_mode"] == {
        "in_use": FALLBACK_MODE,
        "setting": "auto",
        "weight_in_use": 1.0,
        "weight_setting": "auto",
        "chosen": None,
    }
    assert (
        "MaxSim weight 1 (setting `auto`; the index has no recorded choice)"
        in (tmp_path / "run" / "report.md").read_text()
    )
    assert report["final_stage"] == Stage.FINAL
    for values in report["stages"].values():
        assert set(values) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_ms"}
        assert 0.0 < values["ndcg@10"] <= 1.0 and values["latency_ms"]["p95"] >= values["latency_ms"]["p50"] > 0
    assert report["stages"][Stage.FINAL]["latency_ms"]["p50"] >= report["stages"]["rrf"]["latency_ms"]["p50"]
    answers = report["answers"]
    assert answers["n"] == 8 and 0.0 <= answers["em"] <= answers["f1"] + 1e-9 <= 1.0
    assert 0.5 <= answers["answer_recall@5"] <= 1.0
    stored = read_jsonl(tmp_path / "run" / "answers.jsonl")
    assert all((row["cited_how"] is None) == (not row["cited"]) for row in stored)  # how each answer was cited
    cited_how = [row["cited_how"] for row in stored if row["cited"]]
    assert set(cited_how) <= {"model", "matched", "selected"}
    assert answers["cited_matched"] == (cited_how.count("matched") / len(cited_how) if cited_how else None)
    for name in ("report.json", "report.md", "per_query.json", "answers.jsonl", "metrics_per_stage.png", "latency.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert "| rrf+maxsim |" in (tmp_path / "run" / "report.md").read_text()
    assert report["config"]["seed"] == 13 and report["versions"]["ranx"]

    # a second run reusing the index, on a sample, compares against the first
    again = run_eval(
        EvalOptions(
            dataset, tmp_path / "run2", index=tmp_path / "run" / "index", limit=5, show_progress=False, warmup=1
        ),
        settings,
    )
    assert again["n_queries"] == 5 and "em" not in json.dumps(again.get("answers", {})).replace('"em": null', "")
    rows = compare_runs(tmp_path / "run", tmp_path / "run2")
    assert {r["stage"] for r in rows} == set(report["stages"])
    assert all(r["n"] == 5 and 0.0 <= r["p_value"] <= 1.0 for r in rows)


def test_a_query_longer_than_the_api_allows_is_evaluated(tmp_path, squad_dir, settings) -> None:
    """cisi has a 2,023-character query: `rag eval run` stopped on it ("the question is longer than 2000")."""
    dataset = _tiny_dataset(tmp_path / "tiny", squad_dir)
    long_query = "What did the 1973 oil crisis do to prices? " * 60
    first_doc = json.loads((dataset / "corpus.jsonl").read_text().splitlines()[0])["_id"]
    with open(dataset / "queries.jsonl", "a") as handle:
        handle.write(json.dumps({"_id": "long", "text": long_query}) + "\n")
    with open(dataset / "qrels" / "test.tsv", "a") as handle:
        handle.write(f"long\t{first_doc}\t1\n")
    assert len(long_query) > settings.max_question_chars
    report = run_eval(EvalOptions(dataset, tmp_path / "run", show_progress=False, warmup=1), settings)
    assert report["n_queries"] == 9 and report["config"]["settings"]["max_question_chars"] >= len(long_query.strip())


def test_bad_datasets(tmp_path) -> None:
    with pytest.raises(InputError, match="not a BEIR dataset"):
        load_dataset(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    with pytest.raises(InputError, match="no qrels file"):
        load_dataset(tmp_path)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q\td\tnot-a-number\n")
    with pytest.raises(InputError, match=r"test\.tsv:1"):
        load_dataset(tmp_path)
    with pytest.raises(InputError, match="not an evaluation run"):
        compare_runs(tmp_path, tmp_path)
