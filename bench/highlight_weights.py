"""Which sentences of a passage the generator reads: question terms weighed by idf or all alike.

    python -m bench.highlight_weights [--answers eval/results/squad-dev-a-generate-150-cite/answers.jsonl] \
        [--index data/squad-dev-a-index] [--result highlight_weights]

Evidence shows each passage's ``RAG_EVIDENCE_HIGHLIGHT_SENTENCES`` best-matching sentences
(rag/generate/evidence.py ``highlight``). ``RAG_EVIDENCE_HIGHLIGHT_WEIGHTS`` scores a sentence by the
question terms it shares: ``uniform`` counts them, ``idf`` sums their idf.

1. Coverage, without the generator: the share of questions whose gold answer appears in the highlights
   of the top 1…5 passages, on 300 development questions (outside ``rag eval run --limit 300``'s sample),
   on that sample, and on every question of one article (1973 oil crisis) over an index of that
   article's passages and 40 others (as tests/test_pipeline.py builds it), where idf is measured
   within one subject; with the highlights' words per question.
2. End to end on the answers a ``rag eval run --generate`` stored (made with ``uniform``): each question
   whose highlights differ between the two, with its gold passages or without them, is answered again
   with both; the others keep their stored answer (the same prompt gives the same answer at temperature
   0). EM, F1, citation accuracy and abstention over every stored question.

``--answers ''`` measures coverage only. Prints tables and writes bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.answer_copy import replay_pipeline
from bench.answer_levers import development_questions
from bench.common import DATASETS, ROOT, print_table, read_jsonl, write_result
from eval.answers import ABSTENTION_SPARE, ANSWER_K, answer_in_evidence, answer_record, score_answers, without_gold
from eval.datasets import Dataset, Query, load_dataset
from eval.runner import sample_queries
from rag.objects import Hit
from rag.pipeline import Pipeline

WEIGHTS = ("uniform", "idf")
DEPTH = 5
ARTICLE = "1973 oil crisis"


def with_weights(pipeline: Pipeline, weights: str) -> Pipeline:
    """``pipeline`` with ``weights`` for its highlights; snapshot, encoder and loaded generators shared."""
    settings = pipeline.settings.model_copy(update={"evidence_highlight_weights": weights})
    return Pipeline(
        pipeline.snapshot, settings, pipeline.encoder, pipeline.generators, query_cache=pipeline.query_cache
    )


def highlights(pipeline: Pipeline, question: str, hits: Sequence[Hit]) -> list[str]:
    """The top hits' highlights in rank order (the evidence itself is ordered oldest first)."""
    shown = {e.chunk_id: e.highlight for e in pipeline.evidence(question, hits[:DEPTH], None)}
    return [shown[h.chunk_id] for h in hits[:DEPTH]]


def coverage(pipelines: dict[str, Pipeline], queries: Sequence[Query]) -> list[dict[str, Any]]:
    """Per weighting: the share of ``queries`` with a gold answer in the top k passages' highlights."""
    found = {w: [0.0] * DEPTH for w in pipelines}
    words = dict.fromkeys(pipelines, 0)
    for query in queries:
        hits = pipelines["uniform"].retrieve(query.text).hits
        for weights, pipeline in pipelines.items():
            shown = highlights(pipeline, query.text, hits)
            words[weights] += sum(len(h.split()) for h in shown)
            for k in range(DEPTH):
                found[weights][k] += answer_in_evidence(query.answers, shown[: k + 1])
    n = len(queries)
    return [
        {"weights": w, **{f"top {k + 1}": found[w][k] / n for k in range(DEPTH)}, "words": words[w] / n}
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


def end_to_end(pipelines: dict[str, Pipeline], dataset: Dataset, stored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stored answers, with every question whose highlights differ between the weightings answered
    again with each."""
    queries = {q.id: q for q in dataset.queries}
    uniform = pipelines["uniform"]
    records: dict[str, list[dict[str, Any]]] = {w: [] for w in pipelines}
    changed: list[dict[str, Any]] = []
    for row in stored:
        query, qrels = queries[row["id"]], dataset.qrels[row["id"]]
        # as rag eval run retrieves: deep enough that the evidence without the gold has as many passages
        retrieval = uniform.retrieve(query.text, top_k=max(ANSWER_K, uniform.settings.top_k) + ABSTENTION_SPARE)
        blind = without_gold(uniform, retrieval, qrels, uniform.settings.top_k)
        differs = any(
            highlights(uniform, query.text, r.hits) != highlights(pipelines["idf"], query.text, r.hits)
            for r in (retrieval, blind)
        )
        if not differs:
            for weights in pipelines:
                records[weights].append(row)
            continue
        again = {}
        for weights, pipeline in pipelines.items():
            again[weights] = {**row, **answer_record(pipeline, retrieval, query, qrels, time.perf_counter())}
            records[weights].append(again[weights])
        changed.append(
            {
                "question": query.text,
                "gold": query.answers[0] if query.answers else "",
                **{f"{w} answer": again[w]["prediction"] for w in pipelines},
                **{f"{w} f1": again[w]["f1"] for w in pipelines},
                **{f"{w} abstained without gold": again[w]["without_gold_abstained"] for w in pipelines},
            }
        )
    rows = []
    for weights, rows_of in records.items():
        scores = score_answers(rows_of)
        rows.append(
            {
                "weights": weights,
                "em": scores["em"],
                "f1": scores["f1"],
                "citation_accuracy": scores["citation_accuracy"],
                "abstention": scores["abstention"],
                "answered again": len(changed),
            }
        )
    better = sum(c["idf f1"] > c["uniform f1"] for c in changed)
    worse = sum(c["idf f1"] < c["uniform f1"] for c in changed)
    return {"rows": rows, "better": better, "worse": worse, "changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", default="eval/results/squad-dev-a-generate-150-cite/answers.jsonl")
    parser.add_argument("--index", default="data/squad-dev-a-index")
    parser.add_argument("--questions", type=int, default=300, help="development and sample questions for coverage")
    parser.add_argument("--result", default="highlight_weights")
    args = parser.parse_args()

    base = replay_pipeline(args.index)
    pipelines = {w: with_weights(base, w) for w in WEIGHTS}
    dataset = load_dataset(DATASETS / "squad-dev-a")
    article, article_queries = one_article_index(dataset, base, ROOT / "data" / "squad-one-article-index")
    covered = {
        f"{args.questions} development": coverage(pipelines, development_questions(dataset, args.questions)),
        f"{args.questions} eval sample": coverage(pipelines, sample_queries(dataset.queries, args.questions, seed=13)),
        f"{len(article_queries)} one article ({ARTICLE})": coverage(
            {w: with_weights(article, w) for w in WEIGHTS}, article_queries
        ),
    }
    columns = ["weights", *(f"top {k + 1}" for k in range(DEPTH)), "words"]
    for name, table in covered.items():
        print(f"\ngold answer in the highlights of the top k passages, {name} questions")
        print_table(table, columns)

    if not args.answers:
        write_result(args.result, {"coverage": covered})
        return
    stored = read_jsonl(ROOT / Path(args.answers))
    answered = end_to_end(pipelines, dataset, stored)
    print(
        f"\nend to end, {len(stored)} stored answers ({args.answers}); better {answered['better']}, "
        f"worse {answered['worse']} of {len(answered['changed'])} answered again"
    )
    print_table(answered["rows"], ["weights", "em", "f1", "citation_accuracy", "abstention", "answered again"])
    write_result(args.result, {"answers": args.answers, "coverage": covered, **answered})


if __name__ == "__main__":
    main()
