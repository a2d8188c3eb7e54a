"""RAG_COMPUTE=ray on a real local Ray cluster (``ray.init(num_cpus=2)``, once for the module): an index
encoded by Ray Data actors equals a single-process build, and an eval fanned out over actors gives the
serial run's metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.runner import EvalOptions, run_eval
from indexer.writer import IndexWriter
from rag.compute.ray_cluster import ray_module
from rag.index.snapshot import Snapshot
from rag.objects import Document, Stage
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.conftest import read_jsonl
from tests.test_eval import _tiny_dataset

ray = pytest.importorskip("ray")

QUESTIONS = ["What was the price of oil in March of 1974?", "Who won Super Bowl 50?", "When was it founded?"]


@pytest.fixture(scope="module")
def local_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"token_codec": "float16"})  # rows compared within 1e-3


@pytest.fixture(scope="module")
def ray_settings(local_settings: Settings):
    chosen = local_settings.model_copy(update={"compute": "ray", "ray_cpus": 2, "ray_actors": 2})
    ray_module(chosen)
    yield chosen
    ray.shutdown()


def test_the_local_cluster_chooses_its_own_ports_beside_redis(ray_settings: Settings) -> None:
    import socket

    _, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
    assert port != "6379"  # Redis has 6379 here, and still answers there
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as redis:
        redis.sendall(b"PING\r\n")
        assert redis.recv(16) == b"+PONG\r\n"
    assert ray.cluster_resources()["CPU"] == 2


def test_an_index_encoded_on_ray_equals_a_single_process_build(
    tmp_path: Path, squad_dir: Path, encoder, local_settings: Settings, ray_settings: Settings
) -> None:
    records = read_jsonl(squad_dir / "corpus.jsonl")[:80]
    documents = [Document(id=r["_id"], text=r["text"], title=r["title"]) for r in records]
    for name, chosen in (("local", local_settings), ("ray", ray_settings)):
        with IndexWriter(tmp_path / name, chosen, encoder, show_progress=False) as writer:
            writer.upsert(documents[:60], "a")
            writer.upsert(documents[60:], "b")  # a second change appends to the first
    local, on_ray = Snapshot.load(tmp_path / "local", local_settings), Snapshot.load(tmp_path / "ray", ray_settings)
    local_ids, ray_ids = [str(c) for c in local.chunk_ids], [str(c) for c in on_ray.chunk_ids]
    assert sorted(local_ids) == sorted(ray_ids) and len(local_ids) >= 80
    ray_row = {c: i for i, c in enumerate(ray_ids)}
    rows = np.asarray([ray_row[c] for c in local_ids])  # rows come in the order the actors finished
    assert np.allclose(local.dense.vectors, on_ray.dense.vectors[rows], atol=1e-5)
    assert np.array_equal(local.sparse.doc_lengths, on_ray.sparse.doc_lengths[rows])
    for i, j in enumerate(rows):
        assert np.allclose(local.multivector.row(i), on_ray.multivector.row(int(j)), atol=1e-3)
    for question in QUESTIONS:
        want = Pipeline(local, local_settings, encoder=encoder).retrieve(question, top_k=10)
        got = Pipeline(on_ray, ray_settings, encoder=encoder).retrieve(question, top_k=10)
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits]


def test_a_qdrant_index_encoded_on_ray_serves_what_a_single_process_build_does(
    tmp_path: Path, squad_dir: Path, encoder, local_settings: Settings, ray_settings: Settings
) -> None:
    pytest.importorskip("qdrant_client")
    qdrant = {"index_engine": "qdrant", "qdrant_path": ":memory:"}
    local, on_ray = local_settings.model_copy(update=qdrant), ray_settings.model_copy(update=qdrant)
    records = read_jsonl(squad_dir / "corpus.jsonl")[:80]
    documents = [Document(id=r["_id"], text=r["text"], title=r["title"]) for r in records]
    for name, chosen in (("local", local), ("ray", on_ray)):
        with IndexWriter(tmp_path / name, chosen, encoder, show_progress=False) as writer:
            writer.upsert(documents, "a")
    served = {
        name: Pipeline(Snapshot.load(tmp_path / name, chosen), chosen, encoder=encoder)
        for name, chosen in (("local", local), ("ray", on_ray))
    }
    for question in QUESTIONS:
        want, got = served["local"].retrieve(question, top_k=10), served["ray"].retrieve(question, top_k=10)
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits]
        for stage in (Stage.DENSE, Stage.BM25, Stage.MAXSIM):
            want_scores, got_scores = dict(want.rankings[stage]), dict(got.rankings[stage])
            assert got_scores.keys() == want_scores.keys(), stage
            assert all(got_scores[c] == pytest.approx(want_scores[c], abs=1e-4) for c in got_scores), stage


def test_an_eval_fanned_out_over_actors_gives_the_serial_metrics(
    tmp_path: Path, squad_dir: Path, local_settings: Settings, ray_settings: Settings
) -> None:
    dataset = _tiny_dataset(tmp_path / "tiny", squad_dir)
    index = tmp_path / "index"
    serial = run_eval(EvalOptions(dataset, tmp_path / "serial", index, show_progress=False, warmup=1), local_settings)
    on_ray = run_eval(EvalOptions(dataset, tmp_path / "ray", index, show_progress=False, warmup=1), ray_settings)
    assert list(on_ray["stages"]) == list(serial["stages"])
    for stage, metrics in serial["stages"].items():
        for metric, value in metrics.items():
            if metric != "latency_ms":
                assert on_ray["stages"][stage][metric] == pytest.approx(value, abs=1e-9), (stage, metric)
        assert on_ray["stages"][stage]["latency_ms"]["p50"] > 0
    assert on_ray["config"]["latency"].startswith("one query at a time in this process")
    per_query_serial = (tmp_path / "serial" / "per_query.json").read_text()
    assert (tmp_path / "ray" / "per_query.json").read_text() == per_query_serial  # every query, same order
