"""The ColBERT projection on top of the encoder's token vectors: ``normalise(v @ W.T)`` per token.

Projection commutes with the per-token normalisation the index already applied (``normalise(c·v @ W.T)
== normalise(v @ W.T)`` for any c > 0), so projecting the stored unit vectors gives exactly what
projecting the encoder's raw output would: an index is adapted without encoding a passage again.

The head is saved as a sentence-transformers ``Dense`` module folder (``config.json`` +
``model.safetensors`` with ``linear.weight``), the layout PyLate and ``MultiVectorEncoder`` use for
the ColBERT projection, beside ``adapt.json`` (how it was trained).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def project_tokens(vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(n, d_in) token vectors → (n, d_out) float32 unit rows, ``weight`` (d_out, d_in)."""
    projected = np.asarray(vectors, np.float32) @ np.asarray(weight, np.float32).T
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return projected / np.maximum(norms, 1e-12)


def principal_directions(sample: np.ndarray, out_dim: int) -> np.ndarray:
    """The ``out_dim`` leading eigenvectors of the uncentred second moment of ``sample`` (n, d), as
    (out_dim, d): the rank-``out_dim`` projection that best keeps inner products between tokens, so an
    untrained head starts close to raw MaxSim instead of at a random rotation."""
    x = np.asarray(sample, np.float64)
    if out_dim > x.shape[1]:
        raise ValueError(f"projection dimension {out_dim} exceeds the token dimension {x.shape[1]}")
    _, eigenvectors = np.linalg.eigh(x.T @ x / max(1, len(x)))
    return np.ascontiguousarray(eigenvectors[:, ::-1][:, :out_dim].T, dtype=np.float32)


def save_head(folder: Path, weight: np.ndarray, info: dict[str, Any]) -> None:
    """Write the projection in sentence-transformers ``Dense`` layout plus ``adapt.json``."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out_dim, in_dim = weight.shape
    save_file({"linear.weight": np.ascontiguousarray(weight, np.float32)}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(
        json.dumps(
            {
                "in_features": int(in_dim),
                "out_features": int(out_dim),
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
                "module_input_name": "token_embeddings",
                "module_output_name": "token_embeddings",
            },
            indent=2,
        ),
        "utf-8",
    )
    (folder / "adapt.json").write_text(json.dumps(info, indent=2), "utf-8")


def load_head(folder: Path) -> np.ndarray:
    """The (d_out, d_in) float32 projection saved by :func:`save_head` (or any ST/PyLate Dense folder)."""
    from safetensors.numpy import load_file

    path = Path(folder) / WEIGHTS_FILE
    try:
        state = load_file(str(path))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the projection head {path}: {exc}") from exc
    key = next((k for k in state if k.endswith("linear.weight")), None)
    if key is None:
        raise ModelError(f"{path} has no linear.weight (the ColBERT projection)")
    return np.asarray(state[key], np.float32)
