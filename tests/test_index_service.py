"""The API's live index in process: what is loaded stays out of Python's full collections, and a
replaced snapshot is still freed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from api.index_service import IndexService
from api.settings import ApiSettings
from indexer.writer import IndexWriter
from rag.objects import Document
from rag.settings import Settings


def test_loaded_objects_are_frozen_and_a_replaced_snapshot_is_freed(
    tmp_path: Path, scifact_docs: list[Document], encoder, settings: Settings
) -> None:
    index = tmp_path / "ix"
    with IndexWriter(index, settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:10], "a")
    service = IndexService(index, ApiSettings(_env_file=None))  # type: ignore[call-arg]
    service.start()
    try:
        # the models, the tokenizer and the snapshot: a full collection no longer walks them (~0.3 s each)
        assert gc.get_freeze_count() > 100_000
        replaced = weakref.ref(service.pipeline().snapshot)
        with IndexWriter(index, settings, encoder, show_progress=False) as writer:
            writer.upsert(scifact_docs[10:12], "a")
        live = service.pipeline()  # notices the commit and swaps
        assert live.snapshot is not replaced() and len(live.snapshot) > 10
        del live
        gc.collect()
        assert replaced() is None  # frozen objects of the old snapshot were let go at the swap
        hits = service.pipeline().retrieve(scifact_docs[11].title, top_k=3).hits
        assert scifact_docs[11].id in {h.doc_id for h in hits}
    finally:
        service.close()
        gc.unfreeze()
