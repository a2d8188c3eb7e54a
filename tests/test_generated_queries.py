"""Questions written by the real local generator (SmolLM2-135M through llama.cpp) for ``rag adapt
--queries generated|both``: cleaning, the file that makes writing resumable, the time bound, the
time bound (the filter and an adapt run on them are in test_adapt.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.generated_queries import (
    EXAMPLES,
    clean_question,
    question_messages,
    questions_file,
    read_questions,
    write_questions,
)
from rag.generate.llamacpp import LlamaCppGenerator, bundled_smollm2_path

PASSAGES = [
    ("c1", "Aspirin irreversibly inhibits cyclooxygenase, which lowers the production of thromboxane in platelets."),
    ("c2", "The Krebs cycle oxidises acetyl-CoA to carbon dioxide and yields NADH for the electron transport chain."),
    ("c3", "Vitamin D is made in the skin when ultraviolet B light converts 7-dehydrocholesterol to previtamin D3."),
]


@pytest.fixture(scope="module")
def local() -> LlamaCppGenerator:
    return LlamaCppGenerator(bundled_smollm2_path(), context_tokens=2048, threads=2)


def test_clean_question_keeps_the_query_and_drops_what_is_not_one() -> None:
    assert clean_question("Query: how do statins work?") == "how do statins work?"
    assert clean_question('  "what is the krebs cycle"\nPassage: more text') == "what is the krebs cycle"
    assert clean_question("Search query 2 - vitamin d synthesis in skin") == "vitamin d synthesis in skin"
    assert clean_question("Passage: The Krebs cycle oxidises acetyl-CoA") == ""  # the pattern continued
    assert clean_question("aspirin") == ""  # too short to be a question
    assert clean_question(" ".join(["word"] * 41)) == ""
    assert clean_question("") == ""


def test_the_prompt_puts_the_fixed_part_first_and_bounds_the_passage() -> None:
    long_passage = " ".join(f"w{i}" for i in range(500))
    first, second = question_messages(long_passage), question_messages("Short passage here.")
    assert first[:-1] == second[:-1]  # the same prefix for every passage: its KV cache is reused
    assert len(first) == 2 + 2 * len(EXAMPLES) and first[-1].role == "user"
    assert "w179" in first[-1].content and "w180" not in first[-1].content and first[-1].content.endswith("…")


def test_written_questions_are_kept_and_a_later_run_resumes(tmp_path: Path, local: LlamaCppGenerator) -> None:
    path = questions_file(tmp_path, local.name)
    assert path.parent.name == "pseudo-questions" and "/" not in path.name.removesuffix(".jsonl")

    ticks = iter(range(0, 10_000, 25))  # 25 s a look at the clock: 1 minute admits two questions
    done, report = write_questions(local, PASSAGES, path, minutes=1, clock=lambda: next(ticks))
    assert report.written == 2 and report.reused == 0 and report.stopped_by_time
    assert set(done) == {"c1", "c2"} and len(path.read_text("utf-8").splitlines()) == 2
    for record in done.values():
        assert record.raw and record.question == clean_question(record.raw)

    # a crash cut the last line in half: it is dropped, and the next run appends after the whole lines
    with path.open("a", encoding="utf-8") as out:
        out.write('{"chunk_id": "c3", "quest')
    assert set(read_questions(path)) == {"c1", "c2"}
    with path.open("a", encoding="utf-8") as out:  # whole JSON, but cut before its newline
        out.write(json.dumps({"chunk_id": "c3", "question": "", "raw": ""}))
    assert set(read_questions(path)) == {"c1", "c2"}
    done, report = write_questions(local, PASSAGES, path, minutes=10)
    assert report.written == 1 and report.reused == 2 and not report.stopped_by_time
    assert set(done) == {"c1", "c2", "c3"}
    assert [json.loads(line)["chunk_id"] for line in path.read_text("utf-8").splitlines()] == ["c1", "c2", "c3"]

    done, report = write_questions(local, PASSAGES, path, minutes=10)  # all there: the model is not asked
    assert report.written == 0 and report.reused == 3
