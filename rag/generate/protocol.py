"""The generator interface: ``generate`` for a whole answer, ``stream`` for its pieces as they come."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

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
    p(no) of its first reply token to the answerability question."""

    def yes_log_odds(self, messages: Sequence[Message]) -> float: ...
