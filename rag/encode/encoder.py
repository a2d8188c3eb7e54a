"""Sentence-transformers encoder: one forward pass gives token vectors and the pooled dense vector."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.encode.runtime import BACKENDS, Backend, compile_transformer, default_cache_dir
from rag.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.settings import Settings


@dataclass(frozen=True)
class Encoded:
    """Encoder output for a batch of texts, in input order.

    ``dense``: (n, dim) float32, unit length (what ``SentenceTransformer.encode`` returns).
    ``tokens``: n arrays of (n_tokens_i, dim) float32, each row unit length, padding removed.
    """

    dense: np.ndarray
    tokens: list[np.ndarray]


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def question_backend(settings: Settings, model_name_or_path: str) -> Backend:
    """The backend ``question_encoder_backend`` names, ``auto`` resolved (see the setting)."""
    chosen = settings.question_encoder_backend
    if chosen != "auto":
        return chosen
    if settings.encoder_backend == "torch" and Path(model_name_or_path).is_dir():
        return "onnx"
    return settings.encoder_backend


class Encoder:
    """Lazily loaded sentence-transformers model; nothing is read from disk until first use."""

    def __init__(
        self,
        model_name_or_path: str,
        batch_size: int = 32,
        torch_threads: int = 0,
        backend: Backend = "torch",
        cache_dir: Path | None = None,
        question_backend: Backend | None = None,
    ) -> None:
        """``backend``: torch, or a compiled runtime of the same weights (rag/encode/runtime.py), exported
        into ``cache_dir`` on first use; ``question_backend`` (None: ``backend``) encodes questions
        (:meth:`encode_questions`), whose speed is what a query pays."""
        question_backend = question_backend or backend
        for name in (backend, question_backend):
            if name not in BACKENDS:
                raise ModelError(f"unknown encoder backend {name!r}; choose one of {', '.join(BACKENDS)}")
        self.model_name_or_path = model_name_or_path
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.backend = backend
        self.question_backend = question_backend
        self.cache_dir = cache_dir or default_cache_dir()
        self._tokenizer_lock = threading.Lock()
        self._model: SentenceTransformer | None = None
        self._runtimes: dict[str, Any] = {}  # compiled runtime by backend (torch needs none)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, model_name_or_path: str | None = None) -> Encoder:
        return cls(
            model_name_or_path or settings.encoder_model,
            settings.encoder_batch_size,
            settings.torch_threads,
            settings.encoder_backend,
            Path(settings.encoder_cache_dir) if settings.encoder_cache_dir else None,
            question_backend(settings, model_name_or_path or settings.encoder_model),
        )

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        # Models come from local folders only; never reach for a model hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        compiled = sorted({self.backend, self.question_backend} - {"torch"})
        if compiled and not Path(self.model_name_or_path).is_dir():
            raise ModelError(f"the {compiled[0]} backend needs a local model folder, not {self.model_name_or_path}")
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        try:
            model = SentenceTransformer(self.model_name_or_path, device="cpu")
        except Exception as exc:  # the library raises many kinds; one clear message here
            raise ModelError(f"cannot load encoder {self.model_name_or_path!r}: {exc}") from exc
        model.eval()
        for backend in compiled:
            self._runtimes[backend] = compile_transformer(
                model[0].auto_model, Path(self.model_name_or_path), backend, self.cache_dir, self.torch_threads
            )
        return model

    def _forward(self, features: dict[str, Any], backend: str) -> dict[str, Any]:
        """The model's outputs (``token_embeddings``, ``sentence_embedding``) for one tokenised batch."""
        model = self.model
        runtime = self._runtimes.get(backend)
        if runtime is None:
            return model(features)
        import torch

        out = {**features, "token_embeddings": torch.from_numpy(runtime(features))}
        for module in list(model)[1:]:  # pooling and normalising, as the model defines them
            out = module(out)
        return out

    @property
    def dim(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; 5.x (PyLate's pin) has only the old name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ModelError(f"encoder {self.model_name_or_path!r} has no fixed embedding dimension")
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        length = self.model.max_seq_length
        if length is None:
            raise ModelError(f"encoder {self.model_name_or_path!r} declares no maximum sequence length")
        return int(length)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, special tokens excluded."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Char span of each token ``encode`` gives ``text`` (special tokens included, as (0, 0))."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(text, truncation=True, max_length=self.max_seq_length, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def _preprocess(self, texts: list[str]) -> dict[str, Any]:
        import torch

        model = self.model
        prepare = getattr(model, "preprocess", None) or model.tokenize
        with self._tokenizer_lock:  # HF fast tokenizers raise "Already borrowed" when shared by threads
            features = prepare(texts)
        return {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}

    def encode(
        self,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> Encoded:
        """Encode texts (passages) in length-sorted batches; ``progress(n)`` is called after each batch."""
        return self._encode(texts, self.backend, progress)

    def encode_questions(self, texts: Sequence[str]) -> Encoded:
        """Encode questions, with the question backend."""
        return self._encode(texts, self.question_backend, None)

    def _encode(self, texts: Sequence[str], backend: str, progress: Callable[[int], None] | None) -> Encoded:
        import torch

        n = len(texts)
        if n == 0:
            return Encoded(dense=np.zeros((0, self.dim), np.float32), tokens=[])
        # Sorting by length keeps padding (wasted compute) small, as sentence-transformers does.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        dense = np.empty((n, self.dim), dtype=np.float32)
        tokens: list[np.ndarray] = [np.empty(0)] * n
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                batch_idx = order[start : start + self.batch_size]
                features = self._preprocess([texts[i] for i in batch_idx])
                out = self._forward(features, backend)
                mask = features["attention_mask"].bool()
                token_emb = out["token_embeddings"].float()
                dense[batch_idx] = out["sentence_embedding"].float().cpu().numpy()
                for row, i in enumerate(batch_idx):
                    vectors = token_emb[row][mask[row]].cpu().numpy()
                    tokens[i] = _normalise_rows(vectors)
                if progress is not None:
                    progress(len(batch_idx))
        return Encoded(dense=dense, tokens=tokens)
