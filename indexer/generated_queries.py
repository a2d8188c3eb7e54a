"""Training questions written by the generator for sampled passages (InPars, Bonifacio et al. 2022;
Promptagator, Dai et al. 2022), for ``rag adapt --queries generated|both``.

A few-shot prompt shows three passage → question pairs, then the passage; the model writes one
question. The examples are fixed and come first, so llama.cpp keeps their KV cache across passages and
each question costs only the passage's tokens. A question is kept only if BM25 or dense retrieval finds
its passage again in the top k (the consistency filter): a question its own passage cannot answer
would teach the head noise.

Writing is slow on a CPU (seconds a question), so every question is appended to a file under the index
as soon as it is written, keyed by chunk id: a stopped or time-bounded run resumes where it ended, and a
later ``rag adapt`` reuses what is there.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.generate.protocol import Generator
from rag.objects import Message

QUESTIONS_DIR = "pseudo-questions"
PASSAGE_WORDS = 180  # the prompt shows at most this many words of a passage: its cost is its tokens
MAX_QUESTION_TOKENS = 48
MIN_WORDS, MAX_WORDS = 3, 40

# Three domains far from the developer sets, so that no set's style is taught to the others.
EXAMPLES = (
    (
        "The Hanseatic League was a commercial and defensive confederation of merchant guilds and market "
        "towns in Central and Northern Europe. Growing from a few North German towns in the late 12th "
        "century, it came to dominate Baltic maritime trade for three centuries.",
        "what did the hanseatic league control",
    ),
    (
        "Muscle pain is the most commonly reported side effect of statin therapy. In blinded trials, "
        "however, the rates of muscle symptoms were nearly identical in patients given a statin and in "
        "those given a placebo, suggesting that most of the reported pain is not caused by the drug.",
        "do statins really cause muscle pain?",
    ),
    (
        "TCP congestion control reduces the sending rate when packets are lost. The sender keeps a "
        "congestion window that grows by one segment per round trip and is halved on loss, a scheme "
        "known as additive increase, multiplicative decrease.",
        "how does tcp decide how fast to send data",
    ),
)
INSTRUCTIONS = (
    "You write search queries. Given a passage, write one question or search query that a person "
    "looking for this passage would type. Use your own words, not a sentence copied from the passage. "
    "Reply with the query only."
)


@dataclass(frozen=True)
class WrittenQuestion:
    """What the generator wrote for one passage; ``question`` is empty when nothing usable came back."""

    chunk_id: str
    question: str
    raw: str


@dataclass(frozen=True)
class WritingReport:
    written: int  # by this run
    reused: int  # already in the file
    seconds: float
    stopped_by_time: bool


def question_messages(passage: str) -> list[Message]:
    """The few-shot prompt for one passage: the fixed part first (its KV cache is reused)."""
    messages = [Message("system", INSTRUCTIONS)]
    for text, question in EXAMPLES:
        messages += [Message("user", f"Passage: {text}"), Message("assistant", question)]
    words = passage.split()
    shown = " ".join(words[:PASSAGE_WORDS]) + (" …" if len(words) > PASSAGE_WORDS else "")
    return [*messages, Message("user", f"Passage: {shown}")]


_PREFIX = re.compile(r"^\s*(?:(?:search\s+)?(?:query|question)\s*\d*\s*[:：-]\s*)+", re.IGNORECASE)


def clean_question(raw: str) -> str:
    """The question in a reply, or "" if there is none: its first line, without a "Query:" label or
    quotes, of MIN_WORDS to MAX_WORDS words."""
    line = next((part for part in raw.strip().splitlines() if part.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'`“”").strip()
    if "passage:" in line.lower():  # the model continued the pattern instead of answering
        return ""
    return line if MIN_WORDS <= len(line.split()) <= MAX_WORDS else ""


def questions_file(index_dir: Path, generator_name: str) -> Path:
    """One file per generator: questions from another model are another experiment."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", generator_name).strip("_") or "generator"
    return index_dir / QUESTIONS_DIR / f"{safe}.jsonl"


def read_questions(path: Path) -> dict[str, WrittenQuestion]:
    """The questions written so far, by chunk id. A last line cut by a crash is dropped from the file."""
    if not path.exists():
        return {}
    found: dict[str, WrittenQuestion] = {}
    whole = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):  # the write was cut before its end
                break
            try:
                record = json.loads(line)
                found[record["chunk_id"]] = WrittenQuestion(record["chunk_id"], record["question"], record["raw"])
            except (json.JSONDecodeError, KeyError, TypeError):
                break
            whole += len(line)
    if whole < path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(whole)
    return found


def write_questions(
    generator: Generator,
    passages: Sequence[tuple[str, str]],
    path: Path,
    minutes: float,
    advance: Callable[[int], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, WrittenQuestion], WritingReport]:
    """Write a question for each ``(chunk id, text)`` in order, skipping those already in ``path``,
    until all are done or ``minutes`` have passed; each is appended and flushed as it is written."""
    done = read_questions(path)
    reused = sum(chunk_id in done for chunk_id, _ in passages)
    if advance:
        advance(reused)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = clock()
    written = 0
    stopped = False
    with path.open("a", encoding="utf-8") as out:
        for chunk_id, text in passages:
            if chunk_id in done:
                continue
            if clock() - started > minutes * 60:
                stopped = True
                break
            raw = generator.generate(question_messages(text), MAX_QUESTION_TOKENS).text
            record = WrittenQuestion(chunk_id, clean_question(raw), raw)
            out.write(json.dumps(record.__dict__, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())  # seconds of model time each: never lose one
            done[chunk_id] = record
            written += 1
            if advance:
                advance(1)
    return done, WritingReport(written, reused, clock() - started, stopped)
