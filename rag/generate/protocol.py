"""The generator interface: ``generate`` for a whole answer, ``stream`` for its pieces as they come."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rag.objects import Generation, Message


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat messages into text."""

    name: str
    context_tokens: int  # the model's context window, prompt and answer together

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Generation: ...

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


@runtime_checkable
class AnswerabilityJudge(Protocol):
    """A generator that can say how sure it is that the evidence holds the answer: log p(yes) − log
    p(no) of its first reply token to the answerability question; None where it cannot tell (a remote
    server that returns no log-probabilities)."""

    def yes_log_odds(self, messages: Sequence[Message]) -> float | None: ...


# The first reply tokens read as yes and as no, in every runtime: the chat template starts the reply, so
# the token carries no leading space.
YES_TOKENS = ("yes", "Yes")
NO_TOKENS = ("no", "No")


def yes_no_log_odds(yes: Iterable[float], no: Iterable[float]) -> float:
    """log Σ exp(yes) − log Σ exp(no): the log-odds of yes from the yes and no tokens' logits or
    log-probabilities (the softmax's normaliser cancels)."""
    return float(np.logaddexp.reduce(list(yes), dtype=np.float64) - np.logaddexp.reduce(list(no), dtype=np.float64))
