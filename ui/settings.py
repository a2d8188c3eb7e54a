"""The UI's own settings (it shares nothing with the server but the HTTP API)."""

from __future__ import annotations

from connect.settings import ClientSettings


class UiSettings(ClientSettings):
    """``RAG_API_URL``, ``RAG_API_KEY`` (sent with uploads, and queries where the server asks for a key),
    ``RAG_API_TIMEOUT_S``."""
