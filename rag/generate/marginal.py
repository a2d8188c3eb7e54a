"""RAG-Sequence answer marginalisation (Lewis et al. 2020, "fast decoding"): each top evidence is read
alone and gives one candidate answer; a candidate scores p(evidence | question) — a softmax over the
final-stage scores — times p(answer | question, evidence), the product of its tokens' probabilities;
candidates that say the same thing add up. An evidence that lacks the answer abstains and takes no part:
only when every evidence abstains is the answer "I don't know"."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.generate.answer_text import CheckedAnswer, answer_key


@dataclass(frozen=True)
class Candidate:
    """The answer one evidence gave alone, with the generator's log-probability of it (None: unknown,
    counted as certain, so the evidence prior alone decides)."""

    chunk_id: str
    checked: CheckedAnswer
    logprob: float | None


def evidence_prior(scores: Sequence[float]) -> np.ndarray:
    """p(evidence | question): a softmax over the evidences' final-stage scores."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return values
    weights = np.exp(values - values.max())
    prior: np.ndarray = weights / weights.sum()
    return prior


def marginalise(candidates: Sequence[Candidate], scores: Sequence[float]) -> Candidate | None:
    """The candidate whose answer has the highest marginal probability (the evidence that gave it the
    most, among those that gave it), or None when every candidate abstained."""
    totals: dict[str, float] = {}
    best: dict[str, tuple[float, Candidate]] = {}
    for candidate, prior in zip(candidates, evidence_prior(scores), strict=True):
        if candidate.checked.status == "abstained":
            continue
        joint = float(prior) * math.exp(candidate.logprob if candidate.logprob is not None else 0.0)
        key = answer_key(candidate.checked.text)
        totals[key] = totals.get(key, 0.0) + joint
        if key not in best or joint > best[key][0]:
            best[key] = (joint, candidate)
    if not totals:
        return None
    return best[max(totals, key=lambda k: totals[k])][1]
