"""Real servers on 127.0.0.1 for tests: started as subprocesses, logged to files, killed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rag_command() -> list[str]:
    """The ``rag`` console script, as docker-compose runs it."""
    script = shutil.which("rag", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cli"]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    argv: Sequence[str],
    ready_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
    ok_statuses: Sequence[int] = (200,),
) -> Server:
    """Start ``argv`` and wait until ``ready_url`` answers (200, or one of ``ok_statuses``); its output goes
    to ``log_path`` (a file, not a pipe nobody drains)."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed with the process
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{argv[0]} exited with {proc.returncode}: {log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            if httpx.get(ready_url, timeout=2).status_code in ok_statuses:
                base = ready_url.split("/", 3)
                return Server(proc, f"{base[0]}//{base[2]}", log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not answer {ready_url} in {timeout_s:.0f} s")


def start_api(index_dir: Path, log_path: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> Server:
    port = free_port()
    argv = [*rag_command(), "serve", "--index", str(index_dir), "--host", "127.0.0.1", "--port", str(port), *args]
    return start_server(argv, f"http://127.0.0.1:{port}/readyz", log_path, env)


def start_llm(log_path: Path, context: int = 1024) -> Server:
    port = free_port()
    argv = [*rag_command(), "llm-server", "--host", "127.0.0.1", "--port", str(port), "--context", str(context)]
    server = start_server(argv, f"http://127.0.0.1:{port}/v1/models", log_path)
    server.base_url += "/v1"
    return server
