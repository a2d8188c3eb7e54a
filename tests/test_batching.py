"""Dynamic batching across callers: real threads, a real pipeline on SQuAD paragraphs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.batching import BatcherClosedError, MicroBatcher
from rag.errors import InputError
from rag.objects import Filters, RetrievalRequest
from tests.test_pipeline import OIL_QUESTION, _pipeline, squad_index  # noqa: F401  (the module's fixture)


def test_concurrent_items_run_together_and_a_lone_item_pays_no_wait() -> None:
    release = threading.Event()
    sizes: list[int] = []

    def double(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        release.wait(5)  # the first batch holds the worker while the others queue
        return [2 * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_size=8, max_wait_s=0.05)
    first = batcher.submit(0)
    while not sizes:  # the worker is inside the first batch
        threading.Event().wait(0.001)
    rest = [batcher.submit(i) for i in range(1, 11)]
    release.set()
    assert [f.result(10) for f in [first, *rest]] == [2 * i for i in range(11)]
    assert sizes == [1, 8, 2]  # what queued meanwhile went in batches of at most 8
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit(1).result(1)
    # on a quiet server a lone item starts at once, though a batch may wait 60 s for company under load
    patient: MicroBatcher[int, int] = MicroBatcher(double, max_size=8, max_wait_s=60.0)
    sizes.clear()
    assert [patient.submit(i).result(10) for i in (21, 22, 23)] == [42, 44, 46]
    assert sizes == [1, 1, 1]
    patient.close()


def test_several_workers_compute_batches_at_once_and_all_stop() -> None:
    inside = threading.Barrier(2, timeout=5)  # broken (an error) unless two batches are inside together

    def meet(items: Sequence[int]) -> list[int]:
        inside.wait()
        return [i + 1 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(meet, max_size=1, max_wait_s=0.0, concurrency=2)
    assert sorted(f.result(10) for f in [batcher.submit(1), batcher.submit(2)]) == [2, 3]
    assert (batcher.batches, batcher.items) == (2, 2)
    batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads)  # every worker heard the stop
    with pytest.raises(ValueError, match="at least one"):
        MicroBatcher(meet, concurrency=0)


def test_each_item_hears_its_own_error_and_a_failed_batch_fails_all() -> None:
    def check(items: Sequence[int]) -> list[int | BaseException]:
        if 99 in items:
            raise RuntimeError("the batch broke")
        return [ValueError(f"odd {i}") if i % 2 else i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(check, max_size=4, max_wait_s=0.0)
    with ThreadPoolExecutor(4) as pool:
        futures = [batcher.submit(i) for i in range(6)]
        assert [f.result(5) for f in futures if not f.exception(5)] == [0, 2, 4]
        assert [str(f.exception(5)) for f in futures if f.exception(5)] == ["odd 1", "odd 3", "odd 5"]
        broken = list(pool.map(lambda i: batcher.submit(i).exception(5), [99]))
    assert isinstance(broken[0], RuntimeError)
    batcher.close()


def test_a_batch_of_questions_is_what_each_question_alone_gives(squad_index, settings, encoder) -> None:  # noqa: F811
    pipeline = _pipeline(squad_index, settings, encoder)
    requests = [
        RetrievalRequest(OIL_QUESTION, top_k=5),
        RetrievalRequest("Which country led the oil embargo?", top_k=3, filters=Filters(collection="oil")),
        RetrievalRequest("   ", top_k=5),  # empty: its own error, the others still answered
        RetrievalRequest(OIL_QUESTION, top_k=2, filters=Filters(collection="other")),
        RetrievalRequest("Who ruled the Ottoman Empire?", top_k=4, depth=20),
        RetrievalRequest(OIL_QUESTION, top_k=5),  # a repeat: the encoding cache answers it
    ]
    batched = pipeline.retrieve_batch(requests)
    assert isinstance(batched[2], InputError)
    for request, got in zip(requests, batched, strict=True):
        if isinstance(got, InputError):
            continue
        alone = pipeline.retrieve(request.question, request.top_k, request.filters, request.depth)
        assert not isinstance(got, Exception)
        # the same rankings; scores to float32 rounding (one product of many queries sums in another order)
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in alone.hits]
        assert [h.ranks for h in got.hits] == [h.ranks for h in alone.hits]
        for a, b in zip(got.hits, alone.hits, strict=True):
            assert a.rrf_contributions == pytest.approx(b.rrf_contributions, rel=1e-6)
        assert got.rankings.keys() == alone.rankings.keys()
        for stage, ranking in got.rankings.items():
            assert [c for c, _ in ranking] == [c for c, _ in alone.rankings[stage]]
            assert [s for _, s in ranking] == pytest.approx([s for _, s in alone.rankings[stage]], rel=1e-5)
        assert got.final_stage == alone.final_stage
        assert {"encode", "dense", "bm25", "rrf", "fetch", "retrieval_total"} <= set(got.timings_ms)
    assert all(h.collection == "oil" for h in batched[1].hits)  # type: ignore[union-attr]
    assert all(h.collection == "other" for h in batched[3].hits)  # type: ignore[union-attr]
    assert pipeline.query_cache.hits >= 5  # every question again alone, and the repeat in the batch
