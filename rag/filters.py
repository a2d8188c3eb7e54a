"""Metadata filters, applied as a row mask on every retrieval path before fusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.errors import InputError


@dataclass(frozen=True)
class Filters:
    """Keep only chunks whose document matches every given field.

    ``date_from``/``date_to`` are inclusive ISO dates (YYYY-MM-DD); an undated document never
    matches a date range.
    """

    collection: str | None = None
    sources: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None

    @property
    def empty(self) -> bool:
        return self.collection is None and not self.sources and self.date_from is None and self.date_to is None

    def validate(self) -> None:
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if value is not None and not _is_iso_date(value):
                raise InputError(f"{name} must be an ISO date YYYY-MM-DD, got {value!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InputError(f"date_from {self.date_from} is after date_to {self.date_to}")


def _is_iso_date(value: str) -> bool:
    import datetime

    try:
        datetime.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


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
