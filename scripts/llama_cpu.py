"""The llama.cpp kernels scripts/install.sh compiles for this CPU: prints the build's name and its CMake
arguments.

llama.cpp compiles at install, so it can use what the installing CPU has. AVX2/FMA/F16C everywhere (a
generic build is several times slower), and AVX-512 with whichever of VNNI, VBMI and BF16 the CPU has
(prompt processing of the bundled 1.5B model, docs/benchmarks.md). ``RAG_LLAMA_CPU=avx2`` forces the
portable build, for an image or a wheel cache that moves to another CPU. Standard library only: it runs
before the project is installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

AVX2_ARGS = ("-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON")
# ggml's GGML_AVX512 compiles with -mavx512f/cd/vl/dq/bw; each extension below adds its own dot products.
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"})
AVX512_EXTENSIONS = {"avx512_vnni": "VNNI", "avx512vbmi": "VBMI", "avx512_bf16": "BF16"}


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (every core has the same)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_build(flags: frozenset[str], forced: str = "") -> tuple[str, tuple[str, ...]]:
    """The build's name (the wheel cache's folder) and CMake arguments: the widest kernels this CPU runs,
    or the portable AVX2 build where ``forced`` (RAG_LLAMA_CPU) is ``avx2``."""
    if forced not in ("", "avx2", "native"):
        raise ValueError(f"RAG_LLAMA_CPU={forced!r}: expected avx2 or native (the default)")
    if forced == "avx2" or not AVX512_FLAGS.issubset(flags):
        return "avx2", AVX2_ARGS
    extensions = [name for flag, name in AVX512_EXTENSIONS.items() if flag in flags]
    args = (*AVX2_ARGS, "-DGGML_AVX512=ON", *(f"-DGGML_AVX512_{name}=ON" for name in extensions))
    return "-".join(["avx512", *(name.lower() for name in extensions)]), args


def main() -> int:
    info = Path("/proc/cpuinfo")
    flags = cpu_flags(info.read_text("utf-8")) if info.is_file() else frozenset()
    try:
        name, args = choose_build(flags, os.environ.get("RAG_LLAMA_CPU", ""))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(name, " ".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
