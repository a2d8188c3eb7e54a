"""Float16 token vectors: the reference codec (2 bytes per dimension, exact up to rounding)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from rag.index.codecs.base import TokenCodec
from rag.maxsim import token_similarities


class Float16Codec(TokenCodec):
    name = "float16"
    code_dtype: ClassVar[type[np.generic]] = np.float16
    file_name = "vectors.f16"  # the name indexes had before codecs existed

    @property
    def width(self) -> int:
        return self.dim

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, np.float16)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, np.float32)

    def similarities(self, query: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return token_similarities(query, codes)
