"""Faster runtimes for the encoder's transformer: ONNX Runtime (float32 or int8) and OpenVINO.

The sentence-transformers model's first module (the Hugging Face transformer) is exported once to ONNX
with ``torch.onnx.export`` into a cache folder keyed by the model's files; the pooling and normalising
modules after it still run as sentence-transformers defines them, so the dense vector means the same.
int8 is ONNX Runtime's dynamic quantisation of the weights, per output channel (per-tensor scales bent
the token vectors to cosine 0.93 with float32; per channel keeps 0.99).

Why not sentence-transformers' own ``backend="onnx"``: it goes through optimum-onnx, whose release pins
transformers < 4.58, below the transformers 5 this stack runs on; optimum-intel (``backend="openvino"``)
pulls a CUDA build of torch. Export and quantisation here use torch, onnx and onnxruntime directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.errors import ModelError

Backend = Literal["torch", "onnx", "onnx-int8", "openvino"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "openvino")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag-late" / "encoders"


def model_fingerprint(model_dir: Path) -> str:
    """Changes whenever a file of the model folder does (names, sizes, modification times)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def export_onnx(transformer: Any, model_dir: Path, cache_dir: Path, int8: bool) -> Path:
    """The ONNX file of the model's transformer (exported on first use, then reused): (batch, seq) int64
    ``input_ids``, ``attention_mask``, ``token_type_ids`` → (batch, seq, dim) ``token_embeddings``."""
    import torch

    folder = cache_dir / f"{Path(model_dir).name}-{model_fingerprint(model_dir)}-torch{torch.__version__}"
    target = folder / ("model-int8.onnx" if int8 else "model.onnx")
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as lock:  # two processes exporting at once: one waits for the other
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        plain = folder / "model.onnx"
        if not plain.exists():
            _export_float(transformer, plain)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = folder / "model-int8.part.onnx"
            quantize_dynamic(plain, tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
            os.replace(tmp, target)
    return target


def _export_float(transformer: Any, target: Path) -> None:
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    example = torch.ones((2, 8), dtype=torch.int64)
    tmp_dir = target.parent / "export.part"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        torch.onnx.export(
            TokenEmbeddings(transformer).eval(),
            (example, example, torch.zeros_like(example)),
            str(tmp_dir / "model.onnx"),
            input_names=list(INPUTS),
            output_names=["token_embeddings"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "token_embeddings")},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: dynamic shapes with no extra dependency
        )
        os.replace(tmp_dir / "model.onnx", target)
    except Exception as exc:
        raise ModelError(f"cannot export the encoder to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


class CompiledTransformer:
    """Runs the exported transformer: ``__call__(features)`` → (batch, seq, dim) float32 token embeddings."""

    def __init__(self, path: Path, backend: Backend, threads: int) -> None:
        self.backend = backend
        threads = threads if threads > 0 else (os.cpu_count() or 1)
        if backend == "openvino":
            import openvino as ov

            self._compiled: Any = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No busy-waiting after a run: on two cores the spinning threads slowed the FAISS and torch
            # work that follows the query encoding.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._compiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, features: dict[str, Any]) -> np.ndarray:
        inputs = {name: np.asarray(features[name].cpu().numpy(), np.int64) for name in INPUTS if name in features}
        if "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
        if self.backend == "openvino":
            return np.asarray(self._compiled(inputs)[0], np.float32)
        return np.asarray(self._compiled.run(None, inputs)[0], np.float32)


def compile_transformer(transformer: Any, model_dir: Path, backend: Backend, cache_dir: Path, threads: int) -> Any:
    """The runtime for ``backend`` (not torch): export once, then compile."""
    path = export_onnx(transformer, model_dir, cache_dir, int8=backend == "onnx-int8")
    return CompiledTransformer(path, backend, threads)
