"""Whether to answer: the generator's yes/no log-odds that the evidence holds the answer, shifted by how
far retrieval's best candidate stands out from the rest.

The log-odds alone tell answerable evidence from evidence without its gold document with AUC 0.76 on
squad-dev-a; the best candidate's standardised-score sum over the dense, BM25 and MaxSim paths (the
``scores`` final stage's top) with AUC 0.80; the two summed, 0.85 on questions the weight was not fitted
on (bench/abstention_signals.py, docs/benchmarks.md). Retrieval's share is measured from a reference
confidence, so a typical retrieval leaves the log-odds threshold as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rag.objects import Stage
from rag.score_fusion import score_fusion

CONFIDENCE_PATHS = (Stage.DENSE, Stage.BM25, Stage.MAXSIM)


def retrieval_confidence(
    rankings: Mapping[str, Sequence[tuple[str, float]]], weights: Mapping[str, float]
) -> float | None:
    """The best fused candidate's sum of weighted standardised scores over the three paths, the
    candidates being the RRF list's; None when MaxSim did not run (the ``off`` final stage) or nothing
    was found. Whatever the final stage in use, the confidence is this one, the scale its weight was
    fitted on."""
    if any(path not in rankings for path in (*CONFIDENCE_PATHS, Stage.RRF)) or not rankings[Stage.RRF]:
        return None
    paths: dict[str, Sequence[tuple[str, float]]] = {path: rankings[path] for path in CONFIDENCE_PATHS}
    fused = score_fusion(paths, [chunk for chunk, _ in rankings[Stage.RRF]], weights)
    return fused[0].score


def answerability_score(log_odds: float, confidence: float | None, weight: float, reference: float) -> float:
    """``log_odds + weight * (confidence - reference)``: the log-odds alone when there is no confidence."""
    return log_odds if confidence is None else log_odds + weight * (confidence - reference)
