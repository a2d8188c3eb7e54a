"""The query path's BLAS limit, shared by retrievals that overlap: real threadpoolctl, real OpenBLAS."""

from __future__ import annotations

import numpy as np
from threadpoolctl import ThreadpoolController

from rag.thread_limits import Limit, SharedLimit


def _blas_threads(controller: ThreadpoolController) -> set[int]:
    return {pool.num_threads for pool in controller.select(user_api="blas").lib_controllers}


def test_overlapping_holders_keep_the_limit_until_the_last_leaves() -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS loaded
    controller = ThreadpoolController()
    assert controller.select(user_api="blas").lib_controllers, "no BLAS library loaded to limit"
    shared = SharedLimit()
    applied: list[int] = []

    def one_thread() -> Limit:
        applied.append(1)
        return controller.limit(limits=1, user_api="blas")

    with controller.limit(limits=2, user_api="blas"):  # what the process had before any retrieval
        first, second = shared.hold(one_thread), shared.hold(one_thread)
        first.__enter__()
        second.__enter__()
        assert _blas_threads(controller) == {1}
        first.__exit__(None, None, None)  # the first retrieval ends while the second still runs
        assert _blas_threads(controller) == {1}
        second.__exit__(None, None, None)
        assert _blas_threads(controller) == {2}  # lifted once, by the last to leave
        assert applied == [1]  # set once, by the first to enter
        with shared.hold(one_thread):  # and set again by the next retrieval
            assert _blas_threads(controller) == {1}
        assert _blas_threads(controller) == {2}
