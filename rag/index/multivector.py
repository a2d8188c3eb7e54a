"""Multi-vector index: every chunk's token vectors, encoded by the index's codec, in one memory-mapped
array with row offsets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rag.index.arrays import load_array, save_array
from rag.index.codecs import TokenCodec, evenly_spaced_sample, load_codec
from rag.maxsim import segment_maxsim

OFFSETS_FILE = "offsets.npy"  # (n_rows + 1,) int64; row i owns codes[offsets[i]:offsets[i+1]]
FIT_ROWS = 4096  # rows whose tokens a codec is fitted on when converting an index (~800k tokens to sample from)
READ_BLOCK = 1 << 18  # token vectors read or re-encoded at once: bounded memory on large indexes


@dataclass(frozen=True)
class MultiVectorParams:
    codec: str  # a name of rag.index.codecs.CODEC_NAMES
    dim: int  # of the token vectors


class MultiVectorIndex:
    """Row ``i``'s token vectors are ``codec.decode(codes[offsets[i]:offsets[i + 1]])``.

    ``codes`` is (n_tokens, codec.width), memory-mapped once loaded: only the candidates' pages are read.
    ``add`` and ``delete`` build the new index in memory; an index writer streams through
    :class:`MultiVectorWriter` instead, so a large index is never held whole."""

    def __init__(self, codes: np.ndarray, offsets: np.ndarray, codec: TokenCodec) -> None:
        self.codes = codes
        self.offsets = offsets
        self.codec = codec
        # plain ndarray views of the maps: slicing a memmap object costs ~1 µs per row on the query path
        self._codes = np.asarray(codes)
        self._offsets = np.asarray(offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_vectors(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        return self.codec.dim

    def row(self, i: int) -> np.ndarray:
        """(n_tokens, dim) float32 token vectors of row ``i`` (decoded)."""
        return self.decode_range(int(self.offsets[i]), int(self.offsets[i + 1]))

    def decode_range(self, start: int, stop: int) -> np.ndarray:
        """Token vectors ``start:stop`` of the whole array, decoded: (stop - start, dim) float32."""
        return self.codec.decode(np.asarray(self.codes[start:stop]))

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The codes of ``rows``, packed: ((n_tokens, width) codes, (len(rows) + 1,) int64 offsets)."""
        rows = np.asarray(rows, np.int64)
        starts, stops = self._offsets[rows], self._offsets[rows + 1]
        packed = np.concatenate([[0], np.cumsum(stops - starts)]).astype(np.int64)
        codes = np.concatenate([self._codes[a:b] for a, b in zip(starts, stops, strict=True)]) if len(rows) else None
        return (codes if codes is not None else np.zeros((0, self.codec.width), self.codec.code_dtype)), packed

    def scores(self, query: np.ndarray, rows: np.ndarray, query_weights: np.ndarray | None = None) -> np.ndarray:
        """MaxSim of (n_q, dim) query token vectors against each row in ``rows``: (len(rows),) float32."""
        codes, packed = self.gather(rows)
        if len(codes) == 0:
            return np.zeros(len(rows), np.float32)
        return segment_maxsim(self.codec.similarities(query, codes), packed, query_weights)

    def score_tokens(self, query: np.ndarray, tokens: np.ndarray, query_weights: np.ndarray | None = None) -> float:
        """MaxSim of a passage that is not in the index, its (n, dim) token vectors stored as this index
        would store them (through the codec), so it scores as it would if it were added."""
        codes = self.codec.encode(np.asarray(tokens, np.float32)).astype(self.codec.code_dtype)
        offsets = np.array([0, len(codes)], np.int64)
        return float(segment_maxsim(self.codec.similarities(query, codes), offsets, query_weights)[0])

    def search(
        self, query: np.ndarray, n: int, candidates: np.ndarray, query_weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (rows, scores) of ``candidates`` by MaxSim, best first; ties keep the candidates' order.
        Late interaction reranks a candidate set: it has no search over the whole index."""
        candidates = np.asarray(candidates, np.int64)
        scores = self.scores(query, candidates, query_weights)
        order = np.lexsort((np.arange(len(candidates)), -scores))[:n]
        return candidates[order], scores[order]

    def add(self, token_vectors: Sequence[np.ndarray]) -> MultiVectorIndex:
        """A new index with one more row per (n_tokens, dim) array (a codec not yet fitted is fitted on them)."""
        blocks = _checked(token_vectors, self.dim)
        if not blocks:
            return self
        stacked = np.concatenate(blocks).astype(np.float32, copy=False)
        if not self.codec.fitted:
            self.codec.fit(stacked[evenly_spaced_sample(len(stacked))])
        codes = np.concatenate([self._codes, self.codec.encode(stacked).astype(self.codec.code_dtype)])
        lengths = np.fromiter((len(b) for b in blocks), np.int64, len(blocks))
        offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)]).astype(np.int64)
        return MultiVectorIndex(codes, offsets, self.codec)

    def delete(self, rows: np.ndarray) -> MultiVectorIndex:
        codes, offsets = self.gather(np.setdiff1d(np.arange(len(self)), np.asarray(rows, np.int64)))
        return MultiVectorIndex(codes, offsets, self.codec)

    def save(self, directory: Path) -> None:
        writer = MultiVectorWriter(directory, self.codec)
        try:
            writer.copy_rows(self, np.arange(len(self)))
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    @classmethod
    def empty(cls, codec: TokenCodec) -> MultiVectorIndex:
        return cls(np.zeros((0, codec.width), codec.code_dtype), np.zeros(1, np.int64), codec)

    @classmethod
    def load(cls, directory: Path, params: MultiVectorParams) -> MultiVectorIndex:
        offsets = load_array(directory / OFFSETS_FILE)
        codec = load_codec(directory, params.codec, params.dim)
        n_vectors = int(offsets[-1]) if len(offsets) else 0
        if n_vectors == 0:
            codes = np.zeros((0, codec.width), codec.code_dtype)
        else:
            path = directory / codec.file_name
            codes = np.memmap(path, dtype=codec.code_dtype, mode="r", shape=(n_vectors, codec.width))
        return cls(codes, offsets, codec)


class MultiVectorWriter:
    """Streams encoded token vectors to a new snapshot's file, so no full copy is held in memory.

    An unfitted codec is fitted on the first vectors it sees: an even sample of the source when rows
    are copied from an index with another codec, else the first appended block."""

    def __init__(self, directory: Path, codec: TokenCodec) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.codec = codec
        self._handle: BinaryIO = open(directory / codec.file_name, "wb")  # noqa: SIM115 - closed in finish()
        self._offsets: list[int] = [0]

    @property
    def dim(self) -> int:
        return self.codec.dim

    def copy_rows(self, source: MultiVectorIndex, rows: np.ndarray) -> None:
        """Append rows of an older snapshot, in order: codes are copied as bytes when they mean the same
        here, else decoded and encoded again (a codec change), a bounded block at a time."""
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        same = self.codec.fitted and self.codec.same_codes_as(source.codec)
        if not self.codec.fitted:  # fit on the tokens of rows spread over the whole source, decoded last
            codes, _ = source.gather(rows[evenly_spaced_sample(len(rows), FIT_ROWS)])
            self.codec.fit(source.codec.decode(codes[evenly_spaced_sample(len(codes))]))
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks):
            first, last = int(run[0]), int(run[-1])
            lo, hi = int(source.offsets[first]), int(source.offsets[last + 1])
            for start in range(lo, hi, READ_BLOCK):
                block = np.asarray(source.codes[start : min(start + READ_BLOCK, hi)])
                codes = block if same else self.codec.encode(source.codec.decode(block))
                self._handle.write(np.ascontiguousarray(codes, self.codec.code_dtype).tobytes())
            lengths = np.diff(np.asarray(source.offsets[first : last + 2]))
            self._offsets.extend((self._offsets[-1] + np.cumsum(lengths)).tolist())

    def append(self, token_vectors: Iterable[np.ndarray]) -> None:
        """Append one row per (n_tokens, dim) float32 array."""
        blocks = _checked(token_vectors, self.dim)
        if not blocks:
            return
        stacked = np.concatenate(blocks).astype(np.float32, copy=False)
        if not self.codec.fitted:
            self.codec.fit(stacked[evenly_spaced_sample(len(stacked))])
        self._handle.write(np.ascontiguousarray(self.codec.encode(stacked), self.codec.code_dtype).tobytes())
        self._offsets.extend((self._offsets[-1] + np.cumsum([len(v) for v in blocks])).tolist())

    def finish(self) -> int:
        """Flush, fsync and write the codec state and the offsets; returns the number of token vectors."""
        import os

        if not self.codec.fitted:  # nothing was written: fit on nothing so the empty index still loads
            self.codec.fit(np.zeros((1, self.dim), np.float32))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.codec.save(self.directory)
        save_array(self.directory / OFFSETS_FILE, np.asarray(self._offsets, np.int64))
        return self._offsets[-1]

    def abort(self) -> None:
        self._handle.close()


def _checked(token_vectors: Iterable[np.ndarray], dim: int) -> list[np.ndarray]:
    blocks = list(token_vectors)
    for vectors in blocks:
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"token vectors must be (n, {dim}), got {vectors.shape}")
    return blocks
