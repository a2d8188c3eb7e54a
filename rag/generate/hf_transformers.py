"""Generator on Hugging Face transformers: a chat model folder, or a GGUF file that transformers dequantises."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import GeneratorError, GeneratorUnavailableError
from rag.generate.protocol import NO_TOKENS, YES_TOKENS, Generation, Message, as_dicts, yes_no_log_odds
from rag.generate.worker import stream_in_worker


class TransformersGenerator:
    """``AutoModelForCausalLM`` with the model's chat template; streams through ``TextIteratorStreamer``.

    ``model`` is a folder (or hub name, where a hub is reachable) or a ``.gguf`` file path.
    """

    def __init__(self, model: str, context_tokens: int = 2048, threads: int = 0) -> None:
        self.model = model
        self.context_tokens = context_tokens
        self.threads = threads
        self.name = f"transformers:{Path(model).name}"
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(self.threads)
            path = Path(self.model)
            kwargs: dict[str, Any] = {}
            source = self.model
            if path.suffix == ".gguf":
                if not path.is_file():
                    raise GeneratorUnavailableError(f"GGUF model not found at {path}")
                source, kwargs = str(path.parent), {"gguf_file": path.name}
            try:
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch.float32, **kwargs).eval()
            except (OSError, ValueError, ImportError) as exc:
                raise GeneratorUnavailableError(f"cannot load transformers model {self.model!r}: {exc}") from exc
            self._loaded = (tokenizer, model)
        return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._load()[0](text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: Sequence[Message]) -> Any:
        tokenizer, _ = self._load()
        inputs = tokenizer.apply_chat_template(
            as_dicts(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        if inputs["input_ids"].shape[1] >= self.context_tokens:
            raise GeneratorError(
                f"prompt of {inputs['input_ids'].shape[1]} tokens exceeds the context of {self.context_tokens}"
            )
        return inputs

    def _kwargs(self, inputs: Any, max_tokens: int, temperature: float) -> dict[str, Any]:
        tokenizer, _ = self._load()
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        return {**inputs, "max_new_tokens": max_tokens, "pad_token_id": tokenizer.eos_token_id, **sampling}

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Generation:
        import torch

        tokenizer, model = self._load()
        with self._lock, torch.inference_mode():
            inputs = self._inputs(messages)
            output = model.generate(**self._kwargs(inputs, max_tokens, temperature))
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new = output[0][prompt_tokens:]
        finish = "stop" if len(new) < max_tokens else "length"
        return Generation(tokenizer.decode(new, skip_special_tokens=True), self.name, prompt_tokens, len(new), finish)

    def yes_log_odds(self, messages: Sequence[Message]) -> float:
        """log p(yes) − log p(no) of the first reply token (either case), from one forward pass."""
        import torch

        tokenizer, model = self._load()
        first = {w: tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in YES_TOKENS + NO_TOKENS}
        with self._lock, torch.inference_mode():
            logits = model(**self._inputs(messages)).logits[0, -1].double()
        return yes_no_log_odds(
            (float(logits[first[w]]) for w in YES_TOKENS), (float(logits[first[w]]) for w in NO_TOKENS)
        )

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        tokenizer, model = self._load()

        class Stopped(StoppingCriteria):
            def __init__(self, stop: threading.Event) -> None:
                self.stop = stop

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return self.stop.is_set()

        def produce(stop: threading.Event) -> Iterator[str]:
            inputs = self._inputs(messages)
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            errors: list[BaseException] = []
            stopping = StoppingCriteriaList([Stopped(stop)])

            def run() -> None:
                try:
                    with torch.inference_mode():
                        kwargs = self._kwargs(inputs, max_tokens, temperature)
                        model.generate(**kwargs, streamer=streamer, stopping_criteria=stopping)
                except BaseException as exc:  # surfaced to the caller below
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                stop.set()  # the model stops at its next token; the lock is let go once it has
                worker.join()
            if errors:
                raise GeneratorError(f"transformers generation failed: {errors[0]}") from errors[0]

        return stream_in_worker(self._lock, produce)
