"""MaxSim of a batch of questions in one pass against one question at a time (issue 19).

For the dataset's questions, each one's RRF candidates (the default depth) and query token vectors are
computed once through the pipeline; then, for each batch size, the batch's MaxSim is scored both ways
over the same candidates and the same lookup-table codec (binary, the default, or pq):

- one at a time: what the query path does, ``MultiVectorIndex.scores`` per question;
- one pass: every question's lookup table in one batched product (queries padded to the longest), every
  candidate token of every question in one ``embedding_bag`` over those tables, one segmented max.

Scores must agree (the largest difference is printed); ms per question is the median over repeats.

    python -m bench.maxsim_batch --index data/scifact-index --dataset ../shared/datasets/scifact

Prints a table and writes ``bench/results/maxsim_batch.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.common import print_table, write_result
from eval.datasets import load_dataset
from eval.runner import ensure_index
from rag.encode.projection import project_tokens
from rag.index.codecs.base import LookupCodec
from rag.index.multivector import MultiVectorIndex
from rag.pipeline import Pipeline
from rag.settings import Settings

Question = tuple[np.ndarray, np.ndarray, np.ndarray]  # (query tokens, their weights, candidate rows)
Method = Callable[[MultiVectorIndex, Sequence[Question]], list[np.ndarray]]


def one_at_a_time(index: MultiVectorIndex, batch: Sequence[Question]) -> list[np.ndarray]:
    return [index.scores(tokens, rows, weights) for tokens, weights, rows in batch]


def one_pass(index: MultiVectorIndex, batch: Sequence[Question]) -> list[np.ndarray]:
    codec = index.codec
    assert isinstance(codec, LookupCodec)
    book = torch.from_numpy(np.ascontiguousarray(codec.codebook(), np.float32))
    width, entries, group = book.shape
    longest = max(len(tokens) for tokens, _, _ in batch)
    queries = np.zeros((len(batch), longest, codec.dim), np.float32)
    weights = np.zeros((len(batch), longest), np.float32)  # padding tokens weigh 0
    for i, (tokens, w, _) in enumerate(batch):
        queries[i, : len(tokens)] = tokens
        weights[i, : len(tokens)] = w
    q = torch.from_numpy(queries).view(len(batch) * longest, width, group).permute(1, 2, 0)
    tables = torch.bmm(book, q).view(width, entries, len(batch), longest).permute(2, 0, 1, 3)
    flat = tables.reshape(len(batch) * width * entries, longest)
    group_starts = np.arange(0, width * entries, entries, dtype=np.int32)
    codes, lengths, owners = [], [], []
    for i, (_, _, rows) in enumerate(batch):
        gathered, packed = index.gather(rows)
        codes.append(gathered.astype(np.int32) + group_starts + i * width * entries)
        lengths.append(np.diff(packed))
        owners.append(np.full(len(rows), i))
    sims = torch.nn.functional.embedding_bag(torch.from_numpy(np.concatenate(codes)), flat, mode="sum").numpy()
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    scores = _weighted(sims, offsets, weights[np.concatenate(owners)])
    return np.split(scores, np.cumsum([len(rows) for _, _, rows in batch])[:-1])


def _weighted(sims: np.ndarray, offsets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per document, the sum over its question's tokens of weight × best token similarity."""
    best = np.maximum.reduceat(sims, offsets[:-1], axis=0)  # every candidate has tokens here
    return np.einsum("dq,dq->d", best, weights).astype(np.float32)


def _call(method: Method, index: MultiVectorIndex, batch: Sequence[Question]) -> Callable[[], object]:
    return lambda: method(index, batch)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="built from the dataset's corpus if missing")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes")
    parser.add_argument("--questions", type=int, default=256, help="how many of the dataset's questions")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    settings = Settings()
    snapshot = ensure_index(dataset, args.index, settings, show_progress=True)
    pipeline = Pipeline(snapshot, settings)
    index = snapshot.multivector
    adapted = snapshot.projected is not None and snapshot.projection is not None
    if adapted and snapshot.projected is not None:
        index = snapshot.projected
    if not isinstance(index.codec, LookupCodec):
        raise SystemExit(f"one pass is built for lookup-table codecs (binary, pq), not {index.codec.name}")
    rows_of = {str(c): i for i, c in enumerate(snapshot.chunk_ids)}
    questions: list[Question] = []
    texts = [q.text for q in dataset.queries[: args.questions]]
    for text in tqdm(texts, desc="candidates", unit="q", dynamic_ncols=True):
        retrieval = pipeline.retrieve(text, top_k=10)
        rows = np.array([rows_of[c] for c, _ in retrieval.rankings["rrf"]], np.int64)
        dense, tokens = pipeline.query_cache.encode([text], pipeline.encoder.encode_questions)[0]
        tokens, weights = pipeline.query_input(text, dense, tokens).late()
        if adapted and snapshot.projection is not None:
            tokens = project_tokens(tokens, snapshot.projection)
        questions.append((tokens, np.ones(len(tokens), np.float32) if weights is None else weights, rows))
    table = []
    for size in (int(b) for b in args.batches.split(",")):
        batches = [questions[i : i + size] for i in range(0, len(questions) - size + 1, size)]
        worst = max(
            float(np.abs(a - b).max())
            for batch in batches
            for a, b in zip(one_at_a_time(index, batch), one_pass(index, batch), strict=True)
        )
        row: dict[str, object] = {"batch": size, "max |score difference|": worst}
        for name, method in (("one at a time", one_at_a_time), ("one pass", one_pass)):
            total = sum(_median_ms(_call(method, index, batch), args.repeats) for batch in batches)
            row[f"{name} ms/question"] = total / (len(batches) * size)
        table.append(row)
    columns = ["batch", "one at a time ms/question", "one pass ms/question", "max |score difference|"]
    print(f"{dataset.name}: {len(questions)} questions, codec {index.codec.name}, depth {settings.candidate_depth}")
    print_table(table, columns)
    write_result(
        "maxsim_batch",
        {"dataset": dataset.name, "questions": len(questions), "codec": index.codec.name, "rows": table},
    )


if __name__ == "__main__":
    main()
