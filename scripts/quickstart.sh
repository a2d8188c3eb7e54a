#!/usr/bin/env bash
# Install, then index the project's own docs with the embedded defaults and show what was built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
INDEX=${RAG_DEMO_INDEX:-data/docs-index}
.venv/bin/rag index build --input docs --index "$INDEX" --collection docs --force
.venv/bin/rag index stats --index "$INDEX"
