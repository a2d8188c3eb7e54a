"""Answer scores as in the official SQuAD v1.1 evaluation script: normalisation, EM, token F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in gold))


def _f1(prediction: str, truth: str) -> float:
    pred_tokens, true_tokens = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(true_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: Sequence[str]) -> float:
    """Max token F1 over the gold answers."""
    return max((_f1(prediction, g) for g in gold), default=0.0)


def answer_in_evidence(gold: Sequence[str], passages: Sequence[str]) -> float:
    """1.0 if some normalised gold answer occurs in some normalised passage (answer recall)."""
    normalised = [f" {normalize_answer(p)} " for p in passages]
    return float(any(f" {normalize_answer(g)} " in p for g in gold if normalize_answer(g) for p in normalised))
