"""docker-compose.yml is valid against the compose-spec schema and runs the commands the tests start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def test_compose_file_matches_the_compose_spec() -> None:
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or "check-jsonschema"
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_run_the_tested_commands() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"api", "ui", "postgres", "llm", "qdrant"}
    assert services["api"]["command"][:2] == ["rag", "serve"]  # tests/servers.py start_api
    assert services["llm"]["command"][:2] == ["rag", "llm-server"]  # tests/servers.py start_llm
    assert services["ui"]["command"][:2] == ["rag", "ui"]  # tests/test_ui_browser.py
    api_env = services["api"]["environment"]
    assert api_env["RAG_REMOTE_URL"] == "http://llm:8080/v1" and api_env["RAG_STORE_URL"].startswith("postgresql+")
    assert services["ui"]["environment"]["RAG_API_URL"] == "http://api:8000"
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert (ROOT / "Dockerfile").is_file()


def test_qdrant_runs_only_in_the_scale_profile_and_the_api_can_point_at_it() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["qdrant"]["profiles"] == ["scale"]
    assert all("profiles" not in service for name, service in services.items() if name != "qdrant")
    api = services["api"]
    # the default stays embedded, so `docker compose up` without the profile needs no Qdrant
    assert api["environment"]["RAG_INDEX_ENGINE"] == "${RAG_INDEX_ENGINE:-embedded}"
    assert api["environment"]["RAG_QDRANT_URL"] == "http://qdrant:6333"
    assert api["depends_on"]["qdrant"] == {"condition": "service_healthy", "required": False}
