#!/usr/bin/env bash
# One adapted head, two engines (docs/scale-out.md): squad-dev-a indexed on Qdrant (local mode) and on the
# embedded engine (float16 token vectors on both), `rag adapt` on the Qdrant index, its head then set on
# the embedded index, and both evaluated on the same 1,000 questions. Every stage should score the same.
# Usage: bash scripts/adapted_head_engines.sh [WORK_DIR]   (default data/adapted-head-engines)
set -euo pipefail
cd "$(dirname "$0")/.."
export RAG_TOKEN_CODEC=float16
work=${1:-data/adapted-head-engines}
dataset=${RAG_DATASETS:-../shared/datasets}/squad-dev-a
rm -rf "$work" && mkdir -p "$work"
timed() { local start; start=$(date +%s); "$@"; echo "TIME $(($(date +%s) - start)) s: $*"; }
timed env RAG_INDEX_ENGINE=qdrant .venv/bin/rag index build --input "$dataset" --index "$work/qdrant" -q
timed .venv/bin/rag index build --input "$dataset" --index "$work/embedded" -q
timed env RAG_INDEX_ENGINE=qdrant .venv/bin/rag adapt --index "$work/qdrant"
.venv/bin/python - "$work" <<'PY'
import shutil
import sys
from pathlib import Path

from indexer.writer import IndexWriter
from rag.index.snapshot import Snapshot
from rag.settings import Settings

work = Path(sys.argv[1])
head = Snapshot.load(work / "qdrant", Settings(index_engine="qdrant")).params.late_projection
shutil.copytree(work / "qdrant" / head, work / "embedded" / head)
with IndexWriter(work / "embedded", Settings(), show_progress=False) as writer:
    print(f"embedded index: generation {writer.set_projection(head)} scores MaxSim through {head}")
PY
timed env RAG_INDEX_ENGINE=qdrant .venv/bin/rag eval run --dataset "$dataset" --index "$work/qdrant" --limit 1000 -q \
  --out eval/results/squad-dev-a-adapted-head-qdrant
timed .venv/bin/rag eval run --dataset "$dataset" --index "$work/embedded" --limit 1000 -q \
  --out eval/results/squad-dev-a-adapted-head-embedded
