from __future__ import annotations

import numpy as np
import pytest

from rag.errors import InputError
from rag.filters import allowed_rows
from rag.objects import Filters

COLLECTIONS = np.array(["a", "a", "b", "b"])
SOURCES = np.array(["web", "pdf", "web", "web"])
DATES = np.array(["2020-01-05", "", "2021-06-30T10:00:00", "2022-01-01"])


def _mask(filters: Filters, *columns: np.ndarray) -> np.ndarray:
    mask = allowed_rows(filters, *columns)
    assert mask is not None
    return mask


def test_no_filter_means_no_mask() -> None:
    assert allowed_rows(Filters(), COLLECTIONS, SOURCES, DATES) is None


def test_each_field_and_their_conjunction() -> None:
    assert _mask(Filters(collection="b"), COLLECTIONS, SOURCES, DATES).tolist() == [0, 0, 1, 1]
    assert _mask(Filters(sources=("pdf",)), COLLECTIONS, SOURCES, DATES).tolist() == [0, 1, 0, 0]
    # inclusive range on the date part; undated rows never match
    dated = _mask(Filters(date_from="2020-01-05", date_to="2021-06-30"), COLLECTIONS, SOURCES, DATES)
    assert dated.tolist() == [1, 0, 1, 0]
    both = _mask(Filters(collection="b", date_from="2021-12-31"), COLLECTIONS, SOURCES, DATES)
    assert both.tolist() == [0, 0, 0, 1]


def test_bad_dates_are_rejected() -> None:
    with pytest.raises(InputError, match="ISO date"):
        _mask(Filters(date_from="last week"), COLLECTIONS, SOURCES, DATES)
    with pytest.raises(InputError, match="after"):
        _mask(Filters(date_from="2022-01-01", date_to="2021-01-01"), COLLECTIONS, SOURCES, DATES)
