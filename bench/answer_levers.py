"""Answer quality and speed of the local generator, lever by lever, end to end on squad-dev-a.

    python bench/answer_levers.py [--questions 40] [--index DIR] [--levers default,passage,...] [--result NAME]

Each lever is the default configuration with one thing changed (or a generator swapped). Every lever
answers the same questions — development questions, outside the sample that ``rag eval run --limit 300``
reports — through the whole pipeline — retrieval, evidence, the
generator — exactly as ``rag eval run --generate`` does (:func:`eval.answers.answer_record`), one
question at a time after one warm-up question, and is scored the same way: EM and F1 (SQuAD
normalisation), citation accuracy, first token and whole answer from the question. Abstention (the
gold documents left out) is left to ``rag eval run``, which measures it for the default. Prints a table
and writes bench/results/answer_levers.json.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import DATASETS, ROOT, machine, peak_rss_mib, print_table, write_result
from eval.answers import answer_record, score_answers
from eval.datasets import Dataset, Query, load_dataset
from eval.runner import ensure_index, sample_queries
from rag.encode.encoder import Encoder
from rag.generate.llamacpp import LlamaCppGenerator
from rag.objects import Message
from rag.pipeline import Pipeline
from rag.settings import Settings

# name: (what changes, settings overrides)
LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": (
        "qwen2.5-coder-1.5b; 2 highlighted sentences of 5 passages; answerability check; prefix reused; "
        "2 threads; n_batch 512",
        {},
    ),
    "passage": ("FreshPrompt's whole snippet beside the highlight", {"evidence_text": "passage"}),
    "highlight-maxsim": (
        "highlights by shared terms + 4 x the sentence's MaxSim with the question",
        {"evidence_highlight_maxsim_weight": 4.0},
    ),
    "demos-5": (
        "5 demonstrations, not 3: two more short spans taken from inside a long evidence sentence",
        {"fewshot_demos": 5},
    ),
    "evidence-3": ("3 passages, not 5", {"evidence_max": 3}),
    "highlight-1": ("1 highlighted sentence a passage, not 2", {"evidence_highlight_sentences": 1}),
    "highlight-3": ("3 highlighted sentences a passage, not 2", {"evidence_highlight_sentences": 3}),
    "budget-600": ("an evidence budget of 600 tokens, not 400", {"evidence_token_budget": 600}),
    "highlight-3-budget-600": (
        "3 highlighted sentences a passage in 600 tokens",
        {"evidence_highlight_sentences": 3, "evidence_token_budget": 600},
    ),
    "no-prefix-reuse": ("the system prompt's KV cache dropped before each question", {}),
    "threads-1": ("1 llama.cpp thread", {"local_threads": 1}),
    "batch-128": ("n_batch 128", {"local_batch_tokens": 128}),
    "marginal": ("RAG-Sequence: a candidate per top-3 passage, marginalised", {"answer_mode": "marginal"}),
    "no-answerability-check": ("no yes/no question before the answer", {"answerability_check": False}),
    "whole-answer": (
        "the answer as written: no restated question cut, every sentence kept",
        {"answer_max_sentences": 0, "answer_cut_restated_question": False},
    ),
    "smollm2-135m": ("SmolLM2-135M-Instruct instead of the 1.5B", {"local_model": "smollm2-135m"}),
    "remote": (
        "the 1.5B behind llama.cpp's OpenAI-compatible server on 127.0.0.1 (RAG_GENERATOR=remote)",
        {"generator": "remote"},
    ),
    "remote-no-answerability-check": (
        "the same remote without the yes/no question (remote answers before stop 47)",
        {"generator": "remote", "answerability_check": False},
    ),
}


class _NoPrefixReuse(LlamaCppGenerator):
    """The default generator, but each prompt is processed from its first token."""

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        self.llama.reset()
        return super().stream(messages, max_tokens, temperature)


def development_questions(dataset: Dataset, n: int) -> list[Query]:
    """``n`` questions drawn (seed 7) from those outside ``rag eval run --limit 300``'s sample (seed 13),
    so that defaults chosen here are measured there on questions they were not chosen on."""
    held_out = {q.id for q in sample_queries(dataset.queries, 300, seed=13)}
    return random.Random(7).sample([q for q in dataset.queries if q.id not in held_out], n)


def run_lever(
    name: str, overrides: dict[str, Any], base: Settings, index: Path, encoder: Encoder, questions: int
) -> dict[str, Any]:
    from rag.index.snapshot import Snapshot

    settings = base.model_copy(update=overrides)
    pipeline = Pipeline(Snapshot.load(index, settings), settings, encoder)
    if name == "no-prefix-reuse":
        pipeline.generators["local"] = _NoPrefixReuse(
            settings.local_model, settings.local_context_tokens, settings.local_threads, settings.model_cache_dir
        )
    dataset = load_dataset(DATASETS / "squad-dev-a")
    queries = development_questions(dataset, questions + 1)
    records = []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        retrieval = pipeline.retrieve(query.text, top_k=settings.top_k)
        record = answer_record(pipeline, retrieval, query, dataset.qrels[query.id], started, abstention=False)
        if i:  # the first question loads the model and fills the prefix cache: not timed
            records.append({"id": query.id, "question": query.text, "answer_recall": 1.0, **record})
    scores = score_answers(records)
    return {
        "lever": name,
        "what": LEVERS[name][0],
        "em": scores["em"],
        "f1": scores["f1"],
        "citation_accuracy": scores["citation_accuracy"],
        "cited": scores["cited"],
        "first_token_p50_s": scores["first_token_ms"]["p50"] / 1000,
        "first_token_p95_s": scores["first_token_ms"]["p95"] / 1000,
        "total_p50_s": scores["total_ms"]["p50"] / 1000,
        "total_p95_s": scores["total_ms"]["p95"] / 1000,
        "prompt_tokens_p50": scores["prompt_tokens"]["p50"],
        "answer_tokens_p50": scores["answer_tokens"]["p50"],
        "n": scores["n"],
        "answers": [(r["question"], r["prediction"]) for r in records[:5]],
    }


@contextmanager
def llama_server(model: str, port: int = 8093) -> Iterator[str]:
    """``rag llm-server`` on ``model``: llama.cpp's OpenAI-compatible server on 127.0.0.1."""
    rag = str(Path(sys.executable).with_name("rag"))
    argv = [rag, "llm-server", "--model", model, "--port", str(port), "--context", "2048"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not start: {' '.join(argv)}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--index", type=Path, default=ROOT / "bench" / ".cache" / "squad-dev-a-index")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated, from: " + ", ".join(LEVERS))
    parser.add_argument("--result", default="answer_levers", help="bench/results/NAME.json to write")
    args = parser.parse_args()
    base = Settings()
    ensure_index(load_dataset(DATASETS / "squad-dev-a"), args.index, base, show_progress=True)
    encoder = Encoder.from_settings(base, base.encoder_model)
    columns = ["lever", "error", "em", "f1", "citation_accuracy", "cited", "first_token_p50_s", "first_token_p95_s",
               "total_p50_s", "total_p95_s", "prompt_tokens_p50", "answer_tokens_p50"]  # fmt: skip
    rows = []
    for name in args.levers.split(","):
        overrides = LEVERS[name][1]
        with ExitStack() as stack:
            if overrides.get("generator") == "remote":
                overrides = {**overrides, "remote_url": stack.enter_context(llama_server(base.local_model))}
            try:
                rows.append(run_lever(name, overrides, base, args.index, encoder, args.questions))
            except Exception as exc:  # a lever that does not run is a result too (prompt lookup did not, once)
                rows.append({"lever": name, "what": LEVERS[name][0], "error": f"{type(exc).__name__}: {exc}"})
        print_table(rows[-1:], columns)
    print_table(rows, columns)
    write_result(
        args.result,
        {"questions": args.questions, "dataset": "squad-dev-a", "seed": 13, "results": rows,
         "peak_rss_mib": peak_rss_mib(), "machine": machine()},
    )  # fmt: skip


if __name__ == "__main__":
    main()
