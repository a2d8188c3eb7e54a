"""Token-vector codecs of the multi-vector index, and the one factory that names them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.errors import IndexCorruptError, InputError
from rag.index.codecs.base import CODEC_FILE, TokenCodec, evenly_spaced_sample
from rag.index.codecs.binary import BinaryCodec
from rag.index.codecs.float16 import Float16Codec
from rag.index.codecs.pq import ProductQuantizationCodec

__all__ = ["CODEC_NAMES", "TokenCodec", "evenly_spaced_sample", "load_codec", "make_codec"]

CODEC_NAMES = ("float16", "binary", "pq")


def make_codec(name: str, dim: int, pq_bytes: int = 48) -> TokenCodec:
    """A new, unfitted codec. ``pq_bytes``: bytes per vector for ``pq`` (rounded down to a divisor of dim)."""
    if name == "float16":
        return Float16Codec(dim)
    if name == "binary":
        return BinaryCodec(dim)
    if name == "pq":
        return ProductQuantizationCodec(dim, pq_bytes)
    raise InputError(f"unknown token codec {name!r}; choose one of {', '.join(CODEC_NAMES)}")


def load_codec(directory: Path, name: str, dim: int) -> TokenCodec:
    """The codec a multi-vector directory was written with (its state from ``codec.npz``; an index
    from before codecs existed has none and is float16)."""
    codec = make_codec(name, dim)
    path = directory / CODEC_FILE
    if path.exists():
        with np.load(path, allow_pickle=False) as saved:
            codec.load_state({k: saved[k] for k in saved.files if k != "name"})
    if not codec.fitted:
        raise IndexCorruptError(f"{directory} has no usable state for its {name} codec")
    return codec
