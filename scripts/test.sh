#!/usr/bin/env bash
# Install, then run the whole test suite (PostgreSQL on 127.0.0.1 is used where a test says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/mypy rag indexer cli eval tests bench
.venv/bin/python -m pytest -q "$@"
