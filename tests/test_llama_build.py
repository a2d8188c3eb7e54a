"""llama.cpp is compiled for the CPU that installs it: AVX2 everywhere, AVX-512 and its extensions where the
CPU has them (scripts/llama_cpu.py chooses; scripts/install.sh builds), and the portable build on request."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama_cpu.py"
# /proc/cpuinfo flags of three CPUs seen on this project's machines, abridged to what matters here.
ZEN3 = "fpu sse sse2 ssse3 fma pclmulqdq sse4_1 sse4_2 avx f16c avx2 bmi2"
SKYLAKE_X = ZEN3 + " avx512f avx512dq avx512cd avx512bw avx512vl"
ZEN4 = SKYLAKE_X + " avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bf16 avx512_bitalg"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_cpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\nbugs\t\t: sysret_ss_attrs\n\n"


def test_each_cpu_gets_the_widest_kernels_it_runs() -> None:
    llama_cpu = _script()
    name, args = llama_cpu.choose_build(llama_cpu.cpu_flags(_cpuinfo(ZEN3)))
    assert name == "avx2" and "-DGGML_AVX2=ON" in args and not any("AVX512" in arg for arg in args)
    name, args = llama_cpu.choose_build(llama_cpu.cpu_flags(_cpuinfo(SKYLAKE_X)))
    assert name == "avx512" and "-DGGML_AVX512=ON" in args and "-DGGML_AVX512_VNNI=ON" not in args
    name, args = llama_cpu.choose_build(llama_cpu.cpu_flags(_cpuinfo(ZEN4)))
    assert name == "avx512-vnni-vbmi-bf16"
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_VBMI=ON", "-DGGML_AVX512_BF16=ON"} <= set(args)
    assert "-DGGML_NATIVE=OFF" in args  # the flags say what the wheel holds, not whatever compiled it


def test_the_portable_build_on_request_and_a_bad_request_refused() -> None:
    llama_cpu = _script()
    flags = llama_cpu.cpu_flags(_cpuinfo(ZEN4))
    assert llama_cpu.choose_build(flags, "avx2") == ("avx2", llama_cpu.AVX2_ARGS)
    assert llama_cpu.choose_build(flags, "native")[0] == "avx512-vnni-vbmi-bf16"
    with pytest.raises(ValueError, match="RAG_LLAMA_CPU='avx512'"):
        llama_cpu.choose_build(flags, "avx512")
    assert llama_cpu.cpu_flags("processor\t: 0\n") == frozenset()


def test_the_installed_llama_cpp_uses_what_this_cpu_has() -> None:
    """The wheel scripts/install.sh put in this environment, against this machine's /proc/cpuinfo."""
    llama_cpp = pytest.importorskip("llama_cpp")
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo")
    llama_cpu = _script()
    _, args = llama_cpu.choose_build(llama_cpu.cpu_flags(cpuinfo.read_text("utf-8")))
    system = llama_cpp.llama_print_system_info().decode()
    for feature in (a.removeprefix("-DGGML_").removesuffix("=ON") for a in args if a.endswith("=ON")):
        # -DGGML_AVX512_VNNI=ON → "AVX512_VNNI = 1"
        assert f"{feature} = 1" in system, f"{feature} missing from llama.cpp's build: {system}"
