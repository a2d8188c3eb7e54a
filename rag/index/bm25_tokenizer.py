"""The BM25 tokeniser: lower-cased word tokens, optional English stopwords and Snowball stemming."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

# bm25s's and scikit-learn's default token pattern: words of two or more characters.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")

Tokenizer = Callable[[str], list[str]]


@cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@cache
def _stemmer(language: str) -> Callable[[list[str]], list[str]]:
    import Stemmer

    return Stemmer.Stemmer(language).stemWords


def make_tokenizer(stopwords: bool = True, stemmer: str = "english") -> Tokenizer:
    """Return ``text -> tokens`` for the given options (``stemmer='none'`` turns stemming off)."""
    stop = _stopwords() if stopwords else frozenset()
    stem = _stemmer(stemmer) if stemmer != "none" else None

    def tokenize(text: str) -> list[str]:
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in stop]
        return stem(tokens) if stem is not None else tokens

    return tokenize
