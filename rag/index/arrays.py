"""Plain-array files: write beside then rename, load memory-mapped, checksum for the manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def marked_rows(mask: np.ndarray | None) -> np.ndarray | None:
    """``mask`` where it marks a row, None where it marks none (so that "no row deleted" is one case)."""
    return mask if mask is not None and mask.any() else None


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` (never pickled) to a temporary name, fsync, then rename."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """Load an ``.npy`` array, memory-mapped read-only unless ``mmap`` is false."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_text_atomic(path: Path, content: str) -> None:
    """Replace ``path`` with ``content`` so that a reader sees the old or the new file, never a part."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays as one uncompressed ``.npz`` (never pickled), beside then renamed."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
