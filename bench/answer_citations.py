"""A short answer cites the evidence that holds it (rag/generate/answer_copy.py), measured on stored answers.

    python -m bench.answer_citations --answers eval/results/squad-dev-a-generate-150-copy/answers.jsonl \
        [--answers MORE.jsonl ...] [--leave-out ANSWERS.jsonl] [--index DIR] [--result NAME]

Only the checking changes, so the answers a run of ``rag eval run --generate`` stored are checked again,
each against its evidence rebuilt as the pipeline builds it (bench/answer_copy.py): once as before (the
copy from the cited evidence, the model's citations kept) and once as now (a short answer its cited
evidence does not hold cites the evidences that hold it word for word). Citation accuracy is the
evaluation's: the share of citing answers whose cited passage contains a gold answer. "as stored" says how
often the rebuilt evidence gives the stored row's verdict again (the index and question encoder may have
changed since the row was written). ``--leave-out`` drops the questions another file answers (the rule was
written after reading stop 41's 150 answers: the rest of stop 22's 300 is the held-out check). Prints a
table and writes bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bench.answer_copy import replay_pipeline
from bench.common import ROOT, print_table, read_jsonl, write_result
from eval.answers import answer_in_evidence, exact_match, token_f1
from rag.generate.answer_text import answer_key_text, check_answer
from rag.generate.evidence import instruction_texts
from rag.objects import Evidence
from rag.pipeline import Pipeline, known_text

Found = tuple[list[Evidence], dict[str, str]]  # a question's evidence, and its hits' whole texts by chunk


def found_for(pipeline: Pipeline, question: str) -> Found:
    """The question's evidence as the pipeline built it for the answer, and its hits' texts (what the
    evaluation looks for the gold answer in)."""
    hits = pipeline.retrieve(question).hits
    return pipeline.evidence(question, hits, pipeline.generator()), {h.chunk_id: h.text for h in hits}


def _cites_gold(numbers: Sequence[int], found: Found, gold: Sequence[str]) -> bool:
    evidence, texts = found
    cited = [texts[e.chunk_id] for e in evidence if e.number in numbers]
    return bool(cited) and bool(answer_in_evidence(gold, cited))


def rechecked(pipeline: Pipeline, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Citation accuracy of the stored answers before and after the rule, and what it changed."""
    instructions, sentences = instruction_texts(), pipeline.settings.answer_max_sentences
    before_right = after_right = citing = as_stored = 0
    em = f1 = 0.0
    better, worse, examples = 0, 0, []
    for row in rows:
        found = found_for(pipeline, row["question"])
        evidence, known = found[0], known_text(found[0])
        copy = pipeline.evidence_copy(evidence)
        checked = check_answer(row["prediction"], len(evidence), instructions, known, row["question"], sentences, copy)
        as_written = check_answer(row["prediction"], len(evidence), instructions, known, row["question"])
        if checked.status != "cited":
            continue
        citing += 1
        before = as_written.numbers if checked.how == "matched" else checked.numbers
        was, now = _cites_gold(before, found, row["gold"]), _cites_gold(checked.numbers, found, row["gold"])
        before_right += was
        after_right += now
        as_stored += was == bool(row.get("citation_correct"))
        em += exact_match(answer_key_text(checked.text), row["gold"])
        f1 += token_f1(answer_key_text(checked.text), row["gold"])
        if checked.how == "matched":
            better += now and not was
            worse += was and not now
            examples.append([row["prediction"], checked.text, row["gold"][0], was, now])
    return {
        "questions": len(rows),
        "citing answers": citing,
        "citation accuracy before": before_right / max(citing, 1),
        "citation accuracy now": after_right / max(citing, 1),
        "re-cited": len(examples),
        "better": better,
        "worse": worse,
        "as stored": as_stored / max(citing, 1),
        "em of citing": em / max(citing, 1),
        "f1 of citing": f1 / max(citing, 1),
        "examples": examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--answers", action="append", help="stored answers.jsonl (repeatable; default: stop 41's 150 with the copy)"
    )
    parser.add_argument("--leave-out", help="answers.jsonl whose questions are left out of the others")
    parser.add_argument("--index", default="data/squad-dev-a-index")
    parser.add_argument("--result", default="answer_citations")
    args = parser.parse_args()
    answers = args.answers or ["eval/results/squad-dev-a-generate-150-copy/answers.jsonl"]
    pipeline = replay_pipeline(args.index)
    left_out = {row["question"] for row in read_jsonl(ROOT / args.leave_out)} if args.leave_out else set()
    rows_out = []
    for path in answers:
        rows = [row for row in read_jsonl(ROOT / path) if row["question"] not in left_out]
        rows_out.append({"answers": path, **rechecked(pipeline, rows)})
    columns = [
        "answers",
        "citing answers",
        "citation accuracy before",
        "citation accuracy now",
        "re-cited",
        "better",
        "worse",
        "as stored",
    ]
    print_table(rows_out, columns)
    for row in rows_out:
        for example in row["examples"]:
            before, now, gold, was, is_now = example
            print(f"  {before!r} -> {now!r} (gold {gold!r}; right before {was}, now {is_now})")
    write_result(args.result, {"index": args.index, "left out": args.leave_out, "rows": rows_out})


if __name__ == "__main__":
    main()
