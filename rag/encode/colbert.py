"""A ColBERT checkpoint as the late-interaction encoder: PyLate and Stanford (colbert-ai) formats.

Both add a linear projection after a BERT-like encoder, mark queries and documents with a prefix
token inserted after [CLS] ([Q]/[D], or [unused0]/[unused1] in Stanford checkpoints), pad queries to
a fixed length with [MASK] tokens (query augmentation: the masks are scored, and attended to only
when the checkpoint says so), drop punctuation from document tokens, and L2-normalise every vector.
"""

from __future__ import annotations

import json
import os
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError


@dataclass(frozen=True)
class ColBERTConfig:
    transformer_dir: Path
    projection_files: tuple[Path, ...]  # one linear layer per file, applied in order
    query_prefix: str
    document_prefix: str
    query_length: int
    document_length: int
    attend_to_expansion_tokens: bool
    do_query_expansion: bool
    skiplist_words: tuple[str, ...]
    format: str


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def detect_colbert(path: Path) -> ColBERTConfig:
    """Read a checkpoint folder's layout and settings; raises :class:`ModelError` if it is neither format."""
    path = Path(path)
    punctuation = tuple(string.punctuation)
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text("utf-8"))
        transformer = next((m for m in modules if m["type"].endswith("Transformer")), None)
        dense = [m for m in modules if "Dense" in m["type"]]
        if transformer is None or not dense:
            raise ModelError(f"{path}: modules.json has no Transformer and Dense modules (not a ColBERT model)")
        config = _read_json(path / "config_sentence_transformers.json")
        return ColBERTConfig(
            transformer_dir=path / transformer.get("path", ""),
            projection_files=tuple(_weights_file(path / m["path"]) for m in dense),
            query_prefix=config.get("query_prefix", "[Q] "),
            document_prefix=config.get("document_prefix", "[D] "),
            query_length=int(config.get("query_length") or 32),
            document_length=int(config.get("document_length") or 180),
            attend_to_expansion_tokens=bool(config.get("attend_to_expansion_tokens", False)),
            do_query_expansion=bool(config.get("do_query_expansion", True)),
            skiplist_words=tuple(config.get("skiplist_words") or punctuation),
            format="pylate",
        )
    hf_config = _read_json(path / "config.json")
    metadata = _read_json(path / "artifact.metadata")
    if metadata or (hf_config.get("architectures") or [""])[0] == "HF_ColBERT":
        return ColBERTConfig(
            transformer_dir=path,
            projection_files=(_weights_file(path),),
            query_prefix=metadata.get("query_token_id", "[unused0]"),
            document_prefix=metadata.get("doc_token_id", "[unused1]"),
            query_length=int(metadata.get("query_maxlen", 32)),
            document_length=int(metadata.get("doc_maxlen", 180)),
            attend_to_expansion_tokens=bool(metadata.get("attend_to_mask_tokens", False)),
            do_query_expansion=True,
            skiplist_words=punctuation if metadata.get("mask_punctuation", True) else (),
            format="stanford",
        )
    raise ModelError(f"{path}: not a ColBERT checkpoint (no modules.json with a Dense layer, no artifact.metadata)")


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return folder / name
    raise ModelError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _load_linear(file: Path) -> Any:
    import torch

    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    key = next((k for k in state if k.endswith("linear.weight")), None)
    if key is None:
        raise ModelError(f"{file}: no linear.weight (the ColBERT projection)")
    layer = torch.nn.Linear(state[key].shape[1], state[key].shape[0], bias=key[: -len("weight")] + "bias" in state)
    layer.weight.data.copy_(state[key])
    if layer.bias is not None:
        layer.bias.data.copy_(state[key[: -len("weight")] + "bias"])
    return layer.eval()


class ColBERTEncoder:
    """Lazily loaded ColBERT: ``encode_queries`` → (query_length, dim), ``encode_documents`` → (n, dim)."""

    def __init__(self, path: str | Path, batch_size: int = 32) -> None:
        self.path = Path(path)
        self.config = detect_colbert(self.path)
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any, list[Any]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any, list[Any]]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    from transformers import AutoModel, AutoTokenizer

                    try:
                        tokenizer = AutoTokenizer.from_pretrained(str(self.config.transformer_dir))
                        model = AutoModel.from_pretrained(str(self.config.transformer_dir)).eval()
                    except (OSError, ValueError) as exc:
                        raise ModelError(f"cannot load ColBERT encoder from {self.path}: {exc}") from exc
                    projections = [_load_linear(f) for f in self.config.projection_files]
                    self._loaded = (tokenizer, model, projections)
        return self._loaded

    @property
    def dim(self) -> int:
        return int(self._load()[2][-1].out_features)

    def _prefix_id(self, prefix: str) -> int | None:
        if not prefix:
            return None
        tokenizer = self._load()[0]
        token_id = tokenizer.convert_tokens_to_ids(prefix)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ModelError(f"{self.path}: the tokenizer has no token {prefix!r} (query/document marker)")
        return int(token_id)

    def tokenize(self, texts: Sequence[str], is_query: bool) -> dict[str, Any]:
        """Token ids, attention mask and scoring mask, with the marker inserted after [CLS]."""
        import torch

        tokenizer, _, _ = self._load()
        cfg = self.config
        prefix_id = self._prefix_id(cfg.query_prefix if is_query else cfg.document_prefix)
        length = cfg.query_length if is_query else cfg.document_length
        expand = is_query and cfg.do_query_expansion
        batch = tokenizer(
            list(texts),
            max_length=length - (prefix_id is not None),
            truncation=True,
            padding="max_length" if expand else "longest",
            return_tensors="pt",
        )
        ids, attention = batch["input_ids"], batch["attention_mask"]
        if expand:
            ids = torch.where(attention.bool(), ids, torch.full_like(ids, tokenizer.mask_token_id))
        if prefix_id is not None:
            ids = torch.cat([ids[:, :1], torch.full_like(ids[:, :1], prefix_id), ids[:, 1:]], dim=1)
            attention = torch.cat([attention[:, :1], torch.ones_like(attention[:, :1]), attention[:, 1:]], dim=1)
        if expand:
            score_mask = torch.ones_like(ids, dtype=torch.bool)
            if cfg.attend_to_expansion_tokens:
                attention = torch.ones_like(attention)
        else:
            skip = [tokenizer.convert_tokens_to_ids(w) for w in cfg.skiplist_words] if not is_query else []
            score_mask = attention.bool() & ~torch.isin(ids, torch.tensor(skip, dtype=ids.dtype))
        features = {"input_ids": ids, "attention_mask": attention}
        if "token_type_ids" in batch:
            features["token_type_ids"] = torch.zeros_like(ids)
        return {"features": features, "score_mask": score_mask}

    def _encode(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        import torch

        _, model, projections = self._load()
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenize(texts[start : start + self.batch_size], is_query)
                hidden = model(**batch["features"]).last_hidden_state
                for layer in projections:
                    hidden = layer(hidden)
                hidden = torch.nn.functional.normalize(hidden, p=2, dim=-1)
                out.extend(h[m].float().numpy() for h, m in zip(hidden, batch["score_mask"], strict=True))
        return out

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(texts, is_query=True)

    def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(texts, is_query=False)
