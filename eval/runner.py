"""``rag eval run``: every stage's ranking for every query, scored, timed and reported."""

from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.answers import ABSTENTION_SPARE, ANSWER_K, answer_in_evidence, answer_record, per_query_answers, score_answers
from eval.datasets import Dataset, Query, load_dataset
from eval.metrics import METRICS, document_scores, retrieval_metrics
from eval.report import RAW, write_report
from indexer.adapt import AdaptOptions, adapt_index
from indexer.final_stage import record_final_stage
from indexer.loaders import load_documents
from indexer.writer import IndexWriter
from rag.index.snapshot import Snapshot, current_snapshot_name
from rag.objects import Stage
from rag.pipeline import Pipeline
from rag.retrieval import MODE_STAGES
from rag.settings import Settings

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
    latency: dict[str, float] = {
        Stage.BM25: encode + timings[Stage.BM25],
        Stage.DENSE: encode + timings[Stage.DENSE],
        Stage.RRF: elapsed[Stage.RRF],
    }
    if Stage.MAXSIM in elapsed:
        for stage in (Stage.FINAL, *MODE_STAGES.values()):
            latency[stage] = elapsed[Stage.MAXSIM]
    return latency


def stages_for(rankings: dict[str, Any], maxsim_mode: str) -> list[str]:
    """Stages in pipeline order, every MaxSim mode's, and the pipeline's output (``rrf+maxsim``, or
    ``rrf`` when MaxSim is off) last."""
    modes = [stage for stage in MODE_STAGES.values() if stage in rankings]
    if maxsim_mode == "off":
        return [Stage.BM25, Stage.DENSE, *modes, Stage.RRF]
    stages: list[str] = [Stage.BM25, Stage.DENSE, Stage.RRF]
    if RAW in rankings:
        stages.append(RAW)
    if Stage.FINAL in rankings:
        stages += [*modes, Stage.FINAL]
    return stages


def ensure_index(dataset: Dataset, index: Path, settings: Settings, show_progress: bool) -> Snapshot:
    """The index at ``index``, built from the dataset's corpus (and its final stage chosen) if missing."""
    if current_snapshot_name(index) is None:
        documents = load_documents(dataset.path)
        with IndexWriter(index, settings, show_progress=show_progress) as writer:
            writer.upsert(documents, dataset.name)
            record_final_stage(writer, settings, show_progress)
    return Snapshot.load(index, settings)


def sample_queries(queries: list[Query], limit: int, seed: int) -> list[Query]:
    if not limit or limit >= len(queries):
        return queries
    chosen = sorted(random.Random(seed).sample(range(len(queries)), limit))
    return [queries[i] for i in chosen]


@dataclass(frozen=True)
class QueryRun:
    """One query's stages in pipeline order, each stage's document scores and latency (ms), and its
    answer record (when it has gold answers)."""

    query_id: str
    stages: list[str]
    scores: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    answer: dict[str, Any] | None = None


@dataclass
class QueryRuns:
    """What running every query gave: per stage, each query's document scores and latency (ms), in
    pipeline order; and one record per query that has gold answers."""

    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)

    def add(self, run: QueryRun, latency: bool = True) -> None:
        self.stages = run.stages
        for stage in run.stages:
            self.runs.setdefault(stage, {})[run.query_id] = run.scores[stage]
        if latency:
            self.add_latency(run)
        if run.answer is not None:
            self.answers.append(run.answer)

    def add_latency(self, run: QueryRun) -> None:
        for stage, ms in run.latency_ms.items():
            if stage in run.stages:
                self.latencies.setdefault(stage, []).append(ms)


def run_eval(options: EvalOptions, settings: Settings) -> dict[str, Any]:
    """Build (or open) the index, run every query, score every stage, write the report."""
    started = time.time()
    dataset = load_dataset(options.dataset)
    # Benchmark queries are data, not requests: a long one is retrieved, not refused (cisi has one of
    # 2,023 characters). The limit used is in the report's settings.
    longest = max((len(q.text) for q in dataset.queries), default=0)
    settings = settings.model_copy(update={"max_question_chars": max(settings.max_question_chars, longest)})
    options.out.mkdir(parents=True, exist_ok=True)
    index = options.index or options.out / "index"
    build_start = time.perf_counter()
    snapshot = ensure_index(dataset, index, settings, options.show_progress)
    build_s = time.perf_counter() - build_start
    adapt_report: dict[str, Any] | None = None
    if options.adapt is not None:
        adapt_report = _adapt(index, settings, options.adapt)
        snapshot = Snapshot.load(index, settings)
    pipeline = Pipeline(snapshot, settings)
    queries = sample_queries(dataset.queries, options.limit, options.seed)
    for query in dataset.queries[: options.warmup]:  # warm caches and lazy models before timing
        pipeline.retrieve(query.text)
    if settings.compute == "ray":
        from eval.ray_eval import run_queries_on_ray, time_queries

        ran = run_queries_on_ray(index, queries, settings, options.generate, dataset.qrels)
        timed = time_queries(QueryRunner(pipeline, settings, generate=False), queries, ran)
        latency_note = f"one query at a time in this process on the first {timed} queries; rankings from Ray actors"
    else:
        ran = run_queries(pipeline, queries, settings, options.generate, options.show_progress, dataset.qrels)
        latency_note = "one query at a time after warm-up, query encoding included"
    report_stages, per_query = score(dataset, queries, ran)
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "n_queries": len(queries),
        "stages": report_stages,
        "final_stage": ran.stages[-1],
        "maxsim_tokens": "adapted" if pipeline.adapted else "raw",
        "maxsim_mode": {
            "in_use": pipeline.maxsim_mode,
            "setting": settings.maxsim_mode,
            "weight_in_use": pipeline.maxsim_weight,
            "weight_setting": settings.weight_maxsim,
            "chosen": asdict(choice) if (choice := snapshot.params.final_stage) is not None else None,
        },
    }
    if adapt_report is not None:
        report["adapt"] = adapt_report
    if ran.answers:
        report["answers"] = score_answers(ran.answers)
        if options.generate:
            per_query["answer"] = per_query_answers(ran.answers)
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
        "latency": latency_note,
    }
    report["versions"] = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}}
    report["timing_s"] = {"index_build": build_s, "total": time.time() - started}
    write_outputs(report, per_query, ran, options.out)
    return report


def _adapt(index: Path, settings: Settings, options: AdaptOptions) -> dict[str, Any]:
    """Train the index's ColBERT head on the corpus only: pseudo-queries from its passages, never the
    dataset's queries or qrels."""
    adapted = adapt_index(index, settings, options)
    return {
        "steps": adapted.steps,
        "examples": adapted.examples,
        "data_s": adapted.data_seconds,
        "train_s": adapted.train_seconds,
        "reproject_s": adapted.commit_seconds,
        "loss_first": adapted.first_loss,
        "loss_last": adapted.last_loss,
        "head": str(adapted.model_dir),
        "options": {k: v for k, v in asdict(options).items() if k not in ("labelled", "show_progress")},
    }


class QueryRunner:
    """Runs one query through every stage: what ``rag eval run`` does per query, in this process or in
    each Ray actor (:mod:`eval.ray_eval`)."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        generate: bool,
        dataset_qrels: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.generate = generate
        self.dataset_qrels = dataset_qrels or {}
        # With an adapted head, the same candidates are also reranked with raw token vectors, for comparison.
        self.raw = (
            Pipeline(pipeline.snapshot, settings, encoder=pipeline.encoder, adapted=False) if pipeline.adapted else None
        )
        snapshot = pipeline.snapshot
        self.chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))
        self.top_k = max(ANSWER_K, settings.top_k) + ABSTENTION_SPARE

    def run(self, query: Query) -> QueryRun:
        """Every stage's ranking of ``query`` (and, with ``generate``, an answer when it has gold, and one
        more with every passage of its gold documents left out of the evidence: abstention)."""
        pipeline = self.pipeline
        started = time.perf_counter()
        retrieval = pipeline.retrieve(query.text, top_k=self.top_k, alternative=True)
        rankings = dict(retrieval.rankings)
        query_ms = stage_latency_ms(retrieval.elapsed_ms, retrieval.timings_ms)
        if self.raw is not None and Stage.MAXSIM in rankings:
            raw_retrieval = self.raw.retrieve(query.text, top_k=self.top_k)
            rankings[RAW] = raw_retrieval.rankings[Stage.FINAL]
            query_ms[RAW] = stage_latency_ms(raw_retrieval.elapsed_ms, raw_retrieval.timings_ms)[Stage.FINAL]
        stages = stages_for(rankings, pipeline.maxsim_mode)
        record: dict[str, Any] | None = None
        if query.answers:
            record = {
                "id": query.id,
                "question": query.text,
                "gold": list(query.answers),
                "answer_recall": answer_in_evidence(query.answers, [h.text for h in retrieval.hits[:ANSWER_K]]),
            }
            if self.generate:
                qrels = self.dataset_qrels.get(query.id, {})
                record.update(answer_record(pipeline, retrieval, query, qrels, started))
        scores = {stage: document_scores(rankings[stage], self.chunk_to_doc) for stage in stages}
        return QueryRun(query.id, stages, scores, query_ms, record)


def run_queries(
    pipeline: Pipeline,
    queries: list[Query],
    settings: Settings,
    generate: bool,
    show_progress: bool,
    dataset_qrels: dict[str, dict[str, int]] | None = None,
) -> QueryRuns:
    """Every stage's ranking of every query, one at a time in this process (see :class:`QueryRunner`)."""
    runner = QueryRunner(pipeline, settings, generate, dataset_qrels)
    ran = QueryRuns()
    for query in tqdm(queries, desc="queries", unit="q", disable=not show_progress, dynamic_ncols=True):
        ran.add(runner.run(query))
    return ran


def score(dataset: Dataset, queries: list[Query], ran: QueryRuns) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per stage: the mean of every metric (ranx) and latency percentiles; and each query's values."""
    qrels = {q.id: dataset.qrels[q.id] for q in queries}
    report_stages: dict[str, Any] = {}
    per_query: dict[str, Any] = {}
    for stage in ran.stages:
        means, values = retrieval_metrics(qrels, ran.runs[stage], METRICS)
        stage_ms = np.asarray(ran.latencies[stage])
        report_stages[stage] = {
            **means,
            "latency_ms": {"p50": float(np.percentile(stage_ms, 50)), "p95": float(np.percentile(stage_ms, 95))},
        }
        per_query[stage] = values
    return report_stages, per_query


def write_outputs(report: dict[str, Any], per_query: dict[str, Any], ran: QueryRuns, out: Path) -> None:
    """report.json, per_query.json, answers.jsonl (if any) and the report with its plots."""
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "per_query.json").write_text(json.dumps(per_query))
    if ran.answers:
        (out / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in ran.answers))
    write_report(report, ran.latencies, out)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
