"""Both generators against real models and real servers on 127.0.0.1: llama.cpp in process, and
``python -m llama_cpp.server`` over HTTP; failure modes against small real HTTP servers."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Iterator

import pytest

from rag.errors import GeneratorError, GeneratorUnavailableError
from rag.generate.llamacpp import LlamaCppGenerator, bundled_smollm2_path
from rag.generate.protocol import AnswerabilityJudge, Generator, Message
from rag.generate.remote import RemoteGenerator
from tests.servers import free_port, start_llm

MESSAGES = [Message("system", "Answer briefly."), Message("user", "What is the capital of France?")]
# How far another runtime's yes/no log-odds may be from llama.cpp's in process on the same model. Over
# HTTP they are equal to 1e-7 when every spelling of yes and no is among the 20 listed tokens, and were
# 0.013-0.13 apart when one spelling was not (it then counts for nothing). transformers on the dequantised
# weights: 0.02-0.12 apart on the four questions tried.
REMOTE_ODDS_TOLERANCE = 0.2
TRANSFORMERS_ODDS_TOLERANCE = 0.3


@pytest.fixture(scope="module")
def local() -> LlamaCppGenerator:
    return LlamaCppGenerator(bundled_smollm2_path(), context_tokens=1024, threads=2)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    """``rag llm-server``: llama.cpp's OpenAI-compatible server, the command docker-compose's llm service runs."""
    server = start_llm(tmp_path_factory.mktemp("llama-server") / "server.log")
    yield server.base_url
    server.stop()


def test_bundled_model_is_found() -> None:
    assert bundled_smollm2_path().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_local_generate_and_stream_agree(local: LlamaCppGenerator) -> None:
    assert isinstance(local, Generator)
    whole = local.generate(MESSAGES, max_tokens=24)
    assert whole.text.strip() and whole.completion_tokens > 0 and whole.prompt_tokens > 10
    pieces = list(local.stream(MESSAGES, max_tokens=24))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == whole.text.strip()  # temperature 0: the same answer both ways
    assert local.count_tokens("hello world") >= 2


def test_local_logprob_of_the_greedy_answer_and_yes_no_odds(local: LlamaCppGenerator) -> None:
    """log p(answer | prompt) adds up per token, so a longer greedy answer is never more probable; the
    yes/no odds are a number the prompt decides (how well they judge is measured with the 1.5B in
    bench/answer_levers.py: this 135M model's are no judge)."""
    short, longer = local.generate(MESSAGES, max_tokens=3), local.generate(MESSAGES, max_tokens=12)
    assert short.logprob is not None and longer.logprob is not None
    assert longer.text.startswith(short.text) and -60.0 < longer.logprob <= short.logprob <= 0.0

    def ask(question: str) -> float:
        return local.yes_log_odds([Message("system", "Reply yes or no."), Message("user", question)])

    paris = ask("Is Paris the capital of France?")
    assert math.isfinite(paris) and paris == ask("Is Paris the capital of France?")
    assert paris != ask("Is the moon made of cheese?")


def _yes_no(question: str) -> list[Message]:
    return [Message("system", "Reply yes or no."), Message("user", question)]


JUDGED = ("Is Paris the capital of France?", "Is the moon made of cheese?")


def test_remote_server_reads_the_same_yes_no_odds(local: LlamaCppGenerator, llama_server: str) -> None:
    """The answerability check over HTTP: llama.cpp's server lists the first reply token's top
    log-probabilities, and the log-odds they give are the in-process model's, so the rule measured on
    the one holds for the other."""
    remote = RemoteGenerator(llama_server, "default", timeout_s=60)
    assert isinstance(remote, AnswerabilityJudge)
    for question in JUDGED:
        here, there = local.yes_log_odds(_yes_no(question)), remote.yes_log_odds(_yes_no(question))
        assert there is not None and abs(there - here) < REMOTE_ODDS_TOLERANCE, (question, here, there)
    remote.close()


def _logprobs_body(top: list[tuple[str, float]]) -> str:
    listed = [{"token": token, "logprob": logprob, "bytes": None} for token, logprob in top]
    content = [{"token": top[0][0], "logprob": top[0][1], "bytes": None, "top_logprobs": listed}]
    choice = {"message": {"content": top[0][0]}, "finish_reason": "length", "logprobs": {"content": content}}
    return json.dumps({"model": "m", "choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})


def test_remote_yes_no_odds_from_what_the_server_lists(scripted, caplog) -> None:
    """Both sides listed: their log-sum-exps; one side missing: the least listed log-probability bounds
    it; no log-probabilities, neither side, or an error status: None (the answer skips the check), said
    once in the log; a server that cannot be reached is still an error."""
    both = _logprobs_body([("Yes", -0.2), ("yes", -2.0), ("No", -1.9), (" no", -5.0), ("Maybe", -6.0)])
    only_yes = _logprobs_body([("Yes", -0.01), ("Sure", -7.0), ("Maybe", -9.5)])
    url, server = scripted([(200, both, 0.0), (200, only_yes, 0.0), (200, OK_BODY, 0.0)])
    remote = RemoteGenerator(url, "m", retries=0)
    expected = math.log(math.exp(-0.2) + math.exp(-2.0)) - math.log(math.exp(-1.9) + math.exp(-5.0))
    assert remote.yes_log_odds(MESSAGES) == pytest.approx(expected)
    assert remote.yes_log_odds(MESSAGES) == pytest.approx(-0.01 + 9.5)
    with caplog.at_level("WARNING", logger="rag.generate"):
        assert remote.yes_log_odds(MESSAGES) is None  # OK_BODY lists no log-probabilities
        assert server.calls == 3
        for body in (_logprobs_body([("Paris", -0.1), ("The", -3.0)]), '{"error": "logprobs unsupported"}'):
            url, _ = scripted([(400 if "error" in body else 200, body, 0.0)])
            assert RemoteGenerator(url, "m", retries=0).yes_log_odds(MESSAGES) is None
        assert remote.yes_log_odds(MESSAGES) is None
        warned = [r for r in caplog.records if "answerability check" in r.getMessage()]
        assert len(warned) == 3  # once per generator
    url, server = scripted([(500, "logprobs is not supported", 0.0)])  # llama.cpp without logits_all
    assert RemoteGenerator(url, "m", retries=1, backoff_s=0.01).yes_log_odds(MESSAGES) is None
    assert server.calls == 2  # retried as any request is
    with pytest.raises(GeneratorUnavailableError, match="unreachable"):
        RemoteGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", retries=0).yes_log_odds(MESSAGES)


def test_local_missing_model_is_a_clear_error() -> None:
    with pytest.raises(GeneratorUnavailableError, match="local model not found"):
        LlamaCppGenerator("/nonexistent/model.gguf").generate(MESSAGES, 4)


def test_remote_against_a_real_llama_cpp_server(llama_server: str) -> None:
    remote = RemoteGenerator(llama_server, "default", timeout_s=60)
    whole = remote.generate(MESSAGES, max_tokens=24)
    assert whole.text.strip() and whole.completion_tokens > 0
    pieces = list(remote.stream(MESSAGES, max_tokens=24))
    assert len(pieces) > 1 and "".join(pieces).strip() == whole.text.strip()
    remote.close()


def test_remote_server_down_fails_fast_after_bounded_retries() -> None:
    remote = RemoteGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(GeneratorUnavailableError, match="unreachable"):
        remote.generate(MESSAGES, 8)
    assert time.monotonic() - start < 5
    with pytest.raises(GeneratorUnavailableError, match="unreachable"):
        list(remote.stream(MESSAGES, 8))


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Replies from a per-server script: a list of (status, body, delay_s)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.calls += 1  # type: ignore[attr-defined]
        status, body, delay = server.script[min(server.calls - 1, len(server.script) - 1)]  # type: ignore[attr-defined]
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def scripted() -> Iterator:
    servers = []

    def start(script: list[tuple[int, str, float]]) -> tuple[str, http.server.HTTPServer]:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
        server.script, server.calls = script, 0  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", server

    yield start
    for server in servers:
        server.shutdown()


OK_BODY = json.dumps(
    {
        "model": "m",
        "choices": [{"message": {"content": "Paris [1]."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
    }
)


def test_remote_retries_503_then_succeeds(scripted) -> None:
    url, server = scripted([(503, "busy", 0.0), (503, "busy", 0.0), (200, OK_BODY, 0.0)])
    result = RemoteGenerator(url, "m", retries=2, backoff_s=0.01).generate(MESSAGES, 8)
    assert result.text == "Paris [1]." and server.calls == 3


def test_remote_gives_up_after_its_retries(scripted) -> None:
    url, server = scripted([(503, "busy", 0.0)])
    with pytest.raises(GeneratorUnavailableError, match="HTTP 503"):
        RemoteGenerator(url, "m", retries=1, backoff_s=0.01).generate(MESSAGES, 8)
    assert server.calls == 2


def test_remote_garbage_and_client_errors_are_clear(scripted) -> None:
    url, _ = scripted([(200, "<html>not json</html>", 0.0)])
    with pytest.raises(GeneratorError, match="garbage"):
        RemoteGenerator(url, "m", retries=0).generate(MESSAGES, 8)
    url, server = scripted([(400, '{"error": "bad model"}', 0.0)])
    with pytest.raises(GeneratorError, match="HTTP 400"):
        RemoteGenerator(url, "m", retries=3, backoff_s=0.01).generate(MESSAGES, 8)
    assert server.calls == 1  # a client error is not retried
    url, _ = scripted([(200, "data: {broken\n\n", 0.0)])
    with pytest.raises(GeneratorError, match="garbage in its stream"):
        list(RemoteGenerator(url, "m", retries=0).stream(MESSAGES, 8))


def test_remote_timeout(scripted) -> None:
    url, _ = scripted([(200, OK_BODY, 2.0)])
    with pytest.raises(GeneratorUnavailableError, match="timed out"):
        RemoteGenerator(url, "m", timeout_s=0.3, retries=0).generate(MESSAGES, 8)


def test_transformers_generator_runs_the_bundled_gguf() -> None:
    from rag.generate.hf_transformers import TransformersGenerator

    generator = TransformersGenerator(bundled_smollm2_path(), context_tokens=1024, threads=2)
    assert isinstance(generator, Generator)
    whole = generator.generate(MESSAGES, max_tokens=16)
    assert whole.text.strip() and 0 < whole.completion_tokens <= 16 and whole.prompt_tokens > 10
    pieces = list(generator.stream(MESSAGES, max_tokens=16))
    assert len(pieces) > 1 and "".join(pieces).strip() == whole.text.strip()
    with pytest.raises(GeneratorUnavailableError, match="not found"):
        TransformersGenerator("/nonexistent/m.gguf").generate(MESSAGES, 4)


def test_transformers_reads_the_same_yes_no_odds_as_llama_cpp(local: LlamaCppGenerator) -> None:
    """transformers runs the GGUF's weights dequantised; its yes/no log-odds are llama.cpp's up to the
    rounding of llama.cpp's quantised products."""
    from rag.generate.hf_transformers import TransformersGenerator

    generator = TransformersGenerator(bundled_smollm2_path(), context_tokens=1024, threads=2)
    assert isinstance(generator, AnswerabilityJudge)
    for question in JUDGED:
        here, there = local.yes_log_odds(_yes_no(question)), generator.yes_log_odds(_yes_no(question))
        assert abs(there - here) < TRANSFORMERS_ODDS_TOLERANCE, (question, here, there)
