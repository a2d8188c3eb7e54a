"""A whole delete at 1M chunks through the real writer: rows marked deleted (tombstones, the default)
against the arrays copied without them (compaction, what every delete did before).

Builds a small real index of scifact abstracts with the writer (the real encoder and codec), then
tiles it to ``--size`` rows as one snapshot: dense vectors with noise (σ 0.05 per dimension,
re-normalised) under an HNSW graph, BM25 postings, token codes and 1M chunk rows in the SQLite store,
each copy's documents with ids of their own. Then it opens an ``IndexWriter`` on it and deletes one
document at a time, timing the open and each delete (commit, fsync and reload of the new snapshot
included), first with tombstones and, with ``--compare``, once with compaction forced.

SYNTHETIC, labelled so: the rows are copies of real ones. The graph is built with efConstruction
``--ef-construction`` (40: a delete links the graph file, whatever it holds; a build at 200 took
632 s at 1M).

    python -m bench.index_delete --size 1000000 --deletes 5 --compare
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATASETS, peak_rss_mib, percentiles_ms, print_table, read_jsonl, write_result
from indexer import writer as writer_module
from indexer.writer import IndexWriter
from rag.encode.encoder import Encoder
from rag.index.arrays import save_array, write_text_atomic
from rag.index.bm25 import BM25Index
from rag.index.dense import DenseIndex
from rag.index.manifest import MANIFEST_FILE, Manifest
from rag.index.multivector import OFFSETS_FILE
from rag.index.snapshot import CURRENT_FILE, SNAPSHOTS_DIR, Snapshot, store_for
from rag.index.store import redact_url
from rag.objects import Chunk, Document
from rag.settings import Settings


def small_index(directory: Path, settings: Settings, encoder: Encoder, n_docs: int) -> Snapshot:
    docs = [
        Document(id=r["_id"], title=r["title"], text=r["text"], source="scifact")
        for r in read_jsonl(DATASETS / "scifact" / "corpus.jsonl")[:n_docs]
    ]
    with IndexWriter(directory, settings, encoder) as writer:
        writer.upsert(docs)
    return Snapshot.load(directory, settings)


def tile(small: Snapshot, size: int, target: Path, settings: Settings, ef_construction: int) -> dict[str, Any]:
    """``target`` made an index of ``size`` rows: copies of ``small``'s, each with its own ids."""
    copies = -(-size // len(small))
    n = len(small)
    snapshot_dir = target / SNAPSHOTS_DIR / "gen-000001"
    (snapshot_dir / "rows").mkdir(parents=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    real = np.asarray(small.dense.vectors, np.float32)
    vectors = np.empty((size, real.shape[1]), np.float32)
    for k in range(copies):
        lo, hi = k * n, min(size, (k + 1) * n)
        block = real[: hi - lo] + (rng.normal(0, 0.05, (hi - lo, real.shape[1])).astype(np.float32) if k else 0)
        vectors[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    dense_params = replace(small.params.dense, hnsw_ef_construction=ef_construction)
    dense = DenseIndex.build(vectors, dense_params)
    dense.faiss_index  # noqa: B018 - builds the graph
    dense.save(snapshot_dir / "dense")
    dense_kind = dense.kind
    del dense, vectors
    timings["dense + graph s"] = time.perf_counter() - start

    start = time.perf_counter()
    sparse = small.sparse
    csr = sp.csc_matrix(
        (np.asarray(sparse.tfs), np.asarray(sparse.rows), np.asarray(sparse.indptr)),
        shape=(n, len(sparse.vocabulary)),
    ).tocsr()
    tiled = sp.vstack([csr] * copies, format="csr")[:size]
    lengths = np.tile(np.asarray(sparse.doc_lengths), copies)[:size]
    BM25Index._from_matrix(sparse.vocabulary, tiled, lengths, sparse.params).save(snapshot_dir / "sparse")
    del tiled
    timings["bm25 s"] = time.perf_counter() - start

    start = time.perf_counter()
    tokens = small.multivector
    codes = np.asarray(tokens.codes)
    offsets = np.asarray(tokens.offsets, np.int64)
    out = snapshot_dir / "multivector"
    out.mkdir()
    shutil.copy(small.directory / "multivector" / "codec.npz", out / "codec.npz")
    all_offsets = [np.zeros(1, np.int64)]
    with open(out / tokens.codec.file_name, "wb") as handle:
        for k in range(copies):
            rows = min(n, size - k * n)
            handle.write(np.ascontiguousarray(codes[: offsets[rows]]).tobytes())
            all_offsets.append(offsets[1 : rows + 1] + (all_offsets[-1][-1]))
    save_array(out / OFFSETS_FILE, np.concatenate(all_offsets))
    timings["token codes s"] = time.perf_counter() - start

    start = time.perf_counter()
    stored = small.store.get_chunks([str(c) for c in small.chunk_ids], small.generation)
    chunk_ids = [f"{c}~{k}" for k in range(copies) for c in small.chunk_ids.tolist()][:size]
    doc_ids = [f"{d}~{k}" for k in range(copies) for d in small.doc_ids.tolist()][:size]
    save_array(snapshot_dir / "rows" / "chunk_ids.npy", np.asarray(chunk_ids, dtype=str))
    save_array(snapshot_dir / "rows" / "doc_ids.npy", np.asarray(doc_ids, dtype=str))
    chunks = []
    for i, (chunk_id, doc_id) in enumerate(zip(chunk_ids, doc_ids, strict=True)):
        original = stored[str(small.chunk_ids[i % n])]
        text = original.text
        chunks.append(
            Chunk(
                id=chunk_id,
                document_id=doc_id,
                ordinal=original.ordinal,
                text=text,
                title=original.title,
                token_start=0,
                token_end=0,
                char_start=0,
                char_end=len(text),
            )
        )
    per_doc: dict[str, int] = {}
    for doc_id in doc_ids:
        per_doc[doc_id] = per_doc.get(doc_id, 0) + 1
    docs = [(Document(id=d, title=d, text="", source="scifact"), d, count) for d, count in per_doc.items()]
    store = store_for(target, settings)
    store.create_schema()

    def put_in_place(n_documents: int) -> None:
        manifest = Manifest.create(
            snapshot_dir,
            generation=1,
            params=small.params,
            dense_kind=dense_kind,
            store_backend="sqlite",
            store_url=redact_url(store.url),
            documents=n_documents,
            chunks=size,
            token_vectors=int(all_offsets[-1][-1]),
        )
        (snapshot_dir / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2), "utf-8")

    store.commit_generation(1, "default", docs, chunks, [], [], snapshot="gen-000001", before_commit=put_in_place)
    write_text_atomic(target / CURRENT_FILE, "gen-000001\n")
    store.close()
    timings["rows + store s"] = time.perf_counter() - start
    return {k: round(v, 1) for k, v in timings.items()} | {"copies": copies}


def timed_deletes(
    index: Path, settings: Settings, encoder: Encoder, doc_ids: list[str], label: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with IndexWriter(index, settings, encoder, show_progress=False) as writer:
        open_s = time.perf_counter() - start
        for doc_id in doc_ids:
            start = time.perf_counter()
            summary = writer.delete([doc_id])
            seconds = time.perf_counter() - start
            snapshot = writer.snapshot
            assert snapshot is not None
            rows.append(
                {
                    "mode": label,
                    "chunks": snapshot.n_rows,
                    "deleted rows after": snapshot.n_rows - len(snapshot),
                    "chunks removed": summary.chunks_removed,
                    "writer open s": round(open_s, 2),
                    "delete s": round(seconds, 2),
                }
            )
            print(rows[-1], flush=True)
            open_s = 0.0
    return rows


def search_ms(index: Path, settings: Settings, encoder: Encoder, n_queries: int) -> dict[str, Any]:
    """BM25 and dense search p50/p95 of 100 candidates over the index as it is (deleted rows included)."""
    snapshot = Snapshot.load(index, settings)
    questions = [q["text"] for q in read_jsonl(DATASETS / "scifact" / "queries.jsonl")][:n_queries]
    dense = encoder.encode(questions).dense
    snapshot.sparse.search(snapshot.bm25_tokenize(questions[0]), 100)  # impacts computed once
    bm25, vectors = [], []
    for i, question in enumerate(tqdm(questions, desc="searching", unit="q")):
        start = time.perf_counter()
        snapshot.sparse.search(snapshot.bm25_tokenize(question), 100)
        bm25.append(time.perf_counter() - start)
        start = time.perf_counter()
        snapshot.dense.search_batch(dense[i : i + 1], 100)
        vectors.append(time.perf_counter() - start)
    snapshot.store.close()
    return {"bm25 ms": percentiles_ms(bm25), "dense ms": percentiles_ms(vectors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--docs", type=int, default=1000, help="scifact abstracts in the real index tiled")
    parser.add_argument("--deletes", type=int, default=5, help="one-document deletes timed")
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--compare", action="store_true", help="also time one delete with compaction forced")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("data"), help="a folder on the disk to measure")
    parser.add_argument("--keep", action="store_true", help="keep the built index (WORK/index-delete-*/big)")
    parser.add_argument("--index", type=Path, help="an index this script built and kept: measured again as it is")
    parser.add_argument("--name", default="index_delete", help="bench/results/NAME.json")
    args = parser.parse_args()
    settings = Settings()
    encoder = Encoder.from_settings(settings)
    args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="index-delete-", dir=args.work))
    built: dict[str, Any] = {"reused": str(args.index)} if args.index else {}
    try:
        if args.index is None:
            small = small_index(work / "small", settings, encoder, args.docs)
            built = tile(small, args.size, work / "big", settings, args.ef_construction)
            print("built", built, flush=True)
        index = args.index or work / "big"
        snapshot = Snapshot.load(index, settings)
        live = np.asarray(snapshot.doc_ids)[snapshot.live_rows()]
        doc_ids = sorted({str(d) for d in live[:: max(1, len(live) // 97)]})
        snapshot.store.close()
        search = {"before": search_ms(index, settings, encoder, args.queries)}
        rows = timed_deletes(index, settings, encoder, doc_ids[: args.deletes], "tombstones")
        search["after"] = search_ms(index, settings, encoder, args.queries)
        if args.compare:
            share = writer_module.TOMBSTONE_SHARE
            writer_module.TOMBSTONE_SHARE = 0.0
            try:
                more = doc_ids[args.deletes : args.deletes + 1]
                rows += timed_deletes(index, settings, encoder, more, "compaction")
            finally:
                writer_module.TOMBSTONE_SHARE = share
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, list(rows[0]))
    print("search before the deletes and with the deleted rows after:", search)
    write_result(
        args.name,
        {
            "command": " ".join(["python -m bench.index_delete", *sys.argv[1:]]),
            "rows_label": f"synthetic: the real chunks of {args.docs} scifact abstracts, tiled",
            "build": built,
            "ef_construction": args.ef_construction,
            "tombstone_share": writer_module.TOMBSTONE_SHARE,
            "search_ms": search,
            "peak_rss_mib": round(peak_rss_mib()),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
