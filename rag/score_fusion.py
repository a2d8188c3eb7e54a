"""Score fusion over one candidate set: each path's scores standardised, then summed (CombSUM of z-scores).

RRF keeps only ranks, so a passage that one path scores far above the rest counts as much as one that
barely leads. Standardising each path's scores over the candidates it returned (mean 0, unit spread)
keeps those margins and puts cosine, BM25 and MaxSim on one scale. A candidate a path did not return
takes that path's lowest standardised score: it scored at most that. Measured against RRF and the
MaxSim modes in docs/final-stage.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rag.fusion import Fused, Id

Ranking = Sequence[tuple[Id, float]]  # (row or chunk id, score), best first


def standardised(ranking: Ranking[Id]) -> dict[Id, float]:
    """Each row's score as (score - mean) / standard deviation over the ranking; all 0 when the
    scores do not spread."""
    if not ranking:
        return {}
    scores = np.fromiter((s for _, s in ranking), np.float64, len(ranking))
    spread = float(scores.std())
    z = (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
    return {row: float(v) for (row, _), v in zip(ranking, z, strict=True)}


def score_fusion(
    rankings: Mapping[str, Ranking[Id]],
    candidates: Sequence[Id],
    weights: Mapping[str, float] | None = None,
) -> list[Fused[Id]]:
    """``score(d) = sum_p w_p * z_p(d)`` over ``candidates``, best first; ``contributions`` holds each
    path's weighted share. Ties keep the candidates' order."""
    standard = {path: standardised(ranking) for path, ranking in rankings.items()}
    floor = {path: min(z.values(), default=0.0) for path, z in standard.items()}
    fused: list[tuple[float, int, Id, dict[str, float]]] = []
    for position, row in enumerate(candidates):
        shares = {
            path: (1.0 if weights is None else float(weights.get(path, 1.0))) * z.get(row, floor[path])
            for path, z in standard.items()
        }
        fused.append((-sum(shares.values()), position, row, shares))
    fused.sort(key=lambda item: (item[0], item[1]))
    return [Fused(row, -negated, shares) for negated, _, row, shares in fused]
