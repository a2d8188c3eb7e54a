"""A small LRU cache of query encodings: chat clients and retries ask the same question again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from rag.encode.encoder import Encoded

QueryEncoding = tuple[np.ndarray, np.ndarray]  # (dim,) dense vector, (n_tokens, dim) token vectors


class EncodingCache:
    """Question → its encoding, the ``size`` most recently used; read-only arrays, shared by threads."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._entries: OrderedDict[str, QueryEncoding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def encode(self, texts: Sequence[str], encode: Callable[[list[str]], Encoded]) -> list[QueryEncoding]:
        """Each text's encoding, from the cache or from one call of ``encode`` for those it misses."""
        found: dict[str, QueryEncoding] = {}
        with self._lock:
            for text in texts:
                entry = self._entries.get(text)
                if entry is not None:
                    self._entries.move_to_end(text)
                    found[text] = entry
            self.hits += sum(1 for t in texts if t in found)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            encoded = encode(missing)
            fresh = {text: _frozen(encoded.dense[i], encoded.tokens[i]) for i, text in enumerate(missing)}
            found.update(fresh)
            with self._lock:
                self.misses += len(missing)
                if self.size:
                    self._entries.update(fresh)
                    while len(self._entries) > self.size:
                        self._entries.popitem(last=False)
        return [found[text] for text in texts]


def _frozen(dense: np.ndarray, tokens: np.ndarray) -> QueryEncoding:
    """Copies no caller can change: an entry serves every later request for the same text."""
    dense, tokens = np.array(dense, np.float32), np.array(tokens, np.float32)
    dense.setflags(write=False)
    tokens.setflags(write=False)
    return dense, tokens
