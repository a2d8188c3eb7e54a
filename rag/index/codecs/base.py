"""How the multi-vector index stores token vectors: one codec per index, chosen at build time.

A codec turns (n, dim) float32 unit vectors into (n, width) codes and back, and scores a query's
token vectors against codes without decoding them where it can. Three exist:

- ``float16``  768 B per 384-d vector; exact up to rounding (``codec_float16.py``).
- ``binary``   1 bit per dimension (48 B at 384-d): the sign around a fitted centre, scored
  asymmetrically: float query × the decoded binary document (``codec_binary.py``).
- ``pq``       product quantisation as in ColBERTv2/FAISS: one byte per sub-vector (48 B at 384-d
  with 48 sub-vectors of 8 dimensions), scored by asymmetric distance computation (``codec_pq.py``).

Binary and PQ are both "one byte per group of dimensions": a code byte picks one of 256 reconstructions
of its group, so both score with one lookup table per query (``lookup_similarities``), 3–4× faster than a float16
matrix product over the same tokens (docs/benchmarks.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

CODEC_FILE = "codec.npz"  # the fitted state (centres, codebooks) beside the codes
FIT_SAMPLE = 65_536  # token vectors a codec is fitted on (sampled evenly); k-means needs ~40 per centroid


class TokenCodec(ABC):
    """Encode, decode and score token vectors of one dimension. Stateful codecs are fitted once per
    index (``fit``) and keep that state for the index's life, as ColBERTv2 keeps its centroids."""

    name: ClassVar[str]
    code_dtype: ClassVar[type[np.generic]] = np.uint8
    file_name: ClassVar[str] = "codes.u8"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @property
    @abstractmethod
    def width(self) -> int:
        """Columns of the code array per vector."""

    @property
    def bytes_per_vector(self) -> int:
        return self.width * np.dtype(self.code_dtype).itemsize

    @property
    def fitted(self) -> bool:
        return True

    def fit(self, sample: np.ndarray) -> None:  # noqa: B027 - stateless codecs need no fitting
        """Learn the codec's state from (n, dim) float32 vectors; no-op for stateless codecs."""

    @abstractmethod
    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) float32 → (n, width) codes."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, width) codes → (n, dim) float32 reconstructions."""

    def as_stored(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) float32 ``vectors`` as an index of this codec gives them back (encoded, decoded)."""
        return self.decode(self.encode(np.asarray(vectors, np.float32)))

    @abstractmethod
    def similarities(self, query: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Inner products of (n_q, dim) float32 query tokens with the vectors behind (n, width) codes:
        (n, n_q) float32."""

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027 - stateless codecs keep nothing
        """Restore what ``state`` returned."""

    def same_codes_as(self, other: TokenCodec) -> bool:
        """Whether ``other``'s codes mean the same vectors here (then they are copied, not re-encoded)."""
        if type(other) is not type(self) or other.dim != self.dim or other.width != self.width:
            return False
        mine, theirs = self.state(), other.state()
        return mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)

    def save(self, directory: Path) -> None:
        from rag.index.arrays import save_npz

        save_npz(directory / CODEC_FILE, {"name": np.array(self.name), **self.state()})


class LookupCodec(TokenCodec):
    """A codec whose code byte ``j`` picks one of 256 reconstructions of dimension group ``j``:
    ``codebook`` is (width, 256, dim // width). Scoring needs no decoding: per query token, the inner
    product with every reconstruction of every group is one small table, and a document token's score
    is the sum of ``width`` table entries (asymmetric distance computation)."""

    @abstractmethod
    def codebook(self) -> np.ndarray:
        """(width, 256, dim // width) float32."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        book = self.codebook()
        groups = np.arange(self.width)
        return book[groups, np.asarray(codes, np.int64)].reshape(len(codes), self.dim)

    def similarities(self, query: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return lookup_similarities(query, codes, self.codebook())


def lookup_similarities(query: np.ndarray, codes: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """``sims[n, q] = sum_j <query[q, group j], codebook[j, codes[n, j]]>`` for (n_q, dim) ``query``,
    (n, width) uint8 ``codes`` and a (width, 256, dim // width) ``codebook``: (n, n_q) float32.

    The table (width × 256 × n_q) is small; ``embedding_bag`` sums ``width`` of its rows per token
    without materialising them: MaxSim of 100 candidates (~20k tokens × 32 query tokens × 48 groups)
    took 2.4–2.9 ms against 10–11 ms for the float16 product (docs/benchmarks.md)."""
    width, entries, group = codebook.shape
    n_q = len(query)
    q = torch.from_numpy(np.array(query, np.float32)).view(n_q, width, group).transpose(0, 1)
    book = torch.from_numpy(np.ascontiguousarray(codebook, np.float32))
    table = torch.bmm(book, q.transpose(1, 2))  # (width, entries, n_q): a batched product, not einsum (3 ms)
    rows = np.add(codes, _group_starts(width, entries), dtype=np.int32)  # row of each code in the flat table
    return torch.nn.functional.embedding_bag(
        torch.from_numpy(rows), table.reshape(width * entries, n_q), mode="sum"
    ).numpy()


@cache
def _group_starts(width: int, entries: int) -> np.ndarray:
    return np.arange(0, width * entries, entries, dtype=np.int32)


def evenly_spaced_sample(n: int, size: int = FIT_SAMPLE) -> np.ndarray:
    """At most ``size`` row numbers spread over ``range(n)`` (deterministic, so builds repeat)."""
    if n <= size:
        return np.arange(n)
    return np.linspace(0, n - 1, size).astype(np.int64)
