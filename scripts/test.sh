#!/usr/bin/env bash
# Install, then run the whole test suite (PostgreSQL on 127.0.0.1 is used where a test says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The browser test drives Debian's chromium (Playwright cannot download a browser here).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser test ..." >&2
  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/mypy rag indexer cli api ui eval tests bench connect
.venv/bin/python -m pytest -q "$@"
