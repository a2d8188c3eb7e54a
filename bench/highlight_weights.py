"""Which sentences of a passage the generator reads: shared question terms (counted or weighed by idf),
plus the sentence's MaxSim with the question.

    python -m bench.highlight_weights [--answers eval/results/squad-dev-a-generate-150-cite/answers.jsonl] \
        [--index data/squad-dev-a-index] [--variants uniform,idf,uniform+4maxsim,maxsim] \
        [--result highlight_weights] [--led-on scifact,cisi]

Evidence shows each passage's ``RAG_EVIDENCE_HIGHLIGHT_SENTENCES`` best-matching sentences
(``Pipeline._highlights``). A sentence scores the question terms it shares, weighed as
``RAG_EVIDENCE_HIGHLIGHT_WEIGHTS`` says (``uniform`` counts them, ``idf`` sums their idf), plus
``RAG_EVIDENCE_HIGHLIGHT_MAXSIM_WEIGHT`` times its mean MaxSim with the question
(rag/generate/sentence_match.py). ``maxsim`` (weight 1000) is MaxSim alone, shared terms breaking its
ties. The first variant is the baseline.

1. Coverage, without the generator: the share of questions whose gold answer appears in the highlights
   of the top 1…5 passages, on 300 development questions (outside ``rag eval run --limit 300``'s sample),
   on that sample, and on every question of one article (1973 oil crisis) over an index of that
   article's passages and 40 others (as tests/test_pipeline.py builds it), where idf is measured
   within one subject; with the highlights' words per question and the share of the passages led by the
   start of the sentence they open inside.
2. End to end on the answers a ``rag eval run --generate`` stored (made with ``uniform``): each question
   whose highlights differ between the variants, with its gold passages or without them, is answered
   again with each; the others keep their stored answer (the same prompt gives the same answer at temperature
   0). EM, F1, citation accuracy and abstention over every stored question.
3. ``--led-on scifact,cisi`` (alone): on the first ``--questions`` test questions of each set, the share
   of the top passages led by the start of the sentence they open inside
   (``RAG_EVIDENCE_SENTENCE_HEAD_MAX_CHARS``): the sets without answer strings, where coverage cannot be
   counted.

``--answers ''`` measures coverage only; ``--no-abstention`` answers again only with the retrieved
passages (half the generations; the abstention column then keeps the stored answers').
Prints tables and writes bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.answer_copy import replay_pipeline
from bench.answer_levers import development_questions
from bench.common import DATASETS, ROOT, print_table, read_jsonl, write_result
from eval.answers import ABSTENTION_SPARE, ANSWER_K, answer_in_evidence, answer_record, score_answers, without_gold
from eval.datasets import Dataset, Query, load_dataset
from eval.runner import ensure_index, sample_queries
from rag.encode.encoder import Encoder
from rag.objects import Evidence, Hit
from rag.pipeline import Pipeline
from rag.settings import Settings

VARIANTS: dict[str, dict[str, Any]] = {
    "uniform": {"evidence_highlight_weights": "uniform", "evidence_highlight_maxsim_weight": 0.0},
    "idf": {"evidence_highlight_weights": "idf", "evidence_highlight_maxsim_weight": 0.0},
    "content": {"evidence_highlight_weights": "content", "evidence_highlight_maxsim_weight": 0.0},
    # the passages as retrieved, without the start of a sentence they open inside
    "uniform-as-retrieved": {
        "evidence_highlight_weights": "uniform",
        "evidence_highlight_maxsim_weight": 0.0,
        "evidence_sentence_head_max_chars": 0,
    },
    **{
        f"uniform+{w}maxsim": {"evidence_highlight_weights": "uniform", "evidence_highlight_maxsim_weight": float(w)}
        for w in (1, 2, 4, 8)
    },
    "idf+4maxsim": {"evidence_highlight_weights": "idf", "evidence_highlight_maxsim_weight": 4.0},
    # shared terms only break ties
    "maxsim": {"evidence_highlight_weights": "uniform", "evidence_highlight_maxsim_weight": 1000.0},
}
DEPTH = 5
ARTICLE = "1973 oil crisis"


def with_variant(pipeline: Pipeline, variant: str) -> Pipeline:
    """``pipeline`` with ``variant``'s highlights; snapshot, encoder and loaded generators shared."""
    settings = pipeline.settings.model_copy(update=VARIANTS[variant])
    return Pipeline(
        pipeline.snapshot, settings, pipeline.encoder, pipeline.generators, query_cache=pipeline.query_cache
    )


def highlights(pipeline: Pipeline, question: str, hits: Sequence[Hit]) -> list[str]:
    """The top hits' highlights in rank order (the evidence itself is ordered oldest first)."""
    return [e.highlight for e in evidence_in_rank_order(pipeline, question, hits)]


def evidence_in_rank_order(pipeline: Pipeline, question: str, hits: Sequence[Hit]) -> list[Evidence]:
    """The top hits' evidence, as a model reads it, in rank order."""
    shown = {e.chunk_id: e for e in pipeline.evidence(question, hits[:DEPTH], None)}
    return [shown[h.chunk_id] for h in hits[:DEPTH]]


def coverage(pipelines: dict[str, Pipeline], queries: Sequence[Query]) -> list[dict[str, Any]]:
    """Per variant: the share of ``queries`` with a gold answer in the top k passages' highlights, the
    highlights' words, the share of the top passages led by the start of the sentence they open inside
    (``RAG_EVIDENCE_SENTENCE_HEAD_MAX_CHARS``), and the milliseconds choosing them took (median over the
    questions)."""
    found = {w: [0.0] * DEPTH for w in pipelines}
    words = dict.fromkeys(pipelines, 0)
    led = dict.fromkeys(pipelines, 0.0)  # passages led by the start of the sentence they open inside
    took: dict[str, list[float]] = {w: [] for w in pipelines}
    baseline = next(iter(pipelines.values()))
    for query in queries:
        hits = baseline.retrieve(query.text).hits
        for variant, pipeline in pipelines.items():
            started = time.perf_counter()
            evidence = evidence_in_rank_order(pipeline, query.text, hits)
            took[variant].append((time.perf_counter() - started) * 1000)
            shown = [e.highlight for e in evidence]
            led[variant] += sum(e.snippet != h.text for e, h in zip(evidence, hits, strict=False)) / DEPTH
            words[variant] += sum(len(h.split()) for h in shown)
            for k in range(DEPTH):
                found[variant][k] += answer_in_evidence(query.answers, shown[: k + 1])
    n = len(queries)
    return [
        {
            "variant": w,
            **{f"top {k + 1}": found[w][k] / n for k in range(DEPTH)},
            "words": words[w] / n,
            "led": led[w] / n,
            "ms p50": float(np.median(took[w])),
        }
        for w in pipelines
    ]


def one_article_index(dataset: Dataset, base: Pipeline, index: Path) -> tuple[Pipeline, list[Query]]:
    """An index of one article's passages and 40 others (built at ``index`` if missing), and the
    article's questions."""
    from indexer.writer import IndexWriter
    from rag.index.snapshot import Snapshot
    from rag.objects import Document

    records = read_jsonl(DATASETS / "squad-dev-a" / "corpus.jsonl")
    article = [r for r in records if r["title"] == ARTICLE]
    if not (index / "CURRENT").exists():
        others = [r for r in records if r["title"] != ARTICLE][::25][:40]
        with IndexWriter(index, base.settings, base.encoder, show_progress=False) as writer:
            writer.upsert([Document(id=r["_id"], text=r["text"], title=r["title"]) for r in article + others])
    ids = {r["_id"] for r in article}
    queries = [q for q in dataset.queries if ids & set(dataset.qrels[q.id])]
    return Pipeline(Snapshot.load(index, base.settings), base.settings, base.encoder), queries


def end_to_end(
    pipelines: dict[str, Pipeline], dataset: Dataset, stored: Sequence[dict[str, Any]], abstention: bool = True
) -> dict[str, Any]:
    """The stored answers, with every question whose highlights differ between the variants answered
    again with each; without ``abstention``, only with its retrieved passages (the stored answers without
    the gold passages are kept, and so is their abstention score)."""
    queries = {q.id: q for q in dataset.queries}
    names = list(pipelines)
    baseline = pipelines[names[0]]
    records: dict[str, list[dict[str, Any]]] = {w: [] for w in pipelines}
    changed: list[dict[str, Any]] = []
    for row in stored:
        query, qrels = queries[row["id"]], dataset.qrels[row["id"]]
        # as rag eval run retrieves: deep enough that the evidence without the gold has as many passages
        retrieval = baseline.retrieve(query.text, top_k=max(ANSWER_K, baseline.settings.top_k) + ABSTENTION_SPARE)
        blind = without_gold(baseline, retrieval, qrels, baseline.settings.top_k)
        differs = any(
            highlights(baseline, query.text, r.hits) != highlights(other, query.text, r.hits)
            for r in ((retrieval, blind) if abstention else (retrieval,))
            for other in list(pipelines.values())[1:]
        )
        if not differs:
            for variant in pipelines:
                records[variant].append(row)
            continue
        again = {}
        for variant, pipeline in pipelines.items():
            fresh = answer_record(pipeline, retrieval, query, qrels, time.perf_counter(), abstention)
            again[variant] = {**row, **fresh}
            records[variant].append(again[variant])
        changed.append(
            {
                "question": query.text,
                "gold": query.answers[0] if query.answers else "",
                **{f"{w} answer": again[w]["prediction"] for w in pipelines},
                **{f"{w} f1": again[w]["f1"] for w in pipelines},
                **{f"{w} abstained without gold": again[w].get("without_gold_abstained") for w in pipelines},
            }
        )
    rows = []
    for variant, rows_of in records.items():
        scores = score_answers(rows_of)
        rows.append(
            {
                "variant": variant,
                "em": scores["em"],
                "f1": scores["f1"],
                "citation_accuracy": scores["citation_accuracy"],
                "abstention": scores["abstention"],
                "answered again": len(changed),
            }
        )
    better = {w: sum(c[f"{w} f1"] > c[f"{names[0]} f1"] for c in changed) for w in names[1:]}
    worse = {w: sum(c[f"{w} f1"] < c[f"{names[0]} f1"] for c in changed) for w in names[1:]}
    return {"rows": rows, "better": better, "worse": worse, "changed": changed}


def led_by_heads(name: str, questions: int) -> dict[str, Any]:
    """On the first ``questions`` test questions of developer set ``name`` (its index data/NAME-index,
    built if missing): the share of the top passages a model reads led by the start of the sentence
    they open inside, and the milliseconds their evidence took (median). Any set, answers or not."""
    dataset = load_dataset(DATASETS / name)
    longest = max(len(q.text) for q in dataset.queries)  # cisi asks in whole paragraphs, as rag eval run allows
    settings = Settings().model_copy(update={"max_question_chars": max(Settings().max_question_chars, longest)})
    snapshot = ensure_index(dataset, ROOT / "data" / f"{name}-index", settings, show_progress=True)
    pipeline = Pipeline(snapshot, settings, Encoder.from_settings(settings, snapshot.params.encoder_model))
    led, took = 0, []
    for query in dataset.queries[:questions]:
        hits = pipeline.retrieve(query.text).hits[:DEPTH]
        started = time.perf_counter()
        evidence = evidence_in_rank_order(pipeline, query.text, hits)
        took.append((time.perf_counter() - started) * 1000)
        led += sum(e.snippet != h.text for e, h in zip(evidence, hits, strict=True))
    n = min(questions, len(dataset.queries))
    return {"set": name, "questions": n, "led": led / (n * DEPTH), "ms p50": float(np.median(took))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", default="eval/results/squad-dev-a-generate-150-cite/answers.jsonl")
    parser.add_argument("--index", default="data/squad-dev-a-index")
    parser.add_argument("--questions", type=int, default=300, help="development and sample questions for coverage")
    parser.add_argument(
        "--variants", default="uniform,idf", help=f"of {', '.join(VARIANTS)}; the first is the baseline"
    )
    parser.add_argument("--no-abstention", action="store_true", help="answer again only with the retrieved passages")
    parser.add_argument("--result", default="highlight_weights")
    parser.add_argument("--led-on", default="", help="developer sets (scifact,cisi) to count led passages on, alone")
    args = parser.parse_args()
    if args.led_on:
        led = [led_by_heads(name, args.questions) for name in args.led_on.split(",")]
        print_table(led, ["set", "questions", "led", "ms p50"])
        write_result(args.result, {"led": led})
        return

    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: expected some of {', '.join(VARIANTS)}")
    base = replay_pipeline(args.index)
    pipelines = {w: with_variant(base, w) for w in variants}
    dataset = load_dataset(DATASETS / "squad-dev-a")
    article, article_queries = one_article_index(dataset, base, ROOT / "data" / "squad-one-article-index")
    covered = {
        f"{args.questions} development": coverage(pipelines, development_questions(dataset, args.questions)),
        f"{args.questions} eval sample": coverage(pipelines, sample_queries(dataset.queries, args.questions, seed=13)),
        f"{len(article_queries)} one article ({ARTICLE})": coverage(
            {w: with_variant(article, w) for w in variants}, article_queries
        ),
    }
    columns = ["variant", *(f"top {k + 1}" for k in range(DEPTH)), "words", "led", "ms p50"]
    for name, table in covered.items():
        print(f"\ngold answer in the highlights of the top k passages, {name} questions")
        print_table(table, columns)

    if not args.answers:
        write_result(args.result, {"coverage": covered})
        return
    stored = read_jsonl(ROOT / Path(args.answers))
    answered = end_to_end(pipelines, dataset, stored, abstention=not args.no_abstention)
    print(
        f"\nend to end, {len(stored)} stored answers ({args.answers}); better {answered['better']}, "
        f"worse {answered['worse']} of {len(answered['changed'])} answered again"
    )
    print_table(answered["rows"], ["variant", "em", "f1", "citation_accuracy", "abstention", "answered again"])
    write_result(args.result, {"answers": args.answers, "coverage": covered, **answered})


if __name__ == "__main__":
    main()
