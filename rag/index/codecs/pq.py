"""Product-quantised token vectors (Jégou et al.; the compression ColBERTv2 and PLAID build on).

The 384 dimensions split into ``width`` groups; each group is replaced by the id of the nearest of 256
centroids learnt by k-means on that group (FAISS's ``ProductQuantizer``), one byte per group: 48 groups
of 8 dimensions give 48 bytes per vector. Scoring looks the query up in the centroid tables (ADC).
"""

from __future__ import annotations

import numpy as np

from rag.index.codecs.base import LookupCodec

CENTROIDS = 256  # one byte per group


def group_count(dim: int, max_bytes: int) -> int:
    """The largest divisor of ``dim`` not above ``max_bytes`` (groups must split the vector evenly)."""
    if max_bytes < 1:
        raise ValueError(f"the pq codec needs at least one byte per vector, got {max_bytes}")
    return max(g for g in range(1, min(dim, max_bytes) + 1) if dim % g == 0)


class ProductQuantizationCodec(LookupCodec):
    name = "pq"

    def __init__(self, dim: int, max_bytes: int = 48) -> None:
        super().__init__(dim)
        self.groups = group_count(dim, max_bytes)
        self.centroids: np.ndarray | None = None  # (groups, 256, dim // groups) float32
        self._quantizer: object | None = None

    @property
    def width(self) -> int:
        return self.groups

    @property
    def fitted(self) -> bool:
        return self.centroids is not None

    def _faiss(self) -> object:
        import faiss

        if self._quantizer is None:
            if self.centroids is None:
                raise RuntimeError("fit the pq codec before encoding")
            quantizer = faiss.ProductQuantizer(self.dim, self.groups, 8)
            faiss.copy_array_to_vector(self.centroids.ravel(), quantizer.centroids)
            self._quantizer = quantizer
        return self._quantizer

    def fit(self, sample: np.ndarray) -> None:
        import faiss

        x = np.ascontiguousarray(sample, np.float32)
        if len(x) < CENTROIDS:  # k-means needs a point per centroid; repeats only make centroids coincide
            x = np.ascontiguousarray(np.resize(x, (CENTROIDS, self.dim)))
        quantizer = faiss.ProductQuantizer(self.dim, self.groups, 8)
        quantizer.cp.min_points_per_centroid = 1  # small indexes: no warning, the fit is still exact there
        quantizer.cp.seed = 1234
        quantizer.train(x)
        self.centroids = faiss.vector_to_array(quantizer.centroids).reshape(self.groups, CENTROIDS, -1)
        self._quantizer = quantizer

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        quantizer = self._faiss()
        return quantizer.compute_codes(np.ascontiguousarray(vectors, np.float32))  # type: ignore[attr-defined]

    def codebook(self) -> np.ndarray:
        if self.centroids is None:
            raise RuntimeError("fit the pq codec before scoring")
        return self.centroids

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.centroids is None else {"centroids": self.centroids}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "centroids" in state:
            self.centroids = np.asarray(state["centroids"], np.float32)
            self.groups = self.centroids.shape[0]
            self._quantizer = None
