"""``rag adapt``: train a ColBERT projection for an index on its own corpus, without labels.

1. Pseudo-queries from the corpus (inverse cloze task and unique titles, :mod:`indexer.pseudo_queries`),
   questions the generator writes for sampled passages (:mod:`indexer.generated_queries`), or both,
   plus labelled (query, document id) pairs when given.
2. Hard negatives from the index's own BM25 and dense rankings, fused with RRF, other documents only.
3. A linear projection of the encoder's token vectors (full width by default, 128-d as in ColBERT with
   ``--dim 128``) trained with the ColBERT loss: softmax cross
   entropy of MaxSim over the positive, the query's hard negatives and every other passage of the batch.
   The encoder itself stays frozen, so the passages' token vectors come from the index rather than a
   forward pass: a training step costs milliseconds instead of the ~27 s a full fine-tuning step of
   MiniLM takes on this CPU (docs/adapt.md), and adapting never re-encodes the corpus. On the Qdrant
   engine the training passages' vectors are fetched once into ``DIR/adapt/tokens``.
4. The head lands in ``DIR/models/``; a new snapshot adds the projected token vectors (on Qdrant, in
   the collection's adapted slot), and the query path scores MaxSim with them from then on.

Training checkpoints to ``DIR/adapt/`` and a second run resumes there; ``max_steps`` and ``minutes``
bound the whole run, resumed parts included.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.adapt_options import AdaptOptions
from indexer.final_stage import record_final_stage
from indexer.generated_queries import questions_file, write_questions
from indexer.pseudo_queries import NO_SPAN, PseudoQuery, inverse_cloze_queries, kept_token_mask
from indexer.writer import IndexWriter
from rag.encode.encoder import Encoder
from rag.encode.projection import principal_directions, save_head
from rag.errors import IndexNotFoundError, InputError
from rag.generate import make_generator
from rag.index.codecs import make_codec
from rag.index.engine import make_engine
from rag.index.manifest import FinalStageChoice
from rag.index.multivector import OFFSETS_FILE, MultiVectorIndex, MultiVectorParams, MultiVectorWriter
from rag.index.qdrant_engine import QdrantEngine
from rag.index.snapshot import Snapshot, current_snapshot_name
from rag.objects import Stage
from rag.retrieval import QueryInput, Recipe, retrieve
from rag.settings import Settings

RUN_DIR = "adapt"
MODELS_DIR = "models"
DATA_FILE = "data.npz"
META_FILE = "meta.json"
STATE_FILE = "state.pt"
TOKENS_DIR = "tokens"  # Qdrant: the training passages' token vectors, fetched once
MAX_QUERY_TOKENS = 64
MIN_GENERATION_WORDS = 12  # a passage shorter than this gets no written question
SOURCES = ("inverse cloze", "labelled", "generated")  # TrainingData.sources codes


@dataclass(frozen=True)
class AdaptResult:
    model_dir: Path
    generation: int
    steps: int
    examples: int
    data_seconds: float
    train_seconds: float
    commit_seconds: float
    first_loss: float
    last_loss: float
    resumed: bool
    losses: list[float] = field(default_factory=list)
    final_stage: FinalStageChoice | None = None  # chosen again with the new head
    sources: dict[str, int] = field(default_factory=dict)  # training queries by where they came from
    writing: tuple[int, int, int, int] = (0, 0, 0, 0)  # TrainingData.writing


@dataclass(frozen=True)
class TrainingData:
    """Queries' token vectors (packed), each query's positive row with its kept-token mask, negatives."""

    query_vectors: np.ndarray  # (n_query_tokens, dim) float16
    query_offsets: np.ndarray  # (n_queries + 1,)
    positives: np.ndarray  # (n_queries,) row
    kept: np.ndarray  # packed bool masks of the positives' tokens
    kept_offsets: np.ndarray  # (n_queries + 1,)
    negatives: np.ndarray  # (n_queries, n_negatives) rows
    sources: np.ndarray  # (n_queries,) index into SOURCES
    writing: np.ndarray  # generated questions: (written now, reused, usable, kept by the filter)

    def __len__(self) -> int:
        return len(self.positives)

    def source_counts(self) -> dict[str, int]:
        counts = np.bincount(self.sources, minlength=len(SOURCES))
        return {name: int(n) for name, n in zip(SOURCES, counts, strict=True) if n}

    def save(self, path: Path) -> None:
        np.savez(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> TrainingData:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def adapt_index(index_dir: Path, settings: Settings, options: AdaptOptions) -> AdaptResult:
    """Train a projection on the index's corpus and commit a snapshot that uses it."""
    if options.max_steps < 1 or options.minutes <= 0 or options.batch_size < 2 or options.dim < 1:
        raise InputError("max steps and batch size must be positive (batch size at least 2), minutes above 0")
    if current_snapshot_name(index_dir) is None:  # before the writer, which would create the directory
        raise IndexNotFoundError(f"no index at {index_dir} (build one with `rag index build`)")
    with IndexWriter(index_dir, settings, show_progress=options.show_progress) as writer:
        snapshot = writer.snapshot
        if snapshot is None or len(snapshot) == 0:
            raise InputError(f"{index_dir} holds no passages to adapt to (build the index first)")
        if snapshot.params.late_model:
            raise InputError("this index scores MaxSim with a ColBERT checkpoint; adapt trains a head for the encoder")
        if options.dim > snapshot.params.dim:
            raise InputError(f"--dim {options.dim} exceeds the encoder's {snapshot.params.dim} dimensions")
        writer.check_head_slots()
        run = index_dir / RUN_DIR
        started = time.perf_counter()
        data, resumed = _training_data(run, snapshot, writer.encoder, settings, options)
        tokens = passage_tokens(snapshot, settings, _rows_of(data), run / TOKENS_DIR, options.show_progress)
        data_seconds = time.perf_counter() - started
        weight, steps, train_seconds, losses = train_projection(tokens, data, options, run / STATE_FILE)
        started = time.perf_counter()
        name = f"adapted-gen{snapshot.generation + 1:06d}"
        model_dir = index_dir / MODELS_DIR / name
        info = {
            "base_encoder": snapshot.params.encoder_model,
            "method": "frozen encoder + linear ColBERT head, BM25+dense hard negatives",
            "queries": options.queries,
            "sources": data.source_counts(),
            "trained_on_generation": snapshot.generation,
            "steps": steps,
            "examples": len(data),
            "train_seconds": train_seconds,
            "options": {k: v for k, v in asdict(options).items() if k not in ("show_progress", "labelled")},
            "labelled_pairs": len(options.labelled),
            "losses": losses,
        }
        save_head(model_dir, weight, info)
        generation = writer.set_projection(f"{MODELS_DIR}/{name}")
        commit_seconds = time.perf_counter() - started
        # MaxSim now scores through the head: which final stage serves the corpus best may have changed.
        final_stage = record_final_stage(writer, settings, options.show_progress)
        generation = writer.generation
    shutil.rmtree(run, ignore_errors=True)  # done: the next adapt starts from fresh data
    return AdaptResult(
        model_dir=model_dir,
        generation=generation,
        steps=steps,
        examples=len(data),
        data_seconds=data_seconds,
        train_seconds=train_seconds,
        commit_seconds=commit_seconds,
        first_loss=float(np.mean(losses[:5])) if losses else float("nan"),  # 10-step means are noisy: 50 steps
        last_loss=float(np.mean(losses[-5:])) if losses else float("nan"),
        resumed=resumed,
        losses=losses,
        final_stage=final_stage,
        sources=data.source_counts(),
        writing=(int(data.writing[0]), int(data.writing[1]), int(data.writing[2]), int(data.writing[3])),
    )


# --- training data -------------------------------------------------------------------------------


def _training_data(
    run: Path, snapshot: Snapshot, encoder: Encoder, settings: Settings, options: AdaptOptions
) -> tuple[TrainingData, bool]:
    """The run's saved data when it was made for this snapshot and these options, else new data."""
    meta = {"generation": snapshot.generation, "options": options.data_key()}
    meta_file = run / META_FILE
    saved = json.loads(meta_file.read_text("utf-8")) if meta_file.exists() else None
    if saved == json.loads(json.dumps(meta)) and (run / DATA_FILE).exists():
        return TrainingData.load(run / DATA_FILE), True
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    data = make_training_data(snapshot, encoder, settings, options, run / TOKENS_DIR, run.parent)
    data.save(run / DATA_FILE)
    meta_file.write_text(json.dumps(meta), "utf-8")  # written last: its presence means the data is whole
    return data, False


def make_training_data(
    snapshot: Snapshot,
    encoder: Encoder,
    settings: Settings,
    options: AdaptOptions,
    work_dir: Path,
    index_dir: Path | None = None,
) -> TrainingData:
    """Pseudo-queries (and labelled pairs) with their positives' kept-token masks and mined negatives;
    ``work_dir`` takes the passages' token vectors on the Qdrant engine (:func:`passage_tokens`), and
    ``index_dir`` keeps written questions (``--queries generated|both``; default: beside ``work_dir``)."""
    rng = random.Random(options.seed)
    live = snapshot.live_rows().tolist()
    rows = sorted(rng.sample(live, min(len(live), options.max_passages)))
    chunk_ids = [str(snapshot.chunk_ids[r]) for r in rows]
    stored = snapshot.store.get_chunks(chunk_ids, snapshot.generation)
    present = [(r, stored[c]) for r, c in zip(rows, chunk_ids, strict=True) if c in stored]
    ict = inverse_cloze_queries(
        [r for r, _ in present],
        [c.title for _, c in present],
        [c.text for _, c in present],
        [c.ordinal == 0 for _, c in present],
        rng,
    )
    writing = np.zeros(4, np.int64)
    generated: list[PseudoQuery] = []
    if options.queries != "ict":
        folder = index_dir if index_dir is not None else work_dir.parent.parent
        generated, writing = _generated_queries(snapshot, encoder, settings, options, present, folder)
    labelled = _labelled_queries(snapshot, options.labelled)
    tagged = [(q, 0) for q in (ict if options.queries != "generated" else [])]
    tagged += [(q, 1) for q in labelled] + [(q, 2) for q in generated]
    if len(tagged) < options.batch_size:
        raise InputError(
            f"only {len(tagged)} pseudo-queries could be made from this corpus; adapting needs at least "
            f"{options.batch_size} (passages of two or more sentences, written questions, or labelled pairs)"
        )
    rng.shuffle(tagged)
    if options.query_budget > 0:
        tagged = tagged[: options.query_budget]
    queries = [q for q, _ in tagged]
    encoded = encoder.encode(
        [q.text for q in queries], progress=_bar(len(queries), "encoding queries", options.show_progress)
    )
    query_tokens = [t[:MAX_QUERY_TOKENS] for t in encoded.tokens]
    negatives = mine_negatives(snapshot, settings, encoded.dense, [q.text for q in queries], queries, options, rng)
    texts = {r: (c.title + "\n" + c.text if c.title else c.text) for r, c in present}
    needed = np.union1d([q.row for q in queries], negatives.ravel()).astype(np.int64)
    tokens = passage_tokens(snapshot, settings, needed, work_dir, options.show_progress)
    kept = _kept_masks(tokens, encoder, queries, texts)
    return TrainingData(
        query_vectors=np.concatenate(query_tokens).astype(np.float16),
        query_offsets=np.concatenate([[0], np.cumsum([len(t) for t in query_tokens])]).astype(np.int64),
        positives=np.array([q.row for q in queries], np.int64),
        kept=np.concatenate(kept) if kept else np.zeros(0, bool),
        kept_offsets=np.concatenate([[0], np.cumsum([len(k) for k in kept])]).astype(np.int64),
        negatives=negatives,
        sources=np.array([source for _, source in tagged], np.int64),
        writing=writing,
    )


def _generated_queries(
    snapshot: Snapshot,
    encoder: Encoder,
    settings: Settings,
    options: AdaptOptions,
    present: Sequence[tuple[int, Any]],
    index_dir: Path,
) -> tuple[list[PseudoQuery], np.ndarray]:
    """Questions the generator writes for ``options.generated`` sampled passages (reusing any already
    written), kept where BM25 or dense ranks their passage in the top ``filter_depth``; with the counts
    (written now, reused, usable, kept)."""
    order = [(r, c) for r, c in present if len(c.text.split()) >= MIN_GENERATION_WORDS]
    random.Random(options.seed + 1).shuffle(order)  # its own stream: the ICT queries stay the same
    chosen = order[: options.generated]
    generator = make_generator(settings.generator, settings)
    path = questions_file(index_dir, generator.name)
    bar = tqdm(total=len(chosen), desc="writing questions", unit="q", disable=not options.show_progress)
    with bar:
        written, report = write_questions(
            generator,
            [(c.id, c.title + "\n" + c.text if c.title else c.text) for _, c in chosen],
            path,
            options.generation_minutes,
            bar.update,
        )
    if report.stopped_by_time:
        tqdm.write(
            f"writing questions stopped after {options.generation_minutes:g} minutes with "
            f"{report.written + report.reused} of {len(chosen)}; the next `rag adapt` resumes from {path}"
        )
    candidates = [
        PseudoQuery(written[c.id].question, r) for r, c in chosen if c.id in written and written[c.id].question
    ]
    kept = _retrieves_own_passage(snapshot, encoder, settings, candidates, options.filter_depth)
    queries = [q for q, keep in zip(candidates, kept, strict=True) if keep]
    return queries, np.array([report.written, report.reused, len(candidates), len(queries)], np.int64)


def _retrieves_own_passage(
    snapshot: Snapshot, encoder: Encoder, settings: Settings, queries: Sequence[PseudoQuery], depth: int
) -> list[bool]:
    """InPars' consistency filter: does BM25 or dense rank the query's own passage in the top ``depth``?"""
    if not queries:
        return []
    engine = make_engine(snapshot, settings)
    scope = engine.scope(None)
    dense = engine.dense(encoder.encode_questions([q.text for q in queries]).dense, depth, scope)
    return [
        any(row == q.row for row, _ in ranking) or any(row == q.row for row, _ in engine.bm25(q.text, depth, scope))
        for q, ranking in zip(queries, dense, strict=True)
    ]


def _labelled_queries(snapshot: Snapshot, pairs: Sequence[tuple[str, str]]) -> list[PseudoQuery]:
    """A labelled pair's positive is its document's first passage."""
    if not pairs:
        return []
    first_row: dict[str, int] = {}
    doc_ids = np.asarray(snapshot.doc_ids)
    for row in snapshot.live_rows().tolist():
        first_row.setdefault(str(doc_ids[row]), row)
    return [PseudoQuery(text, first_row[doc]) for text, doc in pairs if doc in first_row and text.strip()]


def mine_negatives(
    snapshot: Snapshot,
    settings: Settings,
    query_dense: np.ndarray,
    query_texts: Sequence[str],
    queries: Sequence[PseudoQuery],
    options: AdaptOptions,
    rng: random.Random,
) -> np.ndarray:
    """(n_queries, negatives) rows drawn from the recipe's fused BM25 + dense top ``negative_depth`` of
    each query (no MaxSim: that is what is being trained), passages of the positive's own document left
    out; random passages fill any shortfall."""
    doc_ids = np.asarray(snapshot.doc_ids)
    engine = make_engine(snapshot, settings)
    depth = options.negative_depth + 8  # room for the positive's own passages
    recipe = replace(Recipe.from_settings(settings, depth), maxsim_mode="off")
    dense = engine.dense(query_dense, recipe.depth, engine.scope(None))
    out = np.empty((len(queries), options.negatives), np.int64)
    live = snapshot.live_rows()
    for i, (query, text) in enumerate(
        tqdm(
            list(zip(queries, query_texts, strict=True)),
            desc="mining negatives",
            unit="q",
            disable=not options.show_progress,
            dynamic_ncols=True,
        )
    ):
        ranked = retrieve(engine, QueryInput(text, query_dense[i], _no_late), recipe, dense=dense[i])
        own = doc_ids[query.row]
        pool = [row for row, _ in ranked.stages[Stage.RRF] if doc_ids[row] != own][: options.negative_depth]
        while len(pool) < options.negatives:  # a tiny corpus: any other document's passage
            candidate = int(live[rng.randrange(len(live))])
            if doc_ids[candidate] != own or len(set(doc_ids.tolist())) == 1:
                pool.append(candidate)
        out[i] = rng.sample(pool, options.negatives)
    return out


def _no_late() -> tuple[np.ndarray, np.ndarray | None]:
    raise AssertionError("negative mining runs the recipe without MaxSim")


def _kept_masks(
    tokens: MultiVectorIndex, encoder: Encoder, queries: Sequence[PseudoQuery], texts: dict[int, str]
) -> list[np.ndarray]:
    """Each positive's token mask: the ICT sentence's tokens left out. The passage is tokenised as the
    encoder did; if the count disagrees with the index (another tokenizer), nothing is left out."""
    offsets = np.asarray(tokens.offsets)
    masks = []
    for query in queries:
        n_tokens = int(offsets[query.row + 1] - offsets[query.row])
        if query.removed == NO_SPAN or query.row not in texts:
            masks.append(np.ones(n_tokens, bool))
            continue
        spans = encoder.token_offsets(texts[query.row])
        mask = np.array(kept_token_mask(spans, query.removed), bool)
        masks.append(mask if len(mask) == n_tokens and mask.any() else np.ones(n_tokens, bool))
    return masks


def _rows_of(data: TrainingData) -> np.ndarray:
    """Every passage row training reads: the positives and their negatives."""
    return np.union1d(data.positives, data.negatives.ravel()).astype(np.int64)


def passage_tokens(
    snapshot: Snapshot, settings: Settings, rows: np.ndarray, folder: Path, show_progress: bool = True
) -> MultiVectorIndex:
    """The token vectors training reads, by snapshot row. The embedded engine's are the snapshot's own
    arrays. On Qdrant, ``rows``' vectors are fetched once into ``folder`` (float16, as Qdrant stores
    them; other rows left empty, so rows keep their numbers) and memory-mapped from there; a folder
    already complete (a resumed run) is read as it is."""
    engine = make_engine(snapshot, settings)
    if not isinstance(engine, QdrantEngine):
        return snapshot.multivector
    params = MultiVectorParams("float16", snapshot.params.multivector_dim)
    if (folder / OFFSETS_FILE).exists():  # written last by the writer: the folder is whole
        return MultiVectorIndex.load(folder, params)
    wanted = set(np.asarray(rows, np.int64).tolist())
    chunk_ids = [str(c) for c in np.asarray(snapshot.chunk_ids)]
    shutil.rmtree(folder, ignore_errors=True)
    writer = MultiVectorWriter(folder, make_codec("float16", params.dim))
    empty = np.zeros((0, params.dim), np.float32)
    advance = _bar(len(wanted), "fetching token vectors", show_progress)
    try:
        for start in range(0, len(chunk_ids), 1024):
            block = range(start, min(start + 1024, len(chunk_ids)))
            fetched = engine.collection.token_vectors([chunk_ids[r] for r in block if r in wanted])
            writer.append([fetched.get(chunk_ids[r], empty) if r in wanted else empty for r in block])
            advance(sum(r in wanted for r in block))
        writer.finish()
    except BaseException:
        writer.abort()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return MultiVectorIndex.load(folder, params)


def _bar(total: int, desc: str, show: bool) -> Any:
    bar = tqdm(total=total, desc=desc, unit="q", disable=not show, dynamic_ncols=True)

    def advance(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return advance


# --- training --------------------------------------------------------------------------------------


def colbert_loss(query: Any, query_mask: Any, docs: Any, doc_mask: Any, weight: Any, positive_column: Any) -> Any:
    """Cross entropy of MaxSim scores (B queries × N passages) against each query's positive column.

    ``query`` (B, Lq, d), ``docs`` (N, Ld, d) raw unit token vectors; ``weight`` (d_out, d) the head.
    """
    import torch

    q = torch.nn.functional.normalize(query @ weight.T, dim=-1)
    d = torch.nn.functional.normalize(docs @ weight.T, dim=-1)
    sims = torch.einsum("bqh,nth->bnqt", q, d).masked_fill(~doc_mask[None, :, None, :], -1e4)
    scores = (sims.max(dim=-1).values * query_mask[:, None, :]).sum(dim=-1)  # (B, N)
    return torch.nn.functional.cross_entropy(scores, positive_column)


def _pad(arrays: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    longest = max(1, max(len(a) for a in arrays))
    out = np.zeros((len(arrays), longest, dim), np.float32)
    mask = np.zeros((len(arrays), longest), bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return out, mask


def _batch(mv: MultiVectorIndex, data: TrainingData, indices: np.ndarray) -> tuple[Any, ...]:
    """Padded tensors for queries ``indices``: passages are [pos_0, neg_0..., pos_1, neg_1..., ...]."""
    import torch

    dim = mv.dim
    queries = [
        np.asarray(data.query_vectors[data.query_offsets[i] : data.query_offsets[i + 1]], np.float32) for i in indices
    ]
    docs: list[np.ndarray] = []
    columns = []
    for i in indices:
        columns.append(len(docs))
        pos = int(data.positives[i])
        tokens = mv.row(pos)
        docs.append(tokens[data.kept[data.kept_offsets[i] : data.kept_offsets[i + 1]]])
        docs.extend(mv.row(int(r)) for r in data.negatives[i])
    q, q_mask = _pad(queries, dim)
    d, d_mask = _pad(docs, dim)
    return (
        torch.from_numpy(q),
        torch.from_numpy(q_mask.astype(np.float32)),
        torch.from_numpy(d),
        torch.from_numpy(d_mask),
        torch.tensor(columns),
    )


def _order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def initial_projection(mv: MultiVectorIndex, options: AdaptOptions, sample: int = 50_000) -> np.ndarray:
    """The head before training: principal directions of a sample of the passages' token vectors."""
    n = mv.n_vectors
    rows = np.sort(np.random.default_rng(options.seed).choice(n, min(n, sample), replace=False))
    return principal_directions(mv.codec.decode(np.asarray(mv.codes[rows])), options.dim)


def train_projection(
    tokens: MultiVectorIndex, data: TrainingData, options: AdaptOptions, state_file: Path
) -> tuple[np.ndarray, int, float, list[float]]:
    """Train the head; returns (weight, steps, training seconds, mean loss per 10 steps).

    The state (weight, optimiser, step, elapsed time, losses) is saved every ``checkpoint_every_s``
    and on stopping, and picked up from ``state_file`` when it exists.
    """
    import torch

    torch.manual_seed(options.seed)
    if state_file.exists():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        weight = torch.nn.Parameter(state["weight"])
        optimizer = torch.optim.AdamW([weight], lr=options.learning_rate, weight_decay=0.0)
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, losses = int(state["step"]), float(state["elapsed"]), list(state["losses"])
    else:
        weight = torch.nn.Parameter(torch.from_numpy(initial_projection(tokens, options)))
        optimizer = torch.optim.AdamW([weight], lr=options.learning_rate, weight_decay=0.0)
        step, elapsed, losses = 0, 0.0, []

    def checkpoint() -> None:
        tmp = state_file.with_suffix(".part")
        torch.save(
            {
                "weight": weight.detach().clone(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "losses": losses,
            },
            tmp,
        )
        tmp.replace(state_file)

    budget = options.minutes * 60
    per_epoch = max(1, len(data) // options.batch_size)
    window: list[float] = []
    bar = tqdm(
        total=options.max_steps,
        initial=step,
        desc="adapting",
        unit="step",
        disable=not options.show_progress,
        dynamic_ncols=True,
    )
    started = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    try:
        while step < options.max_steps and elapsed < budget:
            epoch, position = divmod(step, per_epoch)
            indices = _order(len(data), options.seed, epoch)[position * options.batch_size :][: options.batch_size]
            q, q_mask, d, d_mask, columns = _batch(tokens, data, indices)
            loss = colbert_loss(q, q_mask, d, d_mask, weight, columns)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            window.append(loss.item())
            if len(window) == 10:
                losses.append(float(np.mean(window)))
                window = []
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
            elapsed = time.perf_counter() - started
            if time.perf_counter() - last_save > options.checkpoint_every_s:
                checkpoint()
                last_save = time.perf_counter()
    finally:
        if window:
            losses.append(float(np.mean(window)))
        bar.close()
        checkpoint()
    return weight.detach().numpy().copy(), step, elapsed, losses
