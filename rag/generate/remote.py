"""Remote generator: any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp, OpenAI)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from rag.errors import GeneratorError, GeneratorUnavailableError
from rag.generate.protocol import NO_TOKENS, YES_TOKENS, Generation, Message, as_dicts, yes_no_log_odds

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20  # the most OpenAI's API lists
log = logging.getLogger("rag.generate")


class RemoteGenerator:
    """``POST {base_url}/chat/completions`` with timeouts and bounded retries with exponential backoff.

    Retries cover connection failures and retryable statuses before any token has arrived; a
    stream that breaks mid-way raises instead of silently restarting.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        context_tokens: int = 8192,
    ) -> None:
        if not base_url:
            raise GeneratorUnavailableError("no remote generator URL configured (set RAG_REMOTE_URL)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"remote:{model}"
        self.context_tokens = context_tokens
        self.retries = retries
        self.backoff_s = backoff_s
        self._told_no_logprobs = False
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )

    def close(self) -> None:
        self._client.close()

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is unknown here; about 3 characters a token errs on the safe side.
        return len(text) // 3 + 1

    def _payload(self, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool) -> dict:
        return {
            "model": self.model,
            "messages": as_dicts(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }

    def _with_retries(self, attempt: Any) -> Any:
        last: Exception | None = None
        cause: Exception | None = None
        for n in range(self.retries + 1):
            if n:
                time.sleep(self.backoff_s * 2 ** (n - 1))
            try:
                return attempt()
            except httpx.TimeoutException as exc:
                last = GeneratorUnavailableError(f"generator at {self.base_url} timed out ({exc.__class__.__name__})")
                cause = exc
            except httpx.TransportError as exc:
                last = GeneratorUnavailableError(f"generator at {self.base_url} is unreachable: {exc}")
                cause = exc
            except _RetryableStatus as exc:
                last, cause = GeneratorUnavailableError(str(exc)), exc
        assert last is not None
        raise last from cause

    def _check(self, response: httpx.Response) -> None:
        if response.status_code in _RETRY_STATUS:
            raise _RetryableStatus(
                f"generator at {self.base_url} answered HTTP {response.status_code}: {_brief(response)}"
            )
        if response.status_code >= 400:
            raise GeneratorError(
                f"generator at {self.base_url} answered HTTP {response.status_code}: {_brief(response)}"
            )

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Generation:
        def attempt() -> httpx.Response:
            response = self._client.post(
                "/chat/completions", json=self._payload(messages, max_tokens, temperature, False)
            )
            self._check(response)
            return response

        response = self._with_retries(attempt)
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
            usage = body.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GeneratorError(f"generator at {self.base_url} answered garbage: {response.text[:200]!r}") from exc
        return Generation(
            text=text,
            model=str(body.get("model", self.model)),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    def yes_log_odds(self, messages: Sequence[Message]) -> float | None:
        """log p(yes) − log p(no) of the first reply token, from the server's ``top_logprobs`` (OpenAI,
        vLLM and llama.cpp's servers list them). A side missing from the list is given the least listed
        log-probability, an upper bound for it. None, said once in the log, where the server answers
        with an error status (after the usual retries) or lists neither yes nor no: the answer is then
        given without the check. An unreachable server raises, as the answer would."""
        payload = {**self._payload(messages, 1, 0.0, False), "logprobs": True, "top_logprobs": TOP_LOGPROBS}

        def attempt() -> httpx.Response:
            response = self._client.post("/chat/completions", json=payload)
            self._check(response)
            return response

        try:
            body = self._with_retries(attempt).json()
            top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            listed = [(str(entry["token"]).strip(), float(entry["logprob"])) for entry in top]
        except GeneratorUnavailableError as exc:
            if not isinstance(exc.__cause__, _RetryableStatus):
                raise  # unreachable or timed out: the answer would fail the same way
            self._tell_no_log_odds(str(exc))  # a server without logits_all answers HTTP 500
            return None
        except (GeneratorError, ValueError, KeyError, IndexError, TypeError) as exc:
            self._tell_no_log_odds(f"{exc.__class__.__name__}: {exc}")
            return None
        yes = [logprob for token, logprob in listed if token in YES_TOKENS]
        no = [logprob for token, logprob in listed if token in NO_TOKENS]
        if not yes and not no:
            self._tell_no_log_odds(f"neither yes nor no among {[token for token, _ in listed][:5]}")
            return None
        floor = min(logprob for _, logprob in listed)
        return yes_no_log_odds(yes or [floor], no or [floor])

    def _tell_no_log_odds(self, why: str) -> None:
        if not self._told_no_logprobs:
            self._told_no_logprobs = True
            log.warning(
                "generator at %s gave no yes/no log-probabilities (%s): answers skip the answerability check",
                self.base_url,
                why[:200],
            )

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        payload = self._payload(messages, max_tokens, temperature, True)

        def attempt() -> httpx.Response:
            request = self._client.build_request("POST", "/chat/completions", json=payload)
            response = self._client.send(request, stream=True)
            try:
                self._check(response)
            except Exception:
                response.read()
                response.close()
                raise
            return response

        response = self._with_retries(attempt)
        try:
            yield from _sse_content(response, self.base_url)
        except httpx.TransportError as exc:
            raise GeneratorError(f"stream from {self.base_url} broke off: {exc}") from exc
        finally:
            response.close()


class _RetryableStatus(Exception):
    pass


def _brief(response: httpx.Response) -> str:
    try:
        response.read()
        return response.text[:200]
    except httpx.HTTPError:
        return ""


def _sse_content(response: httpx.Response, where: str) -> Iterator[str]:
    """The ``delta.content`` pieces of an OpenAI-style Server-Sent Events stream."""
    for line in response.iter_lines():
        if not line or line.startswith(":"):
            continue
        if not line.startswith("data:"):
            raise GeneratorError(f"generator at {where} sent a stream line that is not SSE: {line[:120]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise GeneratorError(f"generator at {where} sent garbage in its stream: {data[:120]!r}") from exc
        if "error" in event:
            raise GeneratorError(f"generator at {where} reported an error: {event['error']}")
        try:
            piece = event["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise GeneratorError(f"generator at {where} sent an unexpected event: {data[:120]!r}") from exc
        if piece:
            yield piece
