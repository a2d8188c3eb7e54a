"""rag-late's query path as a library: load an index snapshot, retrieve, answer.

    from rag import Pipeline, Settings, Snapshot
    settings = Settings()
    pipeline = Pipeline(Snapshot.load(Path("data/idx"), settings), settings)
    answer = pipeline.answer("What is MaxSim?")

Building and changing indexes is ingestion's job (``indexer.writer.IndexWriter``, ``rag index``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.errors import (
        GeneratorError,
        GeneratorUnavailableError,
        IndexBusyError,
        IndexCorruptError,
        IndexNotFoundError,
        InputError,
        ModelError,
        RagError,
    )
    from rag.index.engine import LocalEngine
    from rag.index.manifest import IndexParams, Manifest
    from rag.index.snapshot import Snapshot
    from rag.objects import (
        Answer,
        AnswerEvent,
        Chunk,
        Citation,
        Document,
        Evidence,
        Filters,
        Hit,
        Retrieval,
        RetrievalEvent,
        Stage,
        StreamEvent,
        TokenEvent,
    )
    from rag.pipeline import Pipeline
    from rag.retrieval import Engine, QueryInput, Rankings, Recipe, retrieve
    from rag.settings import Settings

# Imported on first use, so `import rag.errors` does not load torch and the encoder stack.
_EXPORTS = {
    "Answer": "rag.objects",
    "AnswerEvent": "rag.objects",
    "Chunk": "rag.objects",
    "Citation": "rag.objects",
    "Document": "rag.objects",
    "Engine": "rag.retrieval",
    "Evidence": "rag.objects",
    "Filters": "rag.objects",
    "GeneratorError": "rag.errors",
    "GeneratorUnavailableError": "rag.errors",
    "Hit": "rag.objects",
    "IndexBusyError": "rag.errors",
    "IndexCorruptError": "rag.errors",
    "IndexNotFoundError": "rag.errors",
    "IndexParams": "rag.index.manifest",
    "InputError": "rag.errors",
    "LocalEngine": "rag.index.engine",
    "Manifest": "rag.index.manifest",
    "ModelError": "rag.errors",
    "Pipeline": "rag.pipeline",
    "QueryInput": "rag.retrieval",
    "RagError": "rag.errors",
    "Rankings": "rag.retrieval",
    "Recipe": "rag.retrieval",
    "Retrieval": "rag.objects",
    "RetrievalEvent": "rag.objects",
    "Settings": "rag.settings",
    "Snapshot": "rag.index.snapshot",
    "Stage": "rag.objects",
    "StreamEvent": "rag.objects",
    "TokenEvent": "rag.objects",
    "retrieve": "rag.retrieval",
}

__all__ = [
    "Answer",
    "AnswerEvent",
    "Chunk",
    "Citation",
    "Document",
    "Engine",
    "Evidence",
    "Filters",
    "GeneratorError",
    "GeneratorUnavailableError",
    "Hit",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexNotFoundError",
    "IndexParams",
    "InputError",
    "LocalEngine",
    "Manifest",
    "ModelError",
    "Pipeline",
    "QueryInput",
    "RagError",
    "Rankings",
    "Recipe",
    "Retrieval",
    "RetrievalEvent",
    "Settings",
    "Snapshot",
    "Stage",
    "StreamEvent",
    "TokenEvent",
    "retrieve",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
