"""Local generation speed on this CPU: the 1.5B model's first token and whole answer by thread count,
llama.cpp batch size and evidence length, with the fixed prompt prefix reused or not.

    python bench/generator_speed.py [--model qwen2.5-coder-1.5b] [--questions 4]

Each question of squad-dev-a gets its gold passage and two other passages of the same article as
evidence, formatted as the pipeline formats it (``build_messages``): either whole passages or only
their highlighted sentences (the shortest evidence). The first question of a configuration runs cold;
the later ones share the system prompt with it, which llama-cpp-python keeps in its KV cache. Prints a
table and writes bench/results/generator_speed.json. Answer quality is `rag eval run --generate`'s job.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import DATASETS, machine, peak_rss_mib, print_table, read_jsonl, read_qrels, write_result
from rag.generate.bundled import BUNDLED, bundled_model_path
from rag.generate.evidence import EvidenceText, build_messages, highlight
from rag.generate.protocol import as_dicts
from rag.index.bm25_tokenizer import make_tokenizer
from rag.objects import Evidence, Message

CONFIGS = [(2, 512), (2, 128), (1, 512)]  # (threads, n_batch)


def evidence_sets(n_questions: int, short: bool) -> list[tuple[str, list[Evidence]]]:
    corpus = {r["_id"]: r for r in read_jsonl(DATASETS / "squad-dev-a" / "corpus.jsonl")}
    queries = read_jsonl(DATASETS / "squad-dev-a" / "queries.jsonl")
    qrels = read_qrels(DATASETS / "squad-dev-a" / "qrels" / "test.tsv")
    tokenize = make_tokenizer()
    out = []
    for query in queries[:n_questions]:
        gold = corpus[next(iter(qrels[query["_id"]]))]
        others = [r for r in corpus.values() if r["title"] == gold["title"] and r["_id"] != gold["_id"]][:2]
        evidences = []
        for number, record in enumerate([*others[:1], gold, *others[1:]], start=1):
            marked = highlight(dict.fromkeys(tokenize(query["text"]), 1.0), record["text"], tokenize)
            evidences.append(
                Evidence(
                    number=number,
                    chunk_id=record["_id"],
                    doc_id=record["_id"],
                    collection="default",
                    title=record["title"],
                    source="wikipedia",
                    snippet=marked if short else record["text"],
                    highlight=marked,
                )
            )
        out.append((query["text"], evidences))
    return out


def run(
    model_path: str, threads: int, batch: int, prompts: list[list[Message]], max_tokens: int
) -> list[dict[str, Any]]:
    from llama_cpp import Llama

    llama: Any = Llama(
        model_path=model_path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=batch, verbose=False
    )
    rows = []
    for i, messages in enumerate(prompts):
        # the messages' text; the chat template adds a few tokens more
        prompt_tokens = len(llama.tokenize("\n".join(m.content for m in messages).encode("utf-8"), add_bos=False))
        start = time.perf_counter()
        first = None
        pieces = []
        for chunk in llama.create_chat_completion(
            as_dicts(messages), max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                first = first or time.perf_counter() - start
                pieces.append(piece)
        total = time.perf_counter() - start
        rows.append(
            {"cold": i == 0, "prompt_tokens": prompt_tokens, "first_token_s": first or total, "total_s": total,
             "answer_tokens": len(llama.tokenize("".join(pieces).encode(), add_bos=False)), "answer": "".join(pieces)}
        )  # fmt: skip
    del llama
    return rows


def _mean(key: str, rows: list[dict[str, Any]]) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="a bundled model's name, or a GGUF path")
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    model_path = bundled_model_path(args.model) if args.model in BUNDLED else args.model
    results: list[dict[str, Any]] = []
    for short in (False, True):
        text: EvidenceText = "highlight" if short else "passage"
        prompts = [build_messages(q, ev, text=text) for q, ev in evidence_sets(args.questions, short)]
        for threads, batch in CONFIGS:
            rows = run(model_path, threads, batch, prompts, args.max_tokens)
            warm = [r for r in rows if not r["cold"]]
            decode_s = _mean("total_s", warm) - _mean("first_token_s", warm)
            results.append(
                {
                    "evidence": "highlights" if short else "passages",
                    "threads": threads,
                    "n_batch": batch,
                    "prompt_tokens": round(_mean("prompt_tokens", rows)),
                    "cold_first_token_s": rows[0]["first_token_s"],
                    "warm_first_token_s": _mean("first_token_s", warm),
                    "warm_total_s": _mean("total_s", warm),
                    "gen_tokens_per_s": _mean("answer_tokens", warm) / max(1e-9, decode_s),
                    "answers": [r["answer"] for r in rows],
                }
            )  # fmt: skip
            print_table(results[-1:], ["evidence", "threads", "n_batch", "prompt_tokens", "cold_first_token_s",
                                       "warm_first_token_s", "warm_total_s", "gen_tokens_per_s"])  # fmt: skip
    columns = ["evidence", "threads", "n_batch", "prompt_tokens", "cold_first_token_s", "warm_first_token_s",
               "warm_total_s", "gen_tokens_per_s"]  # fmt: skip
    print_table(results, columns)
    path = write_result(
        "generator_speed",
        {"model": args.model, "questions": args.questions, "results": results, "peak_rss_mib": peak_rss_mib(),
         "machine": machine()},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
