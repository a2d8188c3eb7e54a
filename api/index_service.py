"""The live index as the API sees it: one :class:`Pipeline` per snapshot, swapped atomically.

A query takes the current pipeline once and runs to the end against that snapshot, whatever is
committed meanwhile. A new snapshot (from this process's job worker, or from ``rag index add`` in
another process) is noticed through ``DIR/CURRENT`` and swapped in with a single reference write.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from threadpoolctl import ThreadpoolController

from api.settings import ApiSettings
from indexer.writer import IndexWriter
from rag.batching import MicroBatcher
from rag.encode.cache import EncodingCache
from rag.encode.encoder import Encoder
from rag.errors import IndexBusyError, RagError
from rag.generate.protocol import Generator
from rag.index.snapshot import Snapshot, current_snapshot_name, store_for
from rag.objects import Retrieval, RetrievalRequest
from rag.pipeline import Pipeline
from rag.thread_limits import Limit

log = logging.getLogger("rag.api")

CREATE_WAIT_S = 120.0  # how long a starting worker waits for another to finish creating the empty index


class IndexService:
    def __init__(self, index_dir: Path, settings: ApiSettings, on_batch: Callable[[int], None] | None = None) -> None:
        """``on_batch(size)``: told the size of every retrieval batch (metrics)."""
        self.index_dir = Path(index_dir)
        self.settings = settings
        self.store = store_for(self.index_dir, settings)  # one reader connection pool for every snapshot
        self.generators: dict[str, Generator] = {}
        self._encoder: Encoder | None = None
        self._pipeline: Pipeline | None = None
        self._loaded_name: str | None = None
        self._swap_lock = threading.Lock()
        self._blas_limit: Limit | None = None  # set by start()
        self.query_cache = EncodingCache(settings.query_cache_size)  # the encoder outlives snapshots: so do encodings
        self.batcher: MicroBatcher[tuple[Pipeline, RetrievalRequest], Retrieval] = MicroBatcher(
            _retrieve_batch,
            settings.api_batch_max_size,
            settings.api_batch_max_wait_ms / 1000,
            on_batch,
            concurrency=settings.api_retrieval_concurrency,
        )

    def start(self) -> None:
        """Create an empty index when there is none, load the live snapshot and warm the encoder."""
        if current_snapshot_name(self.index_dir) is None:
            self._create_empty()
        self.swap()
        self.pipeline().encoder.encode_questions(["warm up"])
        # The query path's BLAS limit, for the server's life (the libraries are loaded by now): limited and
        # lifted around every batch, numpy's OpenBLAS threads were seen spinning at 50-84 % of a core in
        # 2 of 8 runs under load. The job runner encodes on torch's and ONNX Runtime's own threads.
        self._blas_limit = ThreadpoolController().limit(limits=self.settings.query_blas_threads, user_api="blas")
        keep_out_of_collections()  # the model loads on the warm-up: its objects too

    def _create_empty(self) -> None:
        settings = self.settings
        self._encoder = Encoder.from_settings(settings)
        deadline = time.monotonic() + CREATE_WAIT_S
        while True:
            try:
                with IndexWriter(self.index_dir, settings, encoder=self._encoder, show_progress=False) as writer:
                    if writer.snapshot is None:
                        writer.upsert([], "default")
                        log.info("created an empty index at %s", self.index_dir)
                return
            except IndexBusyError:  # another worker or replica is creating it (or writing) right now
                if current_snapshot_name(self.index_dir) is not None:
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.batcher.close()
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None
        self.store.close()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise RuntimeError("IndexService.start() was not called")
        return self._encoder

    def swap(self) -> Pipeline:
        """Load the snapshot ``CURRENT`` names (if it is not the loaded one) and make it live."""
        with self._swap_lock:
            name = current_snapshot_name(self.index_dir)
            if self._pipeline is not None and name == self._loaded_name:
                return self._pipeline
            snapshot = Snapshot.load(self.index_dir, self.settings, store=self.store)
            pipeline = Pipeline(
                snapshot,
                self.settings,
                self._encoder,
                self.generators,
                query_cache=self.query_cache,
            )
            self._encoder = pipeline.encoder
            replaced = self._pipeline is not None
            self._pipeline, self._loaded_name = pipeline, name  # the swap: readers see old or new, whole
            log.info("serving snapshot %s (%d chunks)", name, len(snapshot))
            if replaced:  # the first snapshot is frozen by start(), once the model has loaded too
                keep_out_of_collections()
            return pipeline

    def pipeline(self) -> Pipeline:
        """The live pipeline, after noticing a snapshot another process committed."""
        pipeline = self._pipeline
        if pipeline is None:
            raise RuntimeError("IndexService.start() was not called")
        if current_snapshot_name(self.index_dir) != self._loaded_name:
            pipeline = self.swap()
        return pipeline


def keep_out_of_collections() -> None:
    """Keep what is loaded (models, tokenizer vocabulary, the snapshot: ~530k objects on scifact) out of
    Python's full collections. Each of those walked all of it, ~0.3 s with every thread stopped, every few
    seconds under load (the open-loop benchmark's slow tail, docs/benchmarks.md); frozen, one takes ~30 ms.
    What was frozen before is collected first, so a replaced snapshot's objects are still freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _retrieve_batch(items: Sequence[tuple[Pipeline, RetrievalRequest]]) -> list[Retrieval | RagError]:
    """A batch of requests, each against the pipeline it was taken with (a swap may fall inside a batch)."""
    results: list[Retrieval | RagError | None] = [None] * len(items)
    by_pipeline: dict[int, list[int]] = {}
    for i, (pipeline, _) in enumerate(items):
        by_pipeline.setdefault(id(pipeline), []).append(i)
    for members in by_pipeline.values():
        pipeline = items[members[0]][0]
        for member, result in zip(members, pipeline.retrieve_batch([items[m][1] for m in members]), strict=True):
            results[member] = result
    return [r for r in results if r is not None]
