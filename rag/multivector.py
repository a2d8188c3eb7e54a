"""Multi-vector index: every chunk's token vectors in one memory-mapped array, with row offsets."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rag.arrays import load_array, save_array

VECTORS_FILE = "vectors.f16"  # raw (n_tokens, dim) float16, shape recorded in the manifest
OFFSETS_FILE = "offsets.npy"  # (n_rows + 1,) int64; row i owns vectors[offsets[i]:offsets[i+1]]


class MultiVectorIndex:
    """Read side: token vectors of row ``i`` are ``vectors[offsets[i]:offsets[i + 1]]``, (n_tokens, dim) float16."""

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray) -> None:
        self.vectors = vectors
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_vectors(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def row(self, i: int) -> np.ndarray:
        return np.asarray(self.vectors[self.offsets[i] : self.offsets[i + 1]])

    @classmethod
    def load(cls, directory: Path, dim: int) -> MultiVectorIndex:
        offsets = load_array(directory / OFFSETS_FILE)
        n_vectors = int(offsets[-1]) if len(offsets) else 0
        path = directory / VECTORS_FILE
        if n_vectors == 0:
            vectors = np.zeros((0, dim), np.float16)
        else:
            vectors = np.memmap(path, dtype=np.float16, mode="r", shape=(n_vectors, dim))
        return cls(vectors, offsets)


class MultiVectorWriter:
    """Streams token vectors to a new snapshot's file, so no full copy is held in memory."""

    def __init__(self, directory: Path, dim: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.dim = dim
        self._handle: BinaryIO = open(directory / VECTORS_FILE, "wb")  # noqa: SIM115 - closed in finish()
        self._offsets: list[int] = [0]

    def copy_rows(self, source: MultiVectorIndex, rows: np.ndarray, max_run: int = 1 << 20) -> None:
        """Append rows of an older snapshot, in order, copying each run of consecutive rows at once."""
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks):
            first, last = int(run[0]), int(run[-1])
            lo, hi = int(source.offsets[first]), int(source.offsets[last + 1])
            for start in range(lo, hi, max_run):  # bounded reads keep memory flat on huge runs
                block = np.asarray(source.vectors[start : min(start + max_run, hi)], dtype=np.float16)
                self._handle.write(np.ascontiguousarray(block).tobytes())
            lengths = np.diff(np.asarray(source.offsets[first : last + 2]))
            self._offsets.extend((self._offsets[-1] + np.cumsum(lengths)).tolist())

    def append(self, token_vectors: Iterable[np.ndarray]) -> None:
        for vectors in token_vectors:
            if vectors.ndim != 2 or vectors.shape[1] != self.dim:
                raise ValueError(f"token vectors must be (n, {self.dim}), got {vectors.shape}")
            self._handle.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
            self._offsets.append(self._offsets[-1] + len(vectors))

    def finish(self) -> int:
        """Flush, fsync and write the offsets; returns the number of token vectors written."""
        import os

        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        save_array(self.directory / OFFSETS_FILE, np.asarray(self._offsets, np.int64))
        return self._offsets[-1]

    def abort(self) -> None:
        self._handle.close()
