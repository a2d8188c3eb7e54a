"""A delete in an HNSW dense index: tombstones (the default) against rebuilding the graph (before).

Builds an HNSW graph over ``--size`` chunk vectors and saves it, as a snapshot does; then, for each
delete size, loads it memory-mapped, deletes that many random rows and saves the result into a new
folder, timing both; with ``--rebuild`` it also times the old way (the graph built again over the kept
rows, then written) for the first delete size. Recall@100 of each result against exact search over
the kept rows, on scifact questions, says what the tombstones cost in quality.

SYNTHETIC above the index's own size, labelled so: the scifact index's real chunk vectors, then copies
of them with Gaussian noise (σ 0.05 per dimension) re-normalised.

    python -m bench.dense_delete --index data/scifact-index --size 1000000 --deletes 10,10000 --rebuild
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATASETS, peak_rss_mib, print_table, read_jsonl, write_result
from rag.encode.encoder import Encoder
from rag.index.dense import TOMBSTONE_REBUILD, DenseIndex, DenseParams
from rag.settings import Settings

CANDIDATES = 100


def chunk_vectors(index_dir: Path, size: int, seed: int = 0) -> tuple[np.ndarray, str]:
    real = np.load(next((index_dir / "snapshots").glob("gen-*")) / "dense" / "vectors.npy")
    if size <= len(real):
        return np.ascontiguousarray(real[:size]), "real scifact chunk vectors"
    rng = np.random.default_rng(seed)
    out = np.empty((size, real.shape[1]), np.float32)
    out[: len(real)] = real
    for start in range(len(real), size, len(real)):
        block = real[: min(len(real), size - start)]
        noisy = block + rng.normal(0, 0.05, block.shape).astype(np.float32)
        out[start : start + len(block)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return out, f"synthetic: {len(real):,} real scifact chunk vectors and noisy copies of them"


def recall(index: DenseIndex, kept: np.ndarray, queries: np.ndarray, ef_search: int) -> float:
    exact = np.argpartition(-(queries @ kept.T), CANDIDATES, axis=1)[:, :CANDIDATES]
    rows, _ = index.search_batch(queries, CANDIDATES, ef_search=ef_search)
    return float(np.mean([len(set(a) & set(b)) / CANDIDATES for a, b in zip(rows, exact, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("data/scifact-index"))
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--deletes", default="10,10000", help="rows deleted, comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--rebuild", action="store_true", help="also time the old way, the graph rebuilt (first delete size only)"
    )
    parser.add_argument("--name", default="dense_delete", help="bench/results/NAME.json")
    args = parser.parse_args()
    settings = Settings()
    params = DenseParams(0, settings.dense_hnsw_m, settings.dense_hnsw_ef_construction)  # HNSW at every size
    vectors, label = chunk_vectors(args.index, args.size)
    questions = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")][: args.queries]
    queries = Encoder.from_settings(settings).encode(questions).dense
    work = Path(tempfile.mkdtemp(dir=args.index.parent))  # the index's disk: links need one filesystem
    try:
        start = time.perf_counter()
        built = DenseIndex.build(vectors, params)
        built.faiss_index  # noqa: B018 - builds the graph
        build_s = time.perf_counter() - start
        built.save(work / "base")
        del built
        rng = np.random.default_rng(1)
        rows_out: list[dict[str, Any]] = []
        for n_deleted in (int(n) for n in args.deletes.split(",")):
            deleted = rng.choice(args.size, n_deleted, replace=False)
            kept = np.delete(vectors, deleted, axis=0)
            start = time.perf_counter()
            loaded = DenseIndex.load(work / "base", params)
            tombstoned = loaded.delete(deleted)
            target = work / f"tombstones-{n_deleted}"
            tombstoned.save(target)
            tombstone_s = time.perf_counter() - start
            row: dict[str, Any] = {
                "chunks": args.size,
                "deleted": n_deleted,
                "tombstones": tombstoned.tombstones,
                "delete + save s (tombstones)": round(tombstone_s, 2),
                "recall@100 (tombstones)": round(recall(tombstoned, kept, queries, settings.dense_hnsw_ef_search), 4),
            }
            if args.rebuild and not rows_out:  # a rebuild costs the same whatever was deleted
                start = time.perf_counter()
                rebuilt = DenseIndex(kept, params)
                rebuilt.save(work / f"rebuilt-{n_deleted}")
                row["delete + save s (rebuild)"] = round(time.perf_counter() - start, 2)
                row["recall@100 (rebuild)"] = round(recall(rebuilt, kept, queries, settings.dense_hnsw_ef_search), 4)
                del rebuilt
            rows_out.append(row)
            print(row, flush=True)
            shutil.rmtree(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows_out, list(rows_out[0]))
    command = " ".join(["python -m bench.dense_delete", *sys.argv[1:]])
    write_result(
        args.name,
        {
            "command": command,
            "vectors": label,
            "build_s": round(build_s, 1),
            "tombstone_rebuild_share": TOMBSTONE_REBUILD,
            "ef_search": settings.dense_hnsw_ef_search,
            "peak_rss_mib": round(peak_rss_mib()),
            "rows": rows_out,
        },
    )


if __name__ == "__main__":
    main()
