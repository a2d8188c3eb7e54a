"""Binary token vectors: one bit per dimension, the sign of ``v - centre`` (48 bytes at 384-d).

Decoding gives ``centre + scale * (±1)``, with ``centre`` the mean token vector and ``scale`` the mean
absolute deviation per dimension (the least-squares scale for a sign code). Centring matters: MiniLM's
token vectors share a common direction, so raw signs would spend most bits on it. Scoring is asymmetric:
the float query against the decoded document vectors, through a lookup table per byte.
"""

from __future__ import annotations

import numpy as np

from rag.index.codecs.base import LookupCodec

BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)  # (256, 8), MSB first


class BinaryCodec(LookupCodec):
    name = "binary"

    def __init__(self, dim: int) -> None:
        if dim % 8:
            raise ValueError(f"the binary codec needs a dimension divisible by 8, got {dim}")
        super().__init__(dim)
        self.centre: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self._book: np.ndarray | None = None  # built once per state: 0.3 ms of every query's MaxSim

    @property
    def width(self) -> int:
        return self.dim // 8

    @property
    def fitted(self) -> bool:
        return self.centre is not None and self.scale is not None

    def fit(self, sample: np.ndarray) -> None:
        x = np.asarray(sample, np.float32)
        self.centre = x.mean(axis=0)
        self.scale = np.maximum(np.abs(x - self.centre).mean(axis=0), 1e-6)
        self._book = None

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        if self.centre is None:
            raise RuntimeError("fit the binary codec before encoding")
        return np.packbits(np.asarray(vectors, np.float32) > self.centre, axis=1)

    def codebook(self) -> np.ndarray:
        if self.centre is None or self.scale is None:
            raise RuntimeError("fit the binary codec before scoring")
        if self._book is None:
            centre = self.centre.reshape(self.width, 1, 8)
            scale = self.scale.reshape(self.width, 1, 8)
            self._book = (centre + scale * (2.0 * BITS[None] - 1.0)).astype(np.float32)  # (width, 256, 8)
        return self._book

    def state(self) -> dict[str, np.ndarray]:
        if self.centre is None or self.scale is None:
            return {}
        return {"centre": self.centre, "scale": self.scale}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "centre" in state and "scale" in state:
            self.centre = np.asarray(state["centre"], np.float32)
            self.scale = np.asarray(state["scale"], np.float32)
            self._book = None
