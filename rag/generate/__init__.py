"""Generators (llama.cpp, OpenAI-compatible remote, transformers) behind one protocol, and their factory."""

from __future__ import annotations

from rag.errors import InputError
from rag.generate.hf_transformers import TransformersGenerator
from rag.generate.llamacpp import LlamaCppGenerator, local_model_path
from rag.generate.protocol import Generator
from rag.generate.remote import RemoteGenerator
from rag.settings import Settings


def make_generator(name: str, settings: Settings) -> Generator:
    if name == "local":
        return LlamaCppGenerator(
            settings.local_model,
            settings.local_context_tokens,
            settings.local_threads,
            settings.model_cache_dir,
            settings.local_batch_tokens,
        )
    if name == "transformers":
        return TransformersGenerator(
            settings.transformers_model or local_model_path("smollm2-135m"),
            settings.local_context_tokens,
            settings.local_threads,
        )
    if name == "remote":
        return RemoteGenerator(
            settings.remote_url,
            settings.remote_model,
            settings.remote_api_key,
            timeout_s=settings.remote_timeout_s,
            retries=settings.remote_retries,
            context_tokens=settings.remote_context_tokens,
        )
    raise InputError(f"unknown generator {name!r}: use 'local', 'remote' or 'transformers'")
