"""Passages encoded on Ray: Ray Data ``map_batches`` over an ``ActorPoolStrategy`` of encoder actors.

Each actor loads the index's encoder (and ColBERT model, where the index has one) once and runs with one
torch thread. Batches come back in whatever order the actors finish them, each with its rows, so the
single writer appends them as they arrive (a snapshot's rows need no particular order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rag.compute.ray_cluster import actor_settings, ray_module
from rag.settings import Settings

RAY_BATCH = 64  # passages per actor call: long enough for the encoder's own batching, short for balance


class PassageEncoder:
    """A Ray Data actor: one batch of passages → their rows, dense vectors and token vectors."""

    def __init__(self, settings: Settings, encoder_model: str, late_model: str) -> None:
        from rag.encode.colbert import ColBERTEncoder
        from rag.encode.encoder import Encoder

        self.encoder = Encoder.from_settings(settings, encoder_model)
        self.late = ColBERTEncoder(late_model, settings.encoder_batch_size) if late_model else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        encoded = self.encoder.encode(texts)
        token_vectors = encoded.tokens if self.late is None else self.late.encode_documents(texts)
        ragged = np.empty(len(texts), dtype=object)  # one (n_tokens, dim) array per passage
        for i, vectors in enumerate(token_vectors):
            ragged[i] = np.asarray(vectors, np.float32)
        return {"row": np.asarray(batch["row"], np.int64), "dense": encoded.dense, "tokens": ragged}


def encode_passages(
    texts: Sequence[str], settings: Settings, encoder_model: str, late_model: str = ""
) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """(rows, dense vectors, token vectors) of ``texts``, a batch at a time as the actors finish."""
    if not texts:
        return
    ray: Any = ray_module(settings)
    dataset = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    encoded = dataset.map_batches(
        PassageEncoder,
        fn_constructor_args=(actor_settings(settings), encoder_model, late_model),
        batch_size=RAY_BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=settings.ray_actors),
        num_cpus=1,
    )
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        yield (
            np.asarray(batch["row"], np.int64),
            np.asarray(batch["dense"], np.float32),
            [np.asarray(t, np.float32) for t in batch["tokens"]],
        )
