"""``rag eval run``: every stage's ranking for every query, scored, timed and reported."""

from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.answers import answer_in_evidence, exact_match, token_f1
from eval.datasets import Dataset, Query, load_dataset
from eval.metrics import METRICS, document_scores, retrieval_metrics
from eval.report import RAW, write_report
from indexer.adapt import AdaptOptions, adapt_index
from indexer.loaders import load_documents
from indexer.writer import IndexWriter
from rag.fusion import rrf
from rag.index.snapshot import Snapshot, current_snapshot_name
from rag.objects import Stage
from rag.pipeline import Pipeline
from rag.settings import Settings

ANSWER_K = 5
PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "faiss-cpu",
    "rank-bm25",
    "ranx",
    "llama_cpp_python",
    "numpy",
    "sqlalchemy",
)


@dataclass(frozen=True)
class EvalOptions:
    dataset: Path
    out: Path
    index: Path | None = None
    limit: int = 0
    generate: bool = False
    seed: int = 13
    warmup: int = 10
    show_progress: bool = True
    adapt: AdaptOptions | None = None  # train the index's ColBERT head on the corpus before scoring


def stage_latency_ms(elapsed: dict[str, float], timings: dict[str, float]) -> dict[str, float]:
    """Question → each stage's ranking, query encoding included. A single path counts the encoding and
    its own search only; fused stages count everything before them in the pipeline."""
    encode = timings["encode"] + timings.get("filter", 0.0)
    latency = {"bm25": encode + timings["bm25"], "dense": encode + timings["dense"], "rrf": elapsed["rrf"]}
    if "maxsim" in elapsed:
        for stage in (Stage.FINAL, *ALTERNATIVE.values()):
            latency[stage] = elapsed["maxsim"]
    return latency


# The MaxSim mode the pipeline does not use is scored too, under this name, for comparison.
ALTERNATIVE = {"replace": Stage.MAXSIM_FUSE, "fuse": Stage.MAXSIM_REPLACE}


def stages_for(rankings: dict[str, Any], maxsim_mode: str) -> list[str]:
    """Stages in pipeline order, the default pipeline's output (``rrf+maxsim`` or ``rrf``) last."""
    stages: list[str] = [Stage.BM25, Stage.DENSE, Stage.RRF]
    if RAW in rankings:
        stages.append(RAW)
    if "maxsim" in rankings:
        stages += [ALTERNATIVE[maxsim_mode], Stage.FINAL]
    return stages


def alternative_ranking(rankings: dict[str, list[tuple[str, float]]], settings: Settings) -> list[tuple[str, float]]:
    """The ranking the other MaxSim mode would have returned, from the same candidates."""
    if settings.maxsim_mode == "fuse":
        return rankings["maxsim"]
    weights = {"dense": settings.weight_dense, "bm25": settings.weight_bm25, "maxsim": settings.weight_maxsim}
    paths = {p: [cid for cid, _ in rankings[p]] for p in ("dense", "bm25", "maxsim")}
    return [(f.id, f.score) for f in rrf(paths, k=settings.rrf_k, weights=weights)[: settings.candidate_depth]]


def ensure_index(dataset: Dataset, index: Path, settings: Settings, show_progress: bool) -> Snapshot:
    if current_snapshot_name(index) is None:
        documents = load_documents(dataset.path)
        with IndexWriter(index, settings, show_progress=show_progress) as writer:
            writer.upsert(documents, dataset.name)
    return Snapshot.load(index, settings)


def sample_queries(queries: list[Query], limit: int, seed: int) -> list[Query]:
    if not limit or limit >= len(queries):
        return queries
    chosen = sorted(random.Random(seed).sample(range(len(queries)), limit))
    return [queries[i] for i in chosen]


def run_eval(options: EvalOptions, settings: Settings) -> dict[str, Any]:
    started = time.time()
    dataset = load_dataset(options.dataset)
    options.out.mkdir(parents=True, exist_ok=True)
    index = options.index or options.out / "index"
    build_start = time.perf_counter()
    snapshot = ensure_index(dataset, index, settings, options.show_progress)
    build_s = time.perf_counter() - build_start
    adapt_report: dict[str, Any] | None = None
    if options.adapt is not None:
        # The corpus only: pseudo-queries from its passages, never the dataset's queries or qrels.
        adapted = adapt_index(index, settings, options.adapt)
        adapt_report = {
            "steps": adapted.steps,
            "examples": adapted.examples,
            "data_s": adapted.data_seconds,
            "train_s": adapted.train_seconds,
            "reproject_s": adapted.commit_seconds,
            "loss_first": adapted.first_loss,
            "loss_last": adapted.last_loss,
            "head": str(adapted.model_dir),
            "options": {k: v for k, v in asdict(options.adapt).items() if k not in ("labelled", "show_progress")},
        }
        snapshot = Snapshot.load(index, settings)
    pipeline = Pipeline(snapshot, settings)
    # With an adapted head, the same candidates are also reranked with raw token vectors, for comparison.
    raw = Pipeline(snapshot, settings, encoder=pipeline.encoder, adapted=False) if pipeline.adapted else None
    queries = sample_queries(dataset.queries, options.limit, options.seed)
    chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))

    for query in dataset.queries[: options.warmup]:  # warm caches and lazy models before timing
        pipeline.retrieve(query.text)
    runs: dict[str, dict[str, dict[str, float]]] = {}
    latencies: dict[str, list[float]] = {}
    answers: list[dict[str, Any]] = []
    stages: list[str] = []
    for query in tqdm(queries, desc="queries", unit="q", disable=not options.show_progress, dynamic_ncols=True):
        retrieval = pipeline.retrieve(query.text, top_k=max(ANSWER_K, settings.top_k))
        rankings = dict(retrieval.rankings)
        if "maxsim" in rankings:
            rankings[ALTERNATIVE[settings.maxsim_mode]] = alternative_ranking(rankings, settings)
        query_ms = stage_latency_ms(retrieval.elapsed_ms, retrieval.timings_ms)
        if raw is not None and "maxsim" in rankings:
            raw_retrieval = raw.retrieve(query.text, top_k=max(ANSWER_K, settings.top_k))
            rankings[RAW] = raw_retrieval.rankings[Stage.FINAL]
            query_ms[RAW] = stage_latency_ms(raw_retrieval.elapsed_ms, raw_retrieval.timings_ms)[Stage.FINAL]
        stages = stages_for(rankings, settings.maxsim_mode)
        for stage in stages:
            runs.setdefault(stage, {})[query.id] = document_scores(rankings[stage], chunk_to_doc)
        for stage, ms in query_ms.items():
            if stage in stages:
                latencies.setdefault(stage, []).append(ms)
        if query.answers:
            record: dict[str, Any] = {
                "id": query.id,
                "question": query.text,
                "gold": list(query.answers),
                "answer_recall": answer_in_evidence(query.answers, [h.text for h in retrieval.hits[:ANSWER_K]]),
            }
            if options.generate:
                answer = pipeline.answer(query.text)
                record.update(
                    prediction=answer.answer,
                    em=exact_match(answer.answer, query.answers),
                    f1=token_f1(answer.answer, query.answers),
                    first_token_ms=answer.timings_ms.get("first_token"),
                )
            answers.append(record)

    qrels = {q.id: dataset.qrels[q.id] for q in queries}
    report_stages: dict[str, Any] = {}
    per_query: dict[str, Any] = {}
    for stage in stages:
        means, values = retrieval_metrics(qrels, runs[stage], METRICS)
        stage_ms = np.asarray(latencies[stage])
        report_stages[stage] = {
            **means,
            "latency_ms": {"p50": float(np.percentile(stage_ms, 50)), "p95": float(np.percentile(stage_ms, 95))},
        }
        per_query[stage] = values
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "n_queries": len(queries),
        "stages": report_stages,
        "final_stage": stages[-1],
        "maxsim_tokens": "adapted" if pipeline.adapted else "raw",
    }
    if adapt_report is not None:
        report["adapt"] = adapt_report
    if answers:
        generated = [a for a in answers if "em" in a]
        report["answers"] = {
            f"answer_recall@{ANSWER_K}": float(np.mean([a["answer_recall"] for a in answers])),
            "em": float(np.mean([a["em"] for a in generated])) if generated else None,
            "f1": float(np.mean([a["f1"] for a in generated])) if generated else None,
            "n": len(generated),
            "n_answer_recall": len(answers),
        }
    report["config"] = {
        "settings": settings.model_dump(exclude={"remote_api_key", "store_url"}),
        "index": str(index),
        "index_manifest": {
            k: snapshot.manifest[k] for k in ("encoder", "chunking", "bm25", "dense", "multivector", "counts")
        },
        "limit": options.limit,
        "seed": options.seed,
        "generate": options.generate,
        "metrics_library": "ranx",
        "latency": "one query at a time after warm-up, query encoding included",
    }
    report["versions"] = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}}
    report["timing_s"] = {"index_build": build_s, "total": time.time() - started}
    (options.out / "report.json").write_text(json.dumps(report, indent=2))
    (options.out / "per_query.json").write_text(json.dumps(per_query))
    if answers:
        (options.out / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    write_report(report, latencies, options.out)
    return report


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
