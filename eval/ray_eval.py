"""``rag eval run`` on Ray (``RAG_COMPUTE=ray``): the queries fanned out over actors that each hold a
pipeline over the same index, the results put back in query order. Rankings (and answers) come from
the actors; latency percentiles come from a serial pass in this process (:data:`LATENCY_QUERIES`), since
actors sharing CPUs do not time one query alone."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from eval.datasets import Query
from eval.runner import QueryRun, QueryRunner, QueryRuns
from rag.compute.ray_cluster import actor_settings, ray_module
from rag.index.snapshot import Snapshot
from rag.pipeline import Pipeline
from rag.settings import Settings

QUERY_BATCH = 16  # queries per actor call
LATENCY_QUERIES = 200  # the serial pass that times queries one at a time


class QueryActor:
    """A Ray Data actor: the index opened once, then a batch of queries at a time through every stage."""

    def __init__(self, index: str, settings: Settings, generate: bool, qrels: dict[str, dict[str, int]]) -> None:
        pipeline = Pipeline(Snapshot.load(Path(index), settings), settings)
        self.runner = QueryRunner(pipeline, settings, generate, qrels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runs = [
            self.runner.run(Query(str(query_id), str(text), tuple(json.loads(str(answers)))))
            for query_id, text, answers in zip(batch["id"], batch["text"], batch["answers"], strict=True)
        ]
        encoded = np.empty(len(runs), dtype=object)
        for i, run in enumerate(runs):
            encoded[i] = json.dumps(asdict(run))
        return {"position": np.asarray(batch["position"], np.int64), "run": encoded}


def run_queries_on_ray(
    index: Path,
    queries: list[Query],
    settings: Settings,
    generate: bool,
    dataset_qrels: dict[str, dict[str, int]],
) -> QueryRuns:
    """Every query's run from the actors, in ``queries``' order; no latencies (see the module)."""
    ray: Any = ray_module(settings)
    items = [
        {"position": i, "id": q.id, "text": q.text, "answers": json.dumps(list(q.answers))}
        for i, q in enumerate(queries)
    ]
    qrels = {q.id: dataset_qrels.get(q.id, {}) for q in queries}
    ran_batches = ray.data.from_items(items).map_batches(
        QueryActor,
        fn_constructor_args=(str(index), actor_settings(settings), generate, qrels),
        batch_size=QUERY_BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=settings.ray_actors),
        num_cpus=1,
    )
    by_position: dict[int, QueryRun] = {}
    for batch in ran_batches.iter_batches(batch_size=None, batch_format="numpy"):
        for position, run in zip(batch["position"], batch["run"], strict=True):
            by_position[int(position)] = QueryRun(**json.loads(str(run)))
    ran = QueryRuns()
    for position in range(len(queries)):
        ran.add(by_position[position], latency=False)
    return ran


def time_queries(runner: QueryRunner, queries: list[Query], ran: QueryRuns) -> int:
    """The serial latency pass: the first :data:`LATENCY_QUERIES` queries, one at a time. Returns how many."""
    timed = queries[:LATENCY_QUERIES]
    for query in timed:
        ran.add_latency(runner.run(query))
    return len(timed)
