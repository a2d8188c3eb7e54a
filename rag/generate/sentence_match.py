"""How well each sentence of the evidence matches the question by its meaning: late interaction at the
scale of a sentence.

Shared words miss a sentence that answers in other words ("killed" / "the dead one"); the encoder's
token vectors see them as close. Each question token takes its best match among the sentence's tokens
(MaxSim, as the final stage scores passages), averaged over the question's tokens, so a score lies in
[-1, 1] whatever the question's length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.maxsim import maxsim_packed


def maxsim_sentence_scores(question_tokens: np.ndarray, sentence_tokens: Sequence[np.ndarray]) -> np.ndarray:
    """(n,) mean over the question's tokens of their best similarity in each sentence's tokens."""
    if not sentence_tokens:
        return np.zeros(0, np.float32)
    offsets = np.cumsum([0, *(len(t) for t in sentence_tokens)])
    packed = np.concatenate([np.asarray(t, np.float32) for t in sentence_tokens])
    return maxsim_packed(question_tokens, packed, offsets) / max(1, len(question_tokens))
