"""Where the API is and which key to send: what every client of ``rag serve`` needs (the UI, ``rag mcp``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL = "http://127.0.0.1:8000"  # where `rag serve` listens by default


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    api_url: str = DEFAULT_API_URL
    api_key: str = ""  # sent with writes (and queries, where the server asks for a key)
    api_timeout_s: float = 120.0
