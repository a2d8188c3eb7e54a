"""The question-to-answer path: encode once → the retrieval recipe → evidence → generator."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import nullcontext

import numpy as np
from threadpoolctl import ThreadpoolController

from rag.encode.colbert import ColBERTEncoder
from rag.encode.encoder import Encoder
from rag.errors import InputError
from rag.generate import make_generator
from rag.generate.evidence import (
    build_messages,
    citations_for,
    highlight,
    load_demos,
    order_oldest_first,
    select_within_budget,
)
from rag.generate.protocol import Generator
from rag.index.engine import LocalEngine
from rag.index.snapshot import Snapshot
from rag.objects import (
    Answer,
    AnswerEvent,
    Citation,
    Evidence,
    Filters,
    Hit,
    Retrieval,
    RetrievalEvent,
    StreamEvent,
    TokenEvent,
)
from rag.query_weights import query_token_weights
from rag.retrieval import QueryInput, Recipe, StageClock, retrieve
from rag.settings import Settings

MIN_EVIDENCE_TOKENS = 64  # a prompt with less room than this for evidence is refused, not truncated


def _with_chunk_ids(chunk_ids: np.ndarray, ranking: list[tuple[int, float]]) -> list[tuple[str, float]]:
    """(chunk id, score) for (row, score); one gather per ranking, not one memory-map read per row."""
    ids = np.asarray(chunk_ids[np.fromiter((r for r, _ in ranking), np.int64, len(ranking))]).tolist()
    return [(str(cid), score) for cid, (_, score) in zip(ids, ranking, strict=True)]


class Pipeline:
    """Answers questions against one index snapshot; generators load on first use."""

    def __init__(
        self,
        snapshot: Snapshot,
        settings: Settings,
        encoder: Encoder | None = None,
        generators: dict[str, Generator] | None = None,
        retrieval_gate: threading.Semaphore | None = None,
        adapted: bool = True,
    ) -> None:
        """``retrieval_gate`` bounds how many retrievals compute at once (a server shares one among
        its threads: on two cores, more at once only fight over them). ``adapted=False`` scores MaxSim
        with the raw token vectors even where the index has an adapted head (for comparison)."""
        self.snapshot = snapshot
        self.engine = LocalEngine(snapshot, settings.dense_hnsw_ef_search, adapted)
        self.adapted = self.engine.adapted
        self.retrieval_gate = retrieval_gate
        self.settings = settings
        self.encoder = encoder or Encoder.from_settings(settings, snapshot.params.encoder_model)
        # Shared, not copied: a pipeline for the next snapshot keeps the generators already loaded.
        self.generators: dict[str, Generator] = generators if generators is not None else {}
        late_model = snapshot.params.late_model
        self.late_encoder = ColBERTEncoder(late_model, settings.encoder_batch_size) if late_model else None
        self._demos = load_demos()[: max(0, settings.fewshot_demos)]
        self._threadpools: ThreadpoolController | None = None

    def generator(self, name: str | None = None) -> Generator:
        name = name or self.settings.generator
        if name not in self.generators:
            self.generators[name] = make_generator(name, self.settings)
        return self.generators[name]

    # --- retrieval ---------------------------------------------------------------------------

    def retrieve(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        depth: int | None = None,
        alternative: bool = False,
    ) -> Retrieval:
        """The recipe (:func:`rag.retrieval.retrieve`) for one question, its top ``top_k`` as hits.
        ``alternative`` also ranks by the MaxSim mode not configured (for evaluation)."""
        question = _check_question(question, self.settings.max_question_chars)
        top_k = self.settings.top_k if top_k is None else top_k
        recipe = Recipe.from_settings(self.settings, depth)
        if top_k < 1 or recipe.depth < 1:
            raise InputError("top_k and candidate depth must be at least 1")
        if filters is not None:
            filters.validate()
        clock = StageClock()
        gate = self.retrieval_gate if self.retrieval_gate is not None else nullcontext()
        with gate, self._blas_threads().limit(limits=self.settings.query_blas_threads, user_api="blas"):
            clock.restart()  # time spent waiting at the gate is not a stage
            encoded = self.encoder.encode([question])
            clock.mark("encode")

            def late() -> tuple[np.ndarray, np.ndarray | None]:
                if self.late_encoder is not None:
                    return self.late_encoder.encode_queries([question])[0], None
                tokens = encoded.tokens[0]
                return tokens, self.query_weights(question, len(tokens))

            query = QueryInput(question, encoded.dense[0], late)
            ranked = retrieve(self.engine, query, recipe, filters, clock, alternative)
            hits = self._hits(ranked.stages, ranked.final, top_k, ranked.contributions)
            clock.mark("fetch")
        clock.timings["retrieval_total"] = (time.perf_counter() - clock.start) * 1000
        named = {stage: _with_chunk_ids(self.snapshot.chunk_ids, ranking) for stage, ranking in ranked.stages.items()}
        return Retrieval(question, hits, named, clock.timings, clock.elapsed, ranked.final)

    def _blas_threads(self) -> ThreadpoolController:
        """The BLAS libraries loaded once the encoder is: scanning them on every query (what
        ``threadpool_limits`` does) cost 4.4 ms of a 25 ms retrieval (bench/run.py profile)."""
        if self._threadpools is None:
            _ = self.encoder.model  # torch and the runtime load their BLAS with the model
            self._threadpools = ThreadpoolController()
        return self._threadpools

    def query_weights(self, question: str, n_tokens: int) -> np.ndarray | None:
        """Per-token MaxSim weights of the question under the settings; None means uniform."""
        mode, skip = self.settings.maxsim_query_weights, self.settings.maxsim_skip_punctuation
        if mode == "uniform" and not skip:
            return None
        offsets = self.encoder.token_offsets(question)
        if len(offsets) != n_tokens:  # not the tokenisation the vectors came from: stay uniform
            return None
        sparse, tokenize = self.snapshot.sparse, self.snapshot.bm25_tokenize
        rarest = float(sparse.idf.max()) if len(sparse.idf) else 1.0

        def idf(word: str) -> float | None:
            terms = tokenize(word)
            if not terms:
                return None
            term_id = sparse.term_ids.get(terms[0])
            return rarest if term_id is None else float(sparse.idf[term_id])

        return query_token_weights(question, offsets, idf, mode, skip)

    def _hits(
        self,
        rankings: dict[str, list[tuple[int, float]]],
        final: str,
        top_k: int,
        contributions: dict[int, dict[str, float]],
    ) -> list[Hit]:
        snap = self.snapshot
        top = rankings[final][:top_k]
        rank_of = {
            stage: {row: (i + 1, score) for i, (row, score) in enumerate(ranking)}
            for stage, ranking in rankings.items()
        }
        chunk_ids = [str(snap.chunk_ids[row]) for row, _ in top]
        stored = snap.store.get_chunks(chunk_ids, snap.generation)
        hits = []
        for (row, score), cid in zip(top, chunk_ids, strict=True):
            chunk = stored.get(cid)
            if chunk is None:  # the store lost a row the snapshot has: skip rather than invent text
                continue
            ranks = {stage: r[row][0] for stage, r in rank_of.items() if row in r}
            scores = {stage: r[row][1] for stage, r in rank_of.items() if row in r}
            hits.append(
                Hit(
                    chunk_id=cid,
                    doc_id=chunk.document_id,
                    text=chunk.text,
                    collection=chunk.collection,
                    score=float(score),
                    ranks=ranks,
                    scores=scores,
                    rrf_contributions=contributions.get(row, {}),
                    **chunk.document_fields(),
                )
            )
        return hits

    # --- evidence and answers ----------------------------------------------------------------

    def evidence(self, question: str, hits: Sequence[Hit], generator: Generator | None) -> list[Evidence]:
        """Top hits as FreshPrompt evidence within the generator's token budget, oldest first."""
        tokenize = self.snapshot.bm25_tokenize
        terms = set(tokenize(question))
        candidates = [
            Evidence(
                number=i,
                chunk_id=h.chunk_id,
                doc_id=h.doc_id,
                collection=h.collection,
                snippet=h.text,
                highlight=highlight(terms, h.text, tokenize),
                **h.document_fields(),
            )
            for i, h in enumerate(hits[: self.settings.evidence_max], start=1)
        ]
        if generator is None:
            return order_oldest_first(candidates)
        skeleton = build_messages(question, [], self._demos, self.settings.false_premise_check)
        overhead = sum(generator.count_tokens(m.content) for m in skeleton) + 32  # chat template tokens
        room = generator.context_tokens - overhead - self.settings.max_answer_tokens
        if room < MIN_EVIDENCE_TOKENS:
            raise InputError(
                f"the question leaves no room for evidence in the generator's {generator.context_tokens}-token "
                f"context (prompt {overhead} tokens + answer {self.settings.max_answer_tokens}): shorten it"
            )
        budget = min(self.settings.evidence_token_budget, room)
        return order_oldest_first(select_within_budget(candidates, budget, generator.count_tokens))

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        generate: bool = True,
        generator: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Retrieval first, then answer pieces as they come, then the whole :class:`Answer`."""
        start = time.perf_counter()
        retrieval = self.retrieve(question, top_k, filters)
        yield RetrievalEvent(retrieval)
        timings = dict(retrieval.timings_ms)
        if not generate:
            evidence = self.evidence(question, retrieval.hits, None)
            timings["total"] = (time.perf_counter() - start) * 1000
            yield AnswerEvent(answer_from(retrieval, "", [], evidence, timings, None))
            return
        gen = self.generator(generator)
        t = time.perf_counter()
        evidence = self.evidence(question, retrieval.hits, gen)
        messages = build_messages(question, evidence, self._demos, self.settings.false_premise_check)
        timings["evidence"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        pieces: list[str] = []
        for piece in gen.stream(messages, self.settings.max_answer_tokens, self.settings.temperature):
            if not pieces:
                timings["first_token"] = (time.perf_counter() - start) * 1000
            pieces.append(piece)
            yield TokenEvent(piece)
        timings["generate"] = (time.perf_counter() - t) * 1000
        text = "".join(pieces).strip()
        citations = citations_for(text, evidence, self.snapshot.bm25_tokenize)
        timings["total"] = (time.perf_counter() - start) * 1000
        yield AnswerEvent(answer_from(retrieval, text, citations, evidence, timings, gen.name))

    def answer(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        generate: bool = True,
        generator: str | None = None,
    ) -> Answer:
        for event in self.stream(question, top_k, filters, generate, generator):
            if isinstance(event, AnswerEvent):
                return event.answer
        raise RuntimeError("the answer stream ended without an answer")


def answer_from(
    retrieval: Retrieval,
    text: str,
    citations: list[Citation],
    evidence: list[Evidence],
    timings: dict[str, float],
    generator: str | None,
) -> Answer:
    return Answer(
        question=retrieval.question,
        answer=text,
        citations=citations,
        hits=retrieval.hits,
        evidence=evidence,
        timings_ms=timings,
        generator=generator,
        stages=list(retrieval.rankings),
        final_stage=retrieval.final_stage,
    )


def _check_question(question: str, max_chars: int) -> str:
    """The question stripped of whitespace and of characters nobody can see (zero-width, NUL and other
    control characters); nothing left is an empty question."""
    if not isinstance(question, str):
        question = ""
    question = "".join(c for c in question if c in "\n\t" or unicodedata.category(c)[0] != "C").strip()
    if not question:
        raise InputError("the question is empty")
    if len(question) > max_chars:
        raise InputError(f"the question is longer than {max_chars} characters")
    return question
