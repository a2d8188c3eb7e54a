"""Metadata filters as a row mask, applied on every retrieval path before fusion."""

from __future__ import annotations

import numpy as np

from rag.objects import Filters


def allowed_rows(
    filters: Filters, collections: np.ndarray, sources: np.ndarray, dates: np.ndarray
) -> np.ndarray | None:
    """Bool mask over rows (None when nothing is filtered). Inputs are per-row string arrays."""
    if filters.empty:
        return None
    filters.validate()
    mask = np.ones(len(collections), dtype=bool)
    if filters.collection is not None:
        mask &= collections == filters.collection
    if filters.sources:
        mask &= np.isin(sources, list(filters.sources))
    if filters.date_from is not None or filters.date_to is not None:
        day = np.array([d[:10] for d in dates], dtype=str) if len(dates) else np.zeros(0, str)
        mask &= day != ""
        if filters.date_from is not None:
            mask &= day >= filters.date_from[:10]
        if filters.date_to is not None:
            mask &= day <= filters.date_to[:10]
    return mask
