"""The UI's own settings (it shares nothing with the server but the HTTP API)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL = "http://127.0.0.1:8000"  # where `rag serve` listens by default


class UiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    api_url: str = DEFAULT_API_URL
    api_key: str = ""  # sent with uploads (and queries, where the server asks for a key)
    api_timeout_s: float = 120.0
