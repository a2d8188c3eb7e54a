"""``rag eval compare A B``: per-metric differences between two runs with a paired t-test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from rag.errors import InputError

ANSWER = "answer"  # per_query.json's answer metrics, beside the stages


def _load(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        report = json.loads((run / "report.json").read_text())
        per_query = json.loads((run / "per_query.json").read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{run}: not an evaluation run (report.json and per_query.json needed)") from exc
    return report, per_query


def compare_runs(a: Path, b: Path) -> list[dict[str, Any]]:
    """Rows of (stage, metric, mean A, mean B, B - A, p-value) over the queries both runs scored."""
    report_a, per_a = _load(a)
    report_b, per_b = _load(b)
    if report_a["dataset"] != report_b["dataset"]:
        raise InputError(f"the runs are on different datasets: {report_a['dataset']} vs {report_b['dataset']}")
    rows = []
    stages = [s for s in report_a["stages"] if s in report_b["stages"]]
    stages += [ANSWER] if ANSWER in per_a and ANSWER in per_b else []  # EM, F1, citations, abstention, latency
    for stage in stages:
        for metric, values_a in per_a[stage].items():
            values_b = per_b[stage].get(metric, {})
            common = sorted(set(values_a) & set(values_b))
            if not common:
                continue
            xa = np.array([values_a[q] for q in common])
            xb = np.array([values_b[q] for q in common])
            diff = xb - xa
            p = float(stats.ttest_rel(xb, xa).pvalue) if np.any(diff != 0) else 1.0
            rows.append(
                {
                    "stage": stage,
                    "metric": metric,
                    "a": float(xa.mean()),
                    "b": float(xb.mean()),
                    "diff": float(diff.mean()),
                    "p_value": p,
                    "n": len(common),
                }
            )
    return rows
