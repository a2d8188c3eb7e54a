"""Speed and memory at scale, in one run: encoders, token-vector codecs, index structures at 10k/100k/1M
chunks, and the query path side by side with LangChain's EnsembleRetriever on scifact.

    python -m bench.run --index data/scifact-index [--fast-index data/scifact-fast] \\
        [--sizes 10000,100000,1000000] [--skip peer,scale,...]

Sections (each prints a table; all of it goes to bench/results/run.json):

- encoders: passages/s of `Encoder.encode` on 512 scifact passages and one-query latency, per backend.
- codecs: bytes per token vector, multi-vector size, MaxSim latency of the fused top 100 and nDCG@10 of
  MaxSim over those same candidates, per codec, on the real scifact index (compressed in memory here;
  `rag index compress` writes the same codes to disk).
- scale: per size, in a child process of its own (so its peak memory is its own): dense exact and ANN
  (build, p50/p95, recall@100 against exact), BM25 (build, p50/p95), MaxSim of 100 candidates per codec,
  sizes on disk. Real scifact vectors at 10k; above that, SYNTHETIC: real token vectors of the index stand
  in for chunk vectors, BM25 indexes real sentence pairs repeated with a marker token, and the multi-vector
  codes are the index's rows repeated; MaxSim candidates are 100 random rows.
- peer: nDCG@10 and p50 latency on scifact's 300 test queries of LangChain's EnsembleRetriever
  (BM25Retriever + FAISS over the same passages and the same MiniLM vectors, weighted RRF, 100 from each)
  and of this project's retrieval (default settings, and the fast index/settings when given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DATASETS,
    RESULTS,
    peak_rss_mib,
    percentiles_ms,
    print_table,
    read_jsonl,
    read_qrels,
    write_result,
)
from eval.metrics import document_scores, retrieval_metrics
from rag.encode.encoder import Encoder
from rag.encode.runtime import BACKENDS
from rag.index.codecs import CODEC_NAMES, TokenCodec, evenly_spaced_sample, make_codec
from rag.index.multivector import MultiVectorIndex
from rag.index.snapshot import Snapshot
from rag.pipeline import Pipeline
from rag.settings import Settings

CANDIDATES = 100
SECTIONS = ("encoders", "codecs", "scale", "peer")
EF_SEARCH_SWEEP = (128, 256, 512, 1024)  # HNSW search breadths whose recall and latency the scale section reports
Retriever = Callable[[str], tuple[list[tuple[str, float]], dict[str, float]]]  # ranking, stage timings (ms)
CODEC_COLUMNS = ("codec", "bytes/vector", "multivector MB", "encode s", "maxsim p50 ms", "maxsim p95 ms", "ndcg@10")


# --- encoders ------------------------------------------------------------------------------------


def bench_encoders(model: str, passages: list[str], queries: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        encoder = Encoder(model, backend=backend)  # type: ignore[arg-type]
        encoder.encode(passages[:32])  # load, export on first use, warm up
        start = time.perf_counter()
        encoder.encode(passages)
        seconds = time.perf_counter() - start
        for q in queries[:10]:
            encoder.encode([q])
        single = []
        for q in queries[:100]:
            start = time.perf_counter()
            encoder.encode([q])
            single.append(time.perf_counter() - start)
        rows.append(
            {
                "backend": backend,
                "passages": len(passages),
                "passages/s": len(passages) / seconds,
                "query p50 ms": percentiles_ms(single)["p50"],
                "query p95 ms": percentiles_ms(single)["p95"],
            }
        )
    base = rows[0]["passages/s"]
    for row in rows:
        row["speed-up"] = row["passages/s"] / base
    return rows


# --- codecs ----------------------------------------------------------------------------------------


def compress(source: MultiVectorIndex, codec: TokenCodec) -> tuple[MultiVectorIndex, float]:
    """The whole multi-vector array in ``codec``, in memory: (index, seconds to fit and encode)."""
    start = time.perf_counter()
    if codec.name == source.codec.name:
        return source, 0.0
    codec.fit(source.codec.decode(np.asarray(source.codes[evenly_spaced_sample(source.n_vectors)])))
    blocks = [
        codec.encode(source.decode_range(lo, min(lo + (1 << 18), source.n_vectors)))
        for lo in range(0, source.n_vectors, 1 << 18)
    ]
    codes = np.concatenate(blocks) if blocks else np.zeros((0, codec.width), codec.code_dtype)
    return MultiVectorIndex(codes, np.asarray(source.offsets), codec), time.perf_counter() - start


def fixed_candidates(pipeline: Pipeline, queries: list[dict[str, Any]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(query id, query token vectors, RRF top-100 rows) per query: what MaxSim reranks."""
    row_of = {str(c): i for i, c in enumerate(pipeline.snapshot.chunk_ids)}
    fixed = []
    for q in queries:
        retrieval = pipeline.retrieve(q["text"], depth=CANDIDATES)
        rows = np.array([row_of[c] for c, _ in retrieval.rankings["rrf"]], np.int64)
        fixed.append((q["_id"], pipeline.encoder.encode_questions([q["text"]]).tokens[0], rows))
    return fixed


def bench_codecs(
    snapshot: Snapshot, fixed: Sequence[tuple[str, np.ndarray, np.ndarray]], qrels: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))
    source = snapshot.multivector
    rows: list[dict[str, Any]] = []
    for name in CODEC_NAMES:
        index, seconds = compress(source, make_codec(name, source.dim, snapshot.params.token_codec_pq_bytes))
        run, latency = {}, []
        for qid, tokens, candidates in fixed:
            start = time.perf_counter()
            scores = index.scores(tokens, candidates)
            latency.append(time.perf_counter() - start)
            order = np.lexsort((np.arange(len(candidates)), -scores))
            ranking = [(str(snapshot.chunk_ids[candidates[i]]), float(scores[i])) for i in order]
            run[qid] = document_scores(ranking, chunk_to_doc)
        ndcg = retrieval_metrics({q: qrels[q] for q in run}, run, ["ndcg@10"])[0]["ndcg@10"]
        rows.append(
            {
                "codec": name,
                "bytes/vector": index.codec.bytes_per_vector,
                "multivector MB": index.n_vectors * index.codec.bytes_per_vector / 1e6,
                "encode s": seconds,
                "maxsim p50 ms": percentiles_ms(latency)["p50"],
                "maxsim p95 ms": percentiles_ms(latency)["p95"],
                "ndcg@10": ndcg,
            }
        )
    for row in rows:
        row["loss vs float16 (pt)"] = 100 * (rows[0]["ndcg@10"] - row["ndcg@10"])
    return rows


# --- scale -----------------------------------------------------------------------------------------


def prepare_scale_inputs(snapshot: Snapshot, encoder: Encoder, queries: list[str], work: Path, largest: int) -> None:
    """Files the child processes read: query vectors, a pool of real vectors, the index's pq codes."""
    encoded = encoder.encode(queries)
    np.save(work / "query_dense.npy", encoded.dense)
    np.save(work / "query_tokens.npy", np.concatenate(encoded.tokens))
    np.save(work / "query_offsets.npy", np.concatenate([[0], np.cumsum([len(t) for t in encoded.tokens])]))
    np.save(work / "chunk_dense.npy", np.asarray(snapshot.dense.vectors, np.float32))
    mv = snapshot.multivector
    pool = np.lib.format.open_memmap(work / "pool.npy", mode="w+", dtype=np.float32, shape=(largest, mv.dim))
    rows = evenly_spaced_sample(mv.n_vectors, largest)
    for lo in range(0, largest, 1 << 17):
        pool[lo : lo + (1 << 17)] = mv.codec.decode(np.asarray(mv.codes[rows[lo : lo + (1 << 17)]]))
    pool.flush()
    np.save(work / "offsets.npy", np.asarray(mv.offsets))
    for name in ("float16", "pq"):
        index, _ = compress(mv, make_codec(name, mv.dim, snapshot.params.token_codec_pq_bytes))
        np.save(work / f"codes-{name}.npy", np.asarray(index.codes))
        (work / f"codec-{name}").mkdir()
        index.codec.save(work / f"codec-{name}")


def scale_child(size: int, work: Path) -> dict[str, Any]:
    """One size, in its own process: dense exact and ANN, BM25, MaxSim per codec, sizes, peak memory."""
    settings = Settings()
    result: dict[str, Any] = {"chunks": size}
    result.update(_scale_dense(size, work, settings))
    result["bm25"] = _scale_bm25(size)
    result["maxsim"] = _scale_maxsim(size, work)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _scale_dense(size: int, work: Path, settings: Settings) -> dict[str, Any]:
    import faiss

    from rag.index.dense import DenseIndex, DenseParams

    queries = np.load(work / "query_dense.npy")
    real = np.load(work / "chunk_dense.npy", mmap_mode="r")
    if size <= len(real):
        vectors, label = np.ascontiguousarray(real[:size]), "real scifact chunk vectors"
    else:
        vectors = np.ascontiguousarray(np.load(work / "pool.npy", mmap_mode="r")[:size])
        label = "synthetic: real MiniLM token vectors as chunk vectors"
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    truth, latency = [], []
    for q in queries:
        start = time.perf_counter()
        _, rows = exact.search(q[None], CANDIDATES)
        latency.append(time.perf_counter() - start)
        truth.append(rows[0])
    exact_ms = percentiles_ms(latency)
    # threshold 0: the ANN structure an index uses above its threshold, at every size
    params = DenseParams(
        ann_threshold=0, hnsw_m=settings.dense_hnsw_m, hnsw_ef_construction=settings.dense_hnsw_ef_construction
    )
    start = time.perf_counter()
    index = DenseIndex.build(vectors, params)
    structure = index.faiss_index
    build_s = time.perf_counter() - start
    sweep = {}
    for ef in sorted({settings.dense_hnsw_ef_search, *EF_SEARCH_SWEEP}):
        latency, recall = [], []
        for q, expected in zip(queries, truth, strict=True):
            start = time.perf_counter()
            rows, _ = index.search_batch(q[None], CANDIDATES, ef_search=ef)
            latency.append(time.perf_counter() - start)
            recall.append(len(set(rows[0].tolist()) & set(expected.tolist())) / CANDIDATES)
        sweep[ef] = {"ms": percentiles_ms(latency), "recall@100": float(np.mean(recall))}
    default = sweep[settings.dense_hnsw_ef_search]
    return {
        "dense_vectors": label,
        "dense_exact_ms": exact_ms,
        "dense_bytes": vectors.nbytes,
        "dense_ann": {
            "kind": index.kind,
            "build_s": build_s,
            "ef_search": settings.dense_hnsw_ef_search,
            "ms": default["ms"],
            "recall@100": default["recall@100"],
            "ef_search_sweep": sweep,
            "bytes": int(faiss.serialize_index(structure).nbytes),
            "index_default_at_this_size": DenseParams(settings.dense_ann_threshold).kind_for(size),
        },
    }


def _scale_bm25(size: int) -> dict[str, Any]:
    from bench.bm25_choices import latency

    measured = latency(size)
    copies = measured["repeated_copies"]
    return {
        "build_s": measured["build_s"],
        "ms": measured["latency_ms"],
        "bytes": measured["bytes"],
        "text": f"{measured['real_text_chunks']} distinct real sentence pairs"
        + (f", {copies} marked repeats" if copies else ""),
    }


def _scale_maxsim(size: int, work: Path) -> dict[str, Any]:
    """MaxSim of 100 random rows per query over the index's rows repeated to ``size`` rows, per codec."""
    from rag.index.codecs import load_codec

    lengths = np.diff(np.load(work / "offsets.npy"))
    query_tokens = np.load(work / "query_tokens.npy")
    query_offsets = np.load(work / "query_offsets.npy")
    rng = np.random.default_rng(size)
    out: dict[str, Any] = {}
    for name in ("float16", "pq"):
        codes = np.load(work / f"codes-{name}.npy", mmap_mode="r")
        codec = load_codec(work / f"codec-{name}", name, query_tokens.shape[1])
        row_lengths = np.resize(lengths, size)
        total = int(row_lengths.sum())
        nbytes = total * codec.bytes_per_vector
        if nbytes > 12 * 2**30:  # would not fit this machine's page cache beside the rest
            out[name] = {"bytes": nbytes, "skipped": "too large for this machine's memory"}
            continue
        path = work / f"tiled-{name}-{size}.bin"
        with open(path, "wb") as handle:
            written = 0
            while written < total:
                block = np.asarray(codes[: min(len(codes), total - written)])
                handle.write(np.ascontiguousarray(block).tobytes())
                written += len(block)
        tiled = np.memmap(path, dtype=codec.code_dtype, mode="r", shape=(total, codec.width))
        index = MultiVectorIndex(tiled, np.concatenate([[0], np.cumsum(row_lengths)]), codec)
        latency = []
        for i in range(len(query_offsets) - 1):
            q = query_tokens[query_offsets[i] : query_offsets[i + 1]]
            rows = rng.choice(size, CANDIDATES, replace=False)
            start = time.perf_counter()
            index.scores(q, rows)
            latency.append(time.perf_counter() - start)
        out[name] = {"bytes": nbytes, "ms": percentiles_ms(latency[10:])}
        path.unlink()
    return out


def bench_scale(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        print(f"  scale: {size:,} chunks ...", file=sys.stderr, flush=True)
        out = work / f"scale-{size}.json"
        subprocess.run(
            [sys.executable, "-m", "bench.run", "--scale-child", str(size), "--work", str(work)],
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        results.append(json.loads(out.read_text()))
    return results


def scale_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        ann = r["dense_ann"]
        rows.append(
            {
                "chunks": r["chunks"],
                "dense exact p50": r["dense_exact_ms"]["p50"],
                f"{ann['kind']} build s": ann["build_s"],
                f"{ann['kind']} p50": ann["ms"]["p50"],
                f"{ann['kind']} p95": ann["ms"]["p95"],
                "recall@100": ann["recall@100"],
                "bm25 build s": r["bm25"]["build_s"],
                "bm25 p50": r["bm25"]["ms"]["p50"],
                "bm25 p95": r["bm25"]["ms"]["p95"],
                "maxsim f16 p50": r["maxsim"]["float16"].get("ms", {}).get("p50"),
                "maxsim pq p50": r["maxsim"]["pq"].get("ms", {}).get("p50"),
                "maxsim pq p95": r["maxsim"]["pq"].get("ms", {}).get("p95"),
                "dense MB": r["dense_bytes"] / 1e6,
                "bm25 MB": r["bm25"]["bytes"] / 1e6,
                "mv f16 MB": r["maxsim"]["float16"]["bytes"] / 1e6,
                "mv pq MB": r["maxsim"]["pq"]["bytes"] / 1e6,
                "peak RSS MiB": r["peak_rss_mib"],
            }
        )
    return rows


# --- the peer ----------------------------------------------------------------------------------------


def langchain_ensemble(snapshot: Snapshot, model: str, depth: int) -> Retriever:
    """LangChain's EnsembleRetriever over the index's own passages and MiniLM vectors: BM25Retriever
    (rank_bm25 over ``str.split``, its default) + FAISS (the vectors MiniLM gave at indexing, the query
    embedded by HuggingFaceEmbeddings with the same model), equal weights, RRF c=60, ``depth`` from each."""
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document as LCDocument
    from langchain_huggingface import HuggingFaceEmbeddings

    chunk_ids = [str(c) for c in snapshot.chunk_ids]
    stored = snapshot.store.get_chunks(chunk_ids, snapshot.generation)
    texts = [f"{stored[c].title}\n{stored[c].text}" for c in chunk_ids]
    metadatas = [{"chunk_id": c} for c in chunk_ids]
    documents = [LCDocument(page_content=t, metadata=m) for t, m in zip(texts, metadatas, strict=True)]
    bm25 = BM25Retriever.from_documents(documents, k=depth)
    embeddings = HuggingFaceEmbeddings(model_name=model, model_kwargs={"device": "cpu"})
    vectors = np.asarray(snapshot.dense.vectors, np.float32)
    store = FAISS.from_embeddings(list(zip(texts, vectors.tolist(), strict=True)), embeddings, metadatas=metadatas)
    ensemble = EnsembleRetriever(retrievers=[bm25, store.as_retriever(search_kwargs={"k": depth})], weights=[0.5, 0.5])

    def retrieve(question: str) -> tuple[list[tuple[str, float]], dict[str, float]]:
        found = ensemble.invoke(question)
        return [(d.metadata["chunk_id"], float(len(found) - i)) for i, d in enumerate(found)], {}

    return retrieve


def ours(pipeline: Pipeline) -> Retriever:
    """The query path as served: hits (top_k, texts fetched from the store) and every stage's ranking."""

    def retrieve(question: str) -> tuple[list[tuple[str, float]], dict[str, float]]:
        result = pipeline.retrieve(question)
        return result.rankings[result.final_stage], result.timings_ms

    return retrieve


def bench_peer(
    systems: dict[str, tuple[Snapshot, Retriever]],
    queries: list[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, (snapshot, retrieve) in systems.items():
        chunk_to_doc = dict(zip(map(str, snapshot.chunk_ids), map(str, snapshot.doc_ids), strict=True))
        for q in queries[:10]:
            retrieve(q["text"])
        run: dict[str, dict[str, float]] = {}
        latency: list[float] = []
        stages: dict[str, list[float]] = {}
        for q in queries:
            start = time.perf_counter()
            ranking, timings = retrieve(q["text"])
            latency.append(time.perf_counter() - start)
            run[q["_id"]] = document_scores(ranking, chunk_to_doc)
            for stage, ms in timings.items():
                stages.setdefault(stage, []).append(ms / 1000)
        metrics = retrieval_metrics({q["_id"]: qrels[q["_id"]] for q in queries}, run, ["ndcg@10", "recall@100"])[0]
        rows.append(
            {
                "system": name,
                "ndcg@10": metrics["ndcg@10"],
                "recall@100": metrics["recall@100"],
                "p50 ms": percentiles_ms(latency)["p50"],
                "p95 ms": percentiles_ms(latency)["p95"],
                "stages p50 ms": {stage: percentiles_ms(v)["p50"] for stage, v in stages.items()},
            }
        )
    peer = float(rows[0]["p50 ms"])
    for row in rows:
        row["peer p50 / p50"] = peer / float(row["p50 ms"])
    return rows


# --- main ------------------------------------------------------------------------------------------


def _queries(dataset: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """The test queries that have qrels, and the qrels."""
    qrels = read_qrels(DATASETS / dataset / "qrels" / "test.tsv")
    return [q for q in read_jsonl(DATASETS / dataset / "queries.jsonl") if q["_id"] in qrels], qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("data/scifact-index"), help="scifact index")
    parser.add_argument("--fast-index", type=Path, default=None, help="scifact index built for speed (see docs)")
    parser.add_argument("--fast-backend", default="onnx-int8", choices=BACKENDS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--codec-index", action="append", default=[], help="DATASET=DIR: also compare codecs on this dataset's index"
    )
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--scale-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        result = scale_child(args.scale_child, args.work)
        (args.work / f"scale-{args.scale_child}.json").write_text(json.dumps(result))
        return

    skip = set(filter(None, args.skip.split(",")))
    settings = Settings()
    snapshot = Snapshot.load(args.index, settings)
    pipeline = Pipeline(snapshot, settings)
    queries, qrels = _queries("scifact")
    out: dict[str, Any] = {"command": " ".join(["python -m bench.run", *sys.argv[1:]]), "index": str(args.index)}

    if "encoders" not in skip:
        sample = [str(c) for c in snapshot.chunk_ids[:: max(1, len(snapshot) // 512)]]
        stored = snapshot.store.get_chunks(sample, snapshot.generation)
        passages = [f"{c.title}\n{c.text}" for c in stored.values()][:512]
        out["encoders"] = bench_encoders(snapshot.params.encoder_model, passages, [q["text"] for q in queries])
        print("\nencoder backends (scifact passages, batch 32; one query at a time)")
        print_table(out["encoders"], ["backend", "passages", "passages/s", "speed-up", "query p50 ms", "query p95 ms"])

    if "codecs" not in skip:
        out["codecs"] = {}
        for dataset, directory in [("scifact", args.index), *(tuple(x.split("=", 1)) for x in args.codec_index)]:
            data_snapshot = snapshot if dataset == "scifact" else Snapshot.load(Path(directory), settings)
            data_queries, data_qrels = _queries(dataset)
            fixed = fixed_candidates(Pipeline(data_snapshot, settings, pipeline.encoder), data_queries)
            out["codecs"][dataset] = bench_codecs(data_snapshot, fixed, data_qrels)
            print(f"\ntoken-vector codecs: MaxSim of the RRF top {CANDIDATES} on {dataset} ({len(fixed)} queries)")
            print_table(out["codecs"][dataset], [*CODEC_COLUMNS, "loss vs float16 (pt)"])

    if "scale" not in skip:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        with tempfile.TemporaryDirectory(dir=Path(args.index).parent) as tmp:
            work = Path(tmp)
            prepare_scale_inputs(snapshot, pipeline.encoder, [q["text"] for q in queries], work, max(sizes))
            out["scale"] = bench_scale(sizes, work)
        print("\nscale (ms per query, one at a time; synthetic above 10k, see the header)")
        rows = scale_rows(out["scale"])
        print_table(rows, list(rows[0]))
        print("\nHNSW search breadth (efSearch): recall@100 against exact / p50 ms")
        sweep = [
            {"chunks": r["chunks"]}
            | {
                f"ef {ef}": f"{v['recall@100']:.4f} / {v['ms']['p50']:.2f}"
                for ef, v in r["dense_ann"]["ef_search_sweep"].items()
            }
            for r in out["scale"]
        ]
        print_table(sweep, list(sweep[0]))

    if "peer" not in skip:
        systems: dict[str, tuple[Snapshot, Retriever]] = {
            "LangChain EnsembleRetriever (BM25Retriever + FAISS)": (
                snapshot,
                langchain_ensemble(snapshot, snapshot.params.encoder_model, settings.candidate_depth),
            ),
            f"rag-late, defaults ({settings.encoder_backend} encoder, {snapshot.params.token_codec} token vectors)": (
                snapshot,
                ours(pipeline),
            ),
        }
        if args.fast_index is not None:
            fast_settings = settings.model_copy(update={"encoder_backend": args.fast_backend})
            fast = Snapshot.load(args.fast_index, fast_settings)
            label = f"rag-late, {args.fast_backend} encoder, {fast.params.token_codec} token vectors"
            systems[label] = (fast, ours(Pipeline(fast, fast_settings)))
        out["peer"] = bench_peer(systems, queries, qrels)
        print(f"\nside by side on scifact ({len(queries)} queries, retrieval only, one query at a time)")
        print_table(out["peer"], ["system", "ndcg@10", "recall@100", "p50 ms", "p95 ms", "peer p50 / p50"])
        for row in out["peer"]:
            if row["stages p50 ms"]:
                print(f"  {row['system']}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["stages p50 ms"].items()))

    out["peak_rss_mib"] = peak_rss_mib()
    previous = RESULTS / "run.json"
    if skip and previous.exists():  # a partial run keeps the other sections of the last one
        kept = {k: v for k, v in json.loads(previous.read_text()).items() if k in SECTIONS and k in skip}
        out = {**kept, **out, "commands": {**json.loads(previous.read_text()).get("commands", {})}}
    out.setdefault("commands", {}).update({section: out["command"] for section in SECTIONS if section not in skip})
    write_result("run", out)


if __name__ == "__main__":
    main()
