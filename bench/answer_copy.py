"""Copying a short answer from the evidence (rag/generate/answer_copy.py), measured on stored answers.

    python -m bench.answer_copy --answers eval/results/squad-dev-a-generate-150/answers.jsonl \
        [--choose-on eval/results/squad-dev-a-generate/answers.jsonl] [--index DIR] [--result NAME]

Only the checking changes, so the answers a run of ``rag eval run --generate`` stored are checked again:
each question is retrieved again on the index and its evidence rebuilt as the pipeline builds it (the
generator's token budget included), then each stored answer is checked with and without the copy at
each bound of the grid. The bounds are chosen on ``--choose-on`` (its questions that are not in
``--answers``), and reported on ``--answers``. EM and F1 are SQuAD's. Prints a table and writes
bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench.common import DATASETS, ROOT, print_table, read_jsonl, write_result
from eval.answers import exact_match, token_f1
from eval.datasets import load_dataset
from eval.runner import ensure_index
from rag.encode.encoder import Encoder
from rag.generate.answer_text import answer_key_text, check_answer
from rag.generate.evidence import instruction_texts
from rag.objects import Evidence
from rag.pipeline import Pipeline, known_text
from rag.settings import Settings

GRID: tuple[tuple[int, float], ...] = tuple(
    (words, similarity) for words in (3, 6, 10) for similarity in (0.6, 0.7, 0.75, 0.8, 0.9)
)


def replay_pipeline(index: str) -> Pipeline:
    """The default pipeline over squad-dev-a's index at ``index`` (built there if missing), as answers are
    replayed on it."""
    settings = Settings()
    snapshot = ensure_index(load_dataset(DATASETS / "squad-dev-a"), ROOT / index, settings, show_progress=True)
    return Pipeline(snapshot, settings, Encoder.from_settings(settings, snapshot.params.encoder_model))


def evidence_of(pipeline: Pipeline, rows: Sequence[dict[str, Any]]) -> list[list[Evidence]]:
    """Each stored question's evidence, rebuilt as the pipeline built it for the answer."""
    generator = pipeline.generator()
    return [pipeline.evidence(r["question"], pipeline.retrieve(r["question"]).hits, generator) for r in rows]


def scored(
    pipeline: Pipeline, rows: Sequence[dict[str, Any]], evidence: Sequence[list[Evidence]], bounds: tuple[int, float]
) -> dict[str, Any]:
    """EM and F1 of the stored answers checked again with the copy at ``bounds`` (0 words: without it)."""
    words, similarity = bounds
    instructions, sentences = instruction_texts(), pipeline.settings.answer_max_sentences
    em = f1 = 0.0
    changed, better, worse, examples = 0, 0, 0, []
    for row, found in zip(rows, evidence, strict=True):
        copy = replace(pipeline.evidence_copy(found), max_words=words, min_similarity=similarity)
        known = known_text(found)
        text = check_answer(row["prediction"], len(found), instructions, known, row["question"], sentences, copy).text
        before, after = answer_key_text(row["prediction"]), answer_key_text(text)
        row_f1 = token_f1(after, row["gold"])
        em += exact_match(after, row["gold"])
        f1 += row_f1
        if after != before:
            changed += 1
            old_f1 = token_f1(before, row["gold"])
            better += row_f1 > old_f1
            worse += row_f1 < old_f1
            examples.append([before, after, row["gold"][0]])
    n = len(rows)
    return {
        "max_words": words,
        "min_similarity": similarity,
        "em": em / n,
        "f1": f1 / n,
        "changed": changed,
        "better": better,
        "worse": worse,
        "n": n,
        "examples": examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", default="eval/results/squad-dev-a-generate-150/answers.jsonl")
    parser.add_argument("--choose-on", default="eval/results/squad-dev-a-generate/answers.jsonl")
    parser.add_argument("--index", default="data/squad-dev-a-index")
    parser.add_argument("--result", default="answer_copy")
    args = parser.parse_args()
    pipeline = replay_pipeline(args.index)
    reported = read_jsonl(ROOT / args.answers)  # abstentions too, so EM and F1 are the eval's
    held = {r["id"] for r in reported}
    choosing = [r for r in read_jsonl(ROOT / args.choose_on) if r["id"] not in held]
    columns = ["max_words", "min_similarity", "em", "f1", "changed", "better", "worse", "n"]
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, rows in (("choose", choosing), ("report", reported)):
        evidence = evidence_of(pipeline, rows)
        tables[name] = [scored(pipeline, rows, evidence, bounds) for bounds in ((0, 1.0), *GRID)]
        print(f"\n{name}: {len(rows)} questions")
        print_table(tables[name], columns)
    write_result(
        args.result,
        {"answers": args.answers, "choose_on": args.choose_on, "index": args.index, **tables},
    )


if __name__ == "__main__":
    main()
