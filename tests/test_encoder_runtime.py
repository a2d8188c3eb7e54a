"""The encoder on ONNX Runtime (float32, int8) and OpenVINO gives the torch model's vectors."""

from __future__ import annotations

import numpy as np
import pytest

from rag.encode.encoder import Encoder
from rag.errors import ModelError


@pytest.fixture(scope="module")
def texts(scifact_docs) -> list[str]:
    return [f"{d.title}\n{d.text}" for d in scifact_docs[:12]] + ["Does vitamin D lower the risk of fractures?"]


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("openvino", 0.9999), ("onnx-int8", 0.98)])
def test_backends_match_torch(tmp_path, encoder, texts, backend: str, min_cosine: float) -> None:
    reference = encoder.encode(texts)
    compiled = Encoder(encoder.model_name_or_path, backend=backend, cache_dir=tmp_path)  # type: ignore[arg-type]
    got = compiled.encode(texts)
    assert got.dense.shape == reference.dense.shape
    assert np.min(np.sum(got.dense * reference.dense, axis=1)) >= min_cosine
    for mine, theirs in zip(got.tokens, reference.tokens, strict=True):
        assert mine.shape == theirs.shape
        assert np.mean(np.sum(mine * theirs, axis=1)) >= min_cosine - 0.005
    exported = sorted(tmp_path.rglob("*.onnx"))
    assert exported, "the export is kept in the cache folder"
    stamps = [p.stat().st_mtime_ns for p in exported]
    again = Encoder(encoder.model_name_or_path, backend=backend, cache_dir=tmp_path)  # type: ignore[arg-type]
    # the same batch: int8 scales activations per batch, so other batch-mates would move its vectors a little
    np.testing.assert_allclose(again.encode(texts).dense, got.dense, atol=1e-5)
    assert [p.stat().st_mtime_ns for p in exported] == stamps  # reused, not exported again


def test_bad_backend_requests_fail_clearly(tmp_path) -> None:
    with pytest.raises(ModelError, match="unknown encoder backend 'tensorrt'"):
        Encoder("x", backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="needs a local model folder"):
        Encoder("sentence-transformers/all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path).encode(["a"])


def test_questions_can_take_another_backend_than_passages(tmp_path, encoder, texts) -> None:
    both = Encoder(encoder.model_name_or_path, cache_dir=tmp_path, question_backend="onnx-int8")
    reference = encoder.encode(texts)
    passages = both.encode(texts)
    np.testing.assert_allclose(passages.dense, reference.dense, atol=1e-6)  # passages: torch, unchanged
    questions = both.encode_questions(texts)
    assert not np.allclose(questions.dense, reference.dense, atol=1e-6)  # questions: the int8 runtime
    assert np.min(np.sum(questions.dense * reference.dense, axis=1)) >= 0.98
    assert [p.name for p in tmp_path.rglob("*.onnx")] != []
    with pytest.raises(ModelError, match="unknown encoder backend 'tpu'"):
        Encoder("x", question_backend="tpu")  # type: ignore[arg-type]


def test_questions_go_to_onnx_by_default_only_where_it_can_export(encoder) -> None:
    from rag.encode.encoder import question_backend
    from rag.settings import Settings

    local = encoder.model_name_or_path
    assert question_backend(Settings(), local) == "onnx"
    assert question_backend(Settings(encoder_backend="onnx-int8"), local) == "onnx-int8"  # int8 chosen: kept
    assert question_backend(Settings(question_encoder_backend="torch"), local) == "torch"
    assert question_backend(Settings(), "sentence-transformers/all-MiniLM-L6-v2") == "torch"  # no folder to export
    assert Encoder.from_settings(Settings(encoder_model=local)).question_backend == "onnx"
