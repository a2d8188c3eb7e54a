"""The generator interface: ``generate`` for a whole answer, ``stream`` for its pieces as they come."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    """One chat message: role is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


@dataclass(frozen=True)
class Generation:
    """A finished answer with the generator's own accounting."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""


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
