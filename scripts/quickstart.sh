#!/usr/bin/env bash
# Install, index the project's own docs with the embedded defaults, and answer a question from them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
INDEX=${RAG_DEMO_INDEX:-data/docs-index}
.venv/bin/rag index build --input docs --index "$INDEX" --collection docs --force
.venv/bin/rag index stats --index "$INDEX"
.venv/bin/rag ask --index "$INDEX" "${1:-How does the index stay consistent when a writer is killed?}"
echo "next: .venv/bin/rag serve --index $INDEX   (API on :8000, /docs)  and  .venv/bin/rag ui   (chat on :8501)" >&2
