"""Indexing throughput on a BEIR corpus beside the encoder's own throughput on the same passages.

    python bench/index_throughput.py [--dataset scifact] [--limit N]

Prints a table and writes bench/results/index_throughput.json. Goal: everything that is not the
encoder (loading, chunking, BM25, FAISS, store, writing) costs at most 10% of the build.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import DATASETS, peak_rss_mib, print_table, timed, write_result
from indexer.chunking import chunk_documents
from indexer.loaders import load_documents
from indexer.writer import IndexWriter
from rag.encode.encoder import Encoder
from rag.index.snapshot import Snapshot
from rag.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--limit", type=int, default=0, help="first N documents only")
    parser.add_argument("--keep", type=Path, default=None, help="keep the built index in this directory")
    args = parser.parse_args()

    settings = Settings()
    encoder = Encoder(settings.encoder_model, settings.encoder_batch_size, settings.torch_threads)
    encoder.encode(["warm up the model"])
    documents, load_s = timed(lambda: load_documents(DATASETS / args.dataset))
    if args.limit:
        documents = documents[: args.limit]

    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    index_dir = args.keep or workdir / "ix"
    if index_dir.exists():
        shutil.rmtree(index_dir)
    try:
        start = time.perf_counter()
        with IndexWriter(index_dir, settings, encoder) as writer:
            writer.upsert(documents, args.dataset)
        build_s = time.perf_counter() - start
        snapshot = Snapshot.load(index_dir, settings)
        stats = snapshot.stats()
        build_rss = peak_rss_mib()

        # the encoder alone, through sentence-transformers' own encode, on exactly the same passages
        chunk_lists, chunk_s = timed(
            lambda: chunk_documents(
                documents,
                encoder.tokenizer,
                snapshot.params.chunk_max_tokens,
                snapshot.params.chunk_overlap_tokens,
                snapshot.params.chunk_min_tokens,
            )
        )
        texts = [c.encoded_text for chunks in chunk_lists for c in chunks]
        _, encode_s = timed(lambda: encoder.model.encode(texts, batch_size=settings.encoder_batch_size))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    n = len(texts)
    overhead = (build_s - encode_s) / build_s
    rows = [
        {"step": "load documents", "seconds": load_s, "passages/s": None},
        {"step": "chunking (alone)", "seconds": chunk_s, "passages/s": n / chunk_s},
        {"step": "encoder alone (SentenceTransformer.encode)", "seconds": encode_s, "passages/s": n / encode_s},
        {"step": "full index build (IndexWriter.upsert)", "seconds": build_s, "passages/s": n / build_s},
    ]
    print(f"\n{args.dataset}: {len(documents)} documents, {n} passages, {stats['token_vectors']} token vectors")
    print_table(rows, ["step", "seconds", "passages/s"])
    print(f"non-encoder share of the build: {overhead:.1%} (goal <= 10%); peak RSS {build_rss:.0f} MiB")
    write_result(
        "index_throughput",
        {
            "dataset": args.dataset,
            "documents": len(documents),
            "passages": n,
            "token_vectors": stats["token_vectors"],
            "bytes": stats["bytes"],
            "seconds": {"load": load_s, "chunking": chunk_s, "encoder_alone": encode_s, "build": build_s},
            "passages_per_s": {"encoder_alone": n / encode_s, "build": n / build_s},
            "non_encoder_share": overhead,
            "peak_rss_mib": build_rss,
        },
    )


if __name__ == "__main__":
    main()
