"""The options of ``rag adapt``, apart from the training code so that the command line shows their
defaults without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

QuerySource = Literal["ict", "generated", "both"]


@dataclass(frozen=True)
class AdaptOptions:
    # Defaults from docs/adapt.md: a full-width head trained briefly at a low rate gained on both
    # scifact and squad-dev-a; 128-d (ColBERT's width) costs ~0.8 nDCG@10 point, and long training
    # at a high rate overfits the pseudo-queries.
    max_steps: int = 400
    minutes: float = 10.0  # training time bound, resumed runs included (data and re-projection not counted)
    dim: int = 384
    batch_size: int = 16
    negatives: int = 3  # hard negatives per query (plus every other passage of the batch)
    negative_depth: int = 30  # negatives are drawn from this many best of the fused BM25 + dense ranking
    max_passages: int = 20_000  # passages sampled to make pseudo-queries from
    learning_rate: float = 1e-4
    seed: int = 13
    labelled: tuple[tuple[str, str], ...] = ()  # (query text, document id) pairs, optional
    # Pseudo-queries: inverse cloze (seconds for a whole corpus), questions written by the generator
    # for sampled passages (seconds each on a CPU: docs/final-stage.md), or both.
    queries: QuerySource = "ict"
    generated: int = 300  # passages to write a question for (--queries generated|both)
    generation_minutes: float = 60.0  # bound on writing them; a later run resumes
    filter_depth: int = 10  # a written question is kept if BM25 or dense ranks its passage this high
    query_budget: int = 0  # at most this many training queries, 0: all (budget comparisons)
    checkpoint_every_s: float = 60.0
    show_progress: bool = True

    def data_key(self) -> dict[str, Any]:
        """What the training data depends on: a resumed run must agree on all of it."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k
            in (
                "negatives",
                "negative_depth",
                "max_passages",
                "seed",
                "labelled",
                "dim",
                "batch_size",
                "queries",
                "generated",
                "filter_depth",
                "query_budget",
            )
        }
