"""The question-to-answer path: encode once → the retrieval recipe → evidence → generator."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import ThreadpoolController

from rag.answerability import answerability_score, retrieval_confidence
from rag.encode.cache import EncodingCache
from rag.encode.colbert import ColBERTEncoder
from rag.encode.encoder import Encoded, Encoder
from rag.errors import InputError, RagError
from rag.generate import make_generator
from rag.generate.answer_copy import EvidenceCopy
from rag.generate.answer_text import (
    ABSTENTION,
    CheckedAnswer,
    answer_complete,
    check_answer,
    citations_of,
    cite_as,
    shown_so_far,
)
from rag.generate.evidence import (
    ANSWERABILITY_QUESTION,
    best_sentences,
    build_messages,
    cached_sentence_terms,
    content_terms,
    instruction_texts,
    load_demos,
    order_oldest_first,
    select_within_budget,
    term_scores,
)
from rag.generate.marginal import Candidate, marginalise
from rag.generate.protocol import AnswerabilityJudge, Generator
from rag.generate.sentence_match import maxsim_sentence_scores
from rag.index.engine import make_engine
from rag.index.snapshot import Snapshot
from rag.index.store import StoredChunk
from rag.objects import (
    Answer,
    AnswerEvent,
    Citation,
    Evidence,
    Filters,
    Hit,
    MaxSimMode,
    Message,
    Retrieval,
    RetrievalEvent,
    RetrievalRequest,
    Stage,
    StreamEvent,
    TokenEvent,
)
from rag.query_weights import query_token_weights
from rag.retrieval import QueryInput, Rankings, Recipe, StageClock, resolve_mode, resolve_weight, retrieve
from rag.sentences import sentence_head
from rag.settings import Settings
from rag.thread_limits import QUERY_BLAS_LIMIT

MIN_EVIDENCE_TOKENS = 64  # a prompt with less room than this for evidence is refused, not truncated
CHUNK_CACHE_SIZE = 50_000  # stored chunks kept in memory per snapshot (their text: ~75 MB at 1.5 KB each)


def _with_chunk_ids(chunk_ids: np.ndarray, ranking: list[tuple[int, float]]) -> list[tuple[str, float]]:
    """(chunk id, score) for (row, score); one gather per ranking, not one memory-map read per row."""
    ids = np.asarray(chunk_ids[np.fromiter((r for r, _ in ranking), np.int64, len(ranking))]).tolist()
    return [(str(cid), score) for cid, (_, score) in zip(ids, ranking, strict=True)]


@dataclass(frozen=True)
class _Plan:
    """A request of a batch, checked, with its settings resolved."""

    position: int  # in the batch
    question: str
    top_k: int
    recipe: Recipe
    filters: Filters | None  # None for no filter
    alternative: bool


class Pipeline:
    """Answers questions against one index snapshot; generators load on first use."""

    def __init__(
        self,
        snapshot: Snapshot,
        settings: Settings,
        encoder: Encoder | None = None,
        generators: dict[str, Generator] | None = None,
        adapted: bool = True,
        query_cache: EncodingCache | None = None,
    ) -> None:
        """``adapted=False`` scores MaxSim
        with the raw token vectors even where the index has an adapted head (for comparison).
        ``query_cache``: encodings of recent questions, shared with the next snapshot's pipeline (the
        encoder is the same)."""
        self.snapshot = snapshot
        self.engine = make_engine(snapshot, settings, adapted)
        self.adapted = self.engine.adapted
        self.settings = settings
        self.encoder = encoder or Encoder.from_settings(settings, snapshot.params.encoder_model)
        # Shared, not copied: a pipeline for the next snapshot keeps the generators already loaded.
        self.generators: dict[str, Generator] = generators if generators is not None else {}
        self.query_cache = query_cache if query_cache is not None else EncodingCache(settings.query_cache_size)
        self._chunk_cache: dict[str, StoredChunk] = {}
        self._chunk_lock = threading.Lock()
        self._sentence_terms = cached_sentence_terms(snapshot.bm25_tokenize)
        late_model = snapshot.params.late_model
        self.late_encoder = ColBERTEncoder(late_model, settings.encoder_batch_size) if late_model else None
        self._demos = load_demos()[: max(0, settings.fewshot_demos)]
        self._threadpools: ThreadpoolController | None = None

    @property
    def chosen_mode(self) -> str | None:
        """The final stage chosen for this index's corpus (``maxsim_mode=auto`` uses it), if any."""
        choice = self.snapshot.params.final_stage
        return choice.mode if choice is not None else None

    @property
    def maxsim_mode(self) -> MaxSimMode:
        """The MaxSim mode this pipeline's retrievals use."""
        return resolve_mode(self.settings.maxsim_mode, self.chosen_mode)

    @property
    def chosen_weight(self) -> float | None:
        """MaxSim's weight chosen with this index's final stage (``weight_maxsim=auto`` uses it), if any."""
        choice = self.snapshot.params.final_stage
        return choice.maxsim_weight if choice is not None else None

    @property
    def maxsim_weight(self) -> float:
        """MaxSim's weight in fuse and scores in this pipeline's retrievals."""
        return resolve_weight(self.settings.weight_maxsim, self.chosen_weight)

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
        result = self.retrieve_batch([RetrievalRequest(question, top_k, filters, depth, alternative)])[0]
        if isinstance(result, RagError):
            raise result
        return result

    def retrieve_batch(self, requests: Sequence[RetrievalRequest]) -> list[Retrieval | RagError]:
        """Many questions at once, each answered as :meth:`retrieve` would: one forward pass encodes
        them (the cache answers repeats), one FAISS call per filter searches the dense path, one store
        query fetches every hit. A request's bad input is its own error, in its place."""
        results: list[Retrieval | RagError | None] = [None] * len(requests)
        plans: list[_Plan] = []
        for i, request in enumerate(requests):
            try:
                plans.append(self._plan(i, request))
            except RagError as exc:
                results[i] = exc
        if plans:
            limit = self.settings.query_blas_threads
            with QUERY_BLAS_LIMIT.hold(lambda: self._blas_threads().limit(limits=limit, user_api="blas")):
                for plan, retrieval in zip(plans, self._retrieve_planned(plans), strict=True):
                    results[plan.position] = retrieval
        return [r for r in results if r is not None]

    def _plan(self, position: int, request: RetrievalRequest) -> _Plan:
        """A request checked and its settings resolved, or its InputError."""
        question = _check_question(request.question, self.settings.max_question_chars)
        top_k = self.settings.top_k if request.top_k is None else request.top_k
        recipe = Recipe.from_settings(self.settings, request.depth, self.chosen_mode, self.chosen_weight)
        if top_k < 1 or recipe.depth < 1:
            raise InputError("top_k and candidate depth must be at least 1")
        filters = request.filters
        if filters is not None:
            filters.validate()
        kept = None if filters is None or filters.empty else filters
        return _Plan(position, question, top_k, recipe, kept, request.alternative)

    def _retrieve_planned(self, plans: Sequence[_Plan]) -> list[Retrieval]:
        start = time.perf_counter()
        encodings = self.query_cache.encode([plan.question for plan in plans], self.encoder.encode_questions)
        encode_ms = (time.perf_counter() - start) * 1000
        # The dense path of the questions with the same filters and depth in one search.
        groups: dict[tuple[Filters | None, int], list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault((plan.filters, plan.recipe.depth), []).append(i)
        searched: dict[int, tuple[object, list[tuple[int, float]], float]] = {}
        for (filters, depth), members in groups.items():
            t = time.perf_counter()
            scope = self.engine.scope(filters)
            found = self.engine.dense(np.stack([encodings[m][0] for m in members]), depth, scope)
            dense_ms = (time.perf_counter() - t) * 1000
            for member, ranking in zip(members, found, strict=True):
                searched[member] = (scope, ranking, dense_ms)
        ranked: list[tuple[Rankings, StageClock]] = []
        for i, plan in enumerate(plans):
            scope, dense, dense_ms = searched[i]
            clock = StageClock()
            clock.start = start  # the batch's encoding and dense search are each question's too
            clock.timings.update({"encode": encode_ms, "filter": 0.0, Stage.DENSE: dense_ms})
            clock.elapsed.update({"encode": encode_ms, "filter": encode_ms, Stage.DENSE: encode_ms + dense_ms})
            clock.last = time.perf_counter()
            query = self.query_input(plan.question, *encodings[i])
            rankings = retrieve(self.engine, query, plan.recipe, plan.filters, clock, plan.alternative, dense, scope)
            ranked.append((rankings, clock))
        chunk_ids = self.snapshot.chunk_ids
        tops = [r.stages[r.final][: plan.top_k] for (r, _), plan in zip(ranked, plans, strict=True)]
        ids = [[str(chunk_ids[row]) for row, _ in top] for top in tops]
        stored = self._stored_chunks([cid for top_ids in ids for cid in top_ids])
        retrievals = []
        for (rankings, clock), top, top_ids, plan in zip(ranked, tops, ids, plans, strict=True):
            hits = self._hits(rankings, top, top_ids, stored)
            clock.mark("fetch")
            clock.timings["retrieval_total"] = (time.perf_counter() - clock.start) * 1000
            named = {stage: _with_chunk_ids(chunk_ids, ranking) for stage, ranking in rankings.stages.items()}
            retrievals.append(Retrieval(plan.question, hits, named, clock.timings, clock.elapsed, rankings.final))
        return retrievals

    def _stored_chunks(self, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The chunks' text and fields: from memory when asked before (a snapshot's rows never change),
        else in one store query. The store's round trip was 1.6-2.9 ms of a 12-25 ms query."""
        known = self._chunk_cache
        missing = [cid for cid in dict.fromkeys(chunk_ids) if cid not in known]
        if missing:
            fetched = self.snapshot.store.get_chunks(missing, self.snapshot.generation)
            with self._chunk_lock:
                known.update(fetched)
                while len(known) > CHUNK_CACHE_SIZE:  # the oldest first (dicts keep insertion order)
                    known.pop(next(iter(known)), None)
        return {cid: chunk for cid in chunk_ids if (chunk := known.get(cid)) is not None}

    def query_input(self, question: str, dense: np.ndarray, tokens: np.ndarray) -> QueryInput:
        """A question as the recipe takes it, from the encoder's output for it; the late-interaction
        side (the ColBERT model's query vectors, or these token vectors and their weights) on demand."""

        def late() -> tuple[np.ndarray, np.ndarray | None]:
            if self.late_encoder is not None:
                return self.late_encoder.encode_queries([question])[0], None
            return tokens, self.query_weights(question, len(tokens))

        return QueryInput(question, dense, late)

    def passage_tokens(self, texts: Sequence[str], encoded: Encoded) -> list[np.ndarray]:
        """Token vectors of passages not in the index, as the writer would store them (the encoder's
        own, ``encoded``, or the ColBERT model's)."""
        return encoded.tokens if self.late_encoder is None else self.late_encoder.encode_documents(list(texts))

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
        tokenize = self.snapshot.bm25_tokenize

        def idf(word: str) -> float | None:
            terms = tokenize(word)
            return self._idf(terms[0]) if terms else None

        return query_token_weights(question, offsets, idf, mode, skip)

    def _idf(self, term: str) -> float:
        """A BM25 term's idf in the live generation; a term the index never held counts as the rarest."""
        statistics = self.engine.term_statistics
        known = statistics.idf_of(term)
        return statistics.max_idf if known is None else known

    def _hits(
        self, rankings: Rankings, top: list[tuple[int, float]], chunk_ids: list[str], stored: Mapping[str, StoredChunk]
    ) -> list[Hit]:
        """The top rows as hits, their text from ``stored``, each with its rank and score on every stage."""
        rank_of = {
            stage: {row: (i + 1, score) for i, (row, score) in enumerate(ranking)}
            for stage, ranking in rankings.stages.items()
        }
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
                    rrf_contributions=rankings.contributions.get(row, {}),
                    **chunk.passage_fields(),
                )
            )
        return hits

    # --- evidence and answers ----------------------------------------------------------------

    def evidence(
        self, question: str, hits: Sequence[Hit], generator: Generator | None, for_model: bool = True
    ) -> list[Evidence]:
        """Top hits as FreshPrompt evidence within the generator's token budget, oldest first.
        ``for_model=False``: shown, not read by a model: the passages as retrieved, highlighted by shared
        terms alone (see :meth:`_highlights`)."""
        return order_oldest_first(self._ranked_evidence(question, hits, generator, for_model))

    def _ranked_evidence(
        self, question: str, hits: Sequence[Hit], generator: Generator | None, for_model: bool = True
    ) -> list[Evidence]:
        """The evidence that fits, in rank order."""
        shown = hits[: self.settings.evidence_max]
        texts = self._whole_sentence_texts(shown) if for_model else [h.text for h in shown]
        marks = self._highlights(question, texts, for_model)
        candidates = [
            Evidence(
                number=i,
                chunk_id=h.chunk_id,
                doc_id=h.doc_id,
                collection=h.collection,
                snippet=text,
                highlight=marked,
                **h.passage_fields(),
            )
            for i, (h, text, marked) in enumerate(zip(shown, texts, marks, strict=True), 1)
        ]
        if generator is None:
            return candidates
        skeleton = self._messages(question, [])
        overhead = sum(generator.count_tokens(m.content) for m in skeleton) + 32  # chat template tokens
        room = generator.context_tokens - overhead - self.settings.max_answer_tokens
        if room < MIN_EVIDENCE_TOKENS:
            raise InputError(
                f"the question leaves no room for evidence in the generator's {generator.context_tokens}-token "
                f"context (prompt {overhead} tokens + answer {self.settings.max_answer_tokens}): shorten it"
            )
        budget = min(self.settings.evidence_token_budget, room)
        return select_within_budget(candidates, budget, generator.count_tokens, self.settings.evidence_text)

    def _whole_sentence_texts(self, hits: Sequence[Hit]) -> list[str]:
        """Each hit's passage, led by the start of the sentence it opens inside, where it does: a passage
        repeats the tail of the one before it, which can begin mid-sentence, the sentence's subject and
        condition left in the passage before. ``evidence_sentence_head_max_chars`` 0: as retrieved."""
        limit = self.settings.evidence_sentence_head_max_chars
        if limit <= 0 or not hits:
            return [h.text for h in hits]
        before = self.snapshot.store.preceding_chunks([h.chunk_id for h in hits], self.snapshot.generation)
        heads = {chunk: sentence_head(text, offset, limit) for chunk, (text, offset) in before.items()}
        return [heads.get(h.chunk_id, "") + h.text for h in hits]

    def _highlights(self, question: str, texts: Sequence[str], for_model: bool) -> list[str]:
        """Each passage's ``evidence_highlight_sentences`` sentences that match the question best: the question
        terms a sentence shares (counted, weighed by idf, or its content terms counted), plus, ``for_model``,
        ``evidence_highlight_maxsim_weight`` times its mean MaxSim with the question."""
        tokenize = self.snapshot.bm25_tokenize
        weighing = self.settings.evidence_highlight_weights
        terms = set(tokenize(question))
        if weighing == "content":
            terms = content_terms(terms, tokenize)
        term_weights = {term: self._idf(term) if weighing == "idf" else 1.0 for term in terms}
        split = [self._sentence_terms(text) for text in texts]
        parts = [sentences for sentences, _ in split]
        scores = [term_scores(term_weights, distinct) for _, distinct in split]
        weight = self.settings.evidence_highlight_maxsim_weight
        if for_model and weight > 0:
            flat = [s for p in parts for s in p]
            _, question_tokens = self.query_cache.encode([question], self.encoder.encode_questions)[0]
            meaning = iter(maxsim_sentence_scores(question_tokens, self.encoder.encode(flat).tokens).tolist())
            scores = [[terms + weight * next(meaning) for terms in per_hit] for per_hit in scores]
        count = self.settings.evidence_highlight_sentences
        return [best_sentences(p, s, count) for p, s in zip(parts, scores, strict=True)]

    def _messages(self, question: str, evidence: Sequence[Evidence]) -> list[Message]:
        return build_messages(
            question, evidence, self._demos, self.settings.false_premise_check, text=self.settings.evidence_text
        )

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
        yield from self.stream_answer(retrieval, generate, generator, start)

    def stream_answer(
        self, retrieval: Retrieval, generate: bool = True, generator: str | None = None, start: float | None = None
    ) -> Iterator[TokenEvent | AnswerEvent]:
        """The answer to ``retrieval.question`` from ``retrieval.hits``: its pieces as they may be shown
        (:func:`shown_so_far`), then the whole checked :class:`Answer`. Evaluation calls it with hits
        left out (abstention)."""
        start = time.perf_counter() if start is None else start
        timings = dict(retrieval.timings_ms)
        if not generate:
            # shown, not read by a model: encoding every sentence would cost more than the retrieval did
            evidence = self.evidence(retrieval.question, retrieval.hits, None, for_model=False)
            timings["total"] = (time.perf_counter() - start) * 1000
            yield AnswerEvent(answer_from(retrieval, CheckedAnswer("", (), (), "not_generated"), [], evidence, timings))
            return
        gen = self.generator(generator)
        t = time.perf_counter()
        evidence = self.evidence(retrieval.question, retrieval.hits, gen)
        timings["evidence"] = (time.perf_counter() - t) * 1000
        odds = self._answerable_log_odds(retrieval.question, evidence, gen, timings)
        confidence = None if odds is None else self.retrieval_confidence(retrieval)
        if odds is not None and self._abstains(odds, confidence):
            abstained = CheckedAnswer(ABSTENTION, (), (), "abstained")
            yield TokenEvent(abstained.text)
            timings["first_token"] = timings["total"] = (time.perf_counter() - start) * 1000
            yield AnswerEvent(
                answer_from(retrieval, abstained, [], evidence, timings, gen.name, odds=odds, confidence=confidence)
            )
            return
        if self.settings.answer_mode == "marginal":
            yield from self._marginal_answer(retrieval, gen, timings, start, odds, confidence)
            return
        messages = self._messages(retrieval.question, evidence)
        instructions, known = instruction_texts(), known_text(evidence)
        question, sentences = self._restatable(retrieval.question), self.settings.answer_max_sentences
        copy = self.evidence_copy(evidence)
        t = time.perf_counter()
        raw, shown = "", ""
        pieces = gen.stream(messages, self.settings.max_answer_tokens, self.settings.temperature)
        try:
            for piece in pieces:
                if not raw:
                    timings["first_token"] = (time.perf_counter() - start) * 1000
                raw += piece
                now = shown_so_far(raw, instructions, known, question, sentences, copy)
                if len(now) > len(shown) and now.startswith(shown):
                    yield TokenEvent(now[len(shown) :])
                    shown = now
                if answer_complete(raw, sentences):
                    break
        finally:
            close = getattr(pieces, "close", None)  # closed early, the generation stops and frees the model
            if close is not None:
                close()
        timings["generate"] = (time.perf_counter() - t) * 1000
        checked = check_answer(raw, len(evidence), instructions, known, question, sentences, copy)
        if checked.text.startswith(shown) and len(checked.text) > len(shown):
            yield TokenEvent(checked.text[len(shown) :])  # the rest, so the pieces add up to the answer
        timings["total"] = (time.perf_counter() - start) * 1000
        usage = Usage(sum(gen.count_tokens(m.content) for m in messages), gen.count_tokens(raw) if raw else 0)
        citations = citations_of(checked.numbers, evidence, checked.how)
        yield AnswerEvent(
            answer_from(retrieval, checked, citations, evidence, timings, gen.name, usage, odds, confidence)
        )

    def evidence_copy(self, evidence: Sequence[Evidence]) -> EvidenceCopy:
        """What a short answer is copied from: each evidence's text as the prompt shows it, and its passage
        as its citation shows it."""
        shown = self.settings.evidence_text
        return EvidenceCopy(
            {e.number: f"{e.title}\n{e.highlight if shown == 'highlight' else e.snippet}" for e in evidence},
            self.settings.answer_copy_max_words,
            self.settings.answer_copy_min_similarity,
            whole={e.number: f"{e.title}\n{e.snippet}" for e in evidence},
        )

    def _restatable(self, question: str) -> str:
        """The question whose restatement is cut from answers ("": none). Not with the false-premise
        check: "The Eiffel Tower is in Paris, not London" corrects the question by restating it."""
        settings = self.settings
        return question if settings.answer_cut_restated_question and not settings.false_premise_check else ""

    def retrieval_confidence(self, retrieval: Retrieval) -> float | None:
        """How far the best candidate of ``retrieval`` stands out (rag/answerability.py), on this
        pipeline's path weights."""
        weights = Recipe.from_settings(self.settings, None, self.chosen_mode, self.chosen_weight).weights
        return retrieval_confidence(retrieval.rankings, weights)

    def _abstains(self, odds: float, confidence: float | None) -> bool:
        settings = self.settings
        score = answerability_score(
            odds, confidence, settings.answerability_retrieval_weight, settings.answerability_retrieval_reference
        )
        return score < settings.answerability_threshold

    def _answerable_log_odds(
        self, question: str, evidence: Sequence[Evidence], gen: Generator, timings: dict[str, float]
    ) -> float | None:
        """How sure the generator is that ``evidence`` answers ``question`` (None: not asked). Its prompt
        is the answer's up to the question, so the answer reuses its KV cache."""
        if not self.settings.answerability_check or not isinstance(gen, AnswerabilityJudge):
            return None
        t = time.perf_counter()
        messages = build_messages(
            question, evidence, self._demos, text=self.settings.evidence_text, closing=ANSWERABILITY_QUESTION
        )
        odds = gen.yes_log_odds(messages)
        timings["answerability"] = (time.perf_counter() - t) * 1000
        return odds

    def _marginal_answer(
        self,
        retrieval: Retrieval,
        gen: Generator,
        timings: dict[str, float],
        start: float,
        odds: float | None,
        confidence: float | None,
    ) -> Iterator[TokenEvent | AnswerEvent]:
        """RAG-Sequence (Lewis et al. 2020): one candidate answer per top evidence, read alone; the best by
        p(evidence | question) · p(answer | question, evidence) summed over the evidences that gave it."""
        t = time.perf_counter()
        question = retrieval.question
        ranked = self._ranked_evidence(question, retrieval.hits, gen)[: self.settings.marginal_candidates]
        scores = {h.chunk_id: h.score for h in retrieval.hits}
        instructions = instruction_texts()
        candidates: list[Candidate] = []
        usage = Usage(0, 0)
        for one in ranked:
            alone = replace(one, number=1)
            messages = self._messages(question, [alone])
            generation = gen.generate(messages, self.settings.max_answer_tokens, self.settings.temperature)
            usage = Usage(usage.prompt + generation.prompt_tokens, usage.answer + generation.completion_tokens)
            checked = check_answer(
                generation.text,
                1,
                instructions,
                known_text([alone]),
                self._restatable(question),
                self.settings.answer_max_sentences,
                self.evidence_copy([alone]),
            )
            candidates.append(Candidate(one.chunk_id, checked, generation.logprob))
        timings["first_token"] = timings["generate"] = (time.perf_counter() - t) * 1000
        prior = [scores.get(e.chunk_id, 0.0) for e in ranked]
        chosen = marginalise(candidates, prior)
        evidence = order_oldest_first(ranked)
        if chosen is None:
            checked = CheckedAnswer(ABSTENTION, (), (), "abstained")
            citations: list[Citation] = []
        else:
            number = next(e.number for e in evidence if e.chunk_id == chosen.chunk_id)
            text = cite_as(chosen.checked.text, [number])
            checked = CheckedAnswer(text, (number,), (), "cited")
            citations = citations_of([number], evidence, "selected")
        yield TokenEvent(checked.text)
        timings["total"] = (time.perf_counter() - start) * 1000
        yield AnswerEvent(
            answer_from(retrieval, checked, citations, evidence, timings, gen.name, usage, odds, confidence)
        )

    def answer(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        generate: bool = True,
        generator: str | None = None,
    ) -> Answer:
        return final_answer(self.stream(question, top_k, filters, generate, generator))


def final_answer(events: Iterable[StreamEvent]) -> Answer:
    """The :class:`Answer` a stream ends with."""
    for event in events:
        if isinstance(event, AnswerEvent):
            return event.answer
    raise RuntimeError("the answer stream ended without an answer")


def known_text(evidence: Sequence[Evidence]) -> str:
    """What the evidence says, so a URL the answer takes from it is kept."""
    return " ".join(f"{e.url} {e.source} {e.snippet}" for e in evidence)


@dataclass(frozen=True)
class Usage:
    prompt: int
    answer: int


def answer_from(
    retrieval: Retrieval,
    checked: CheckedAnswer,
    citations: list[Citation],
    evidence: list[Evidence],
    timings: dict[str, float],
    generator: str | None = None,
    usage: Usage = Usage(0, 0),
    odds: float | None = None,
    confidence: float | None = None,
) -> Answer:
    return Answer(
        question=retrieval.question,
        answer=checked.text,
        citations=citations,
        hits=retrieval.hits,
        evidence=evidence,
        timings_ms=timings,
        generator=generator,
        stages=list(retrieval.rankings),
        final_stage=retrieval.final_stage,
        status=checked.status,
        prompt_tokens=usage.prompt,
        answer_tokens=usage.answer,
        answerable_log_odds=odds,
        retrieval_confidence=confidence,
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
