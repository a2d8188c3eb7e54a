"""Answer scores: EM and token F1 as in the official SQuAD v1.1 evaluation script, citation accuracy,
abstention with the gold documents left out, latency and tokens."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from eval.datasets import Query
from rag.generate.answer_text import answer_key_text
from rag.objects import Answer, Retrieval
from rag.pipeline import Pipeline, final_answer

ANSWER_K = 5  # answer recall looks at the top 5 passages

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in gold))


def _f1(prediction: str, truth: str) -> float:
    pred_tokens, true_tokens = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(true_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: Sequence[str]) -> float:
    """Max token F1 over the gold answers."""
    return max((_f1(prediction, g) for g in gold), default=0.0)


def answer_in_evidence(gold: Sequence[str], passages: Sequence[str]) -> float:
    """1.0 if some normalised gold answer occurs in some normalised passage (answer recall)."""
    normalised = [f" {normalize_answer(p)} " for p in passages]
    return float(any(f" {normalize_answer(g)} " in p for g in gold if normalize_answer(g) for p in normalised))


# Retrieval for answers goes this many hits deeper, so that the evidence with the gold documents left
# out (abstention) still has as many passages as the evidence with them.
ABSTENTION_SPARE = 5


def cited_correctly(answer: Answer, gold: Sequence[str]) -> bool:
    """The answer cites a passage that contains a gold answer."""
    text = {h.chunk_id: h.text for h in answer.hits}
    cited = [text.get(c.chunk_id, "") for c in answer.citations]
    return bool(cited) and bool(answer_in_evidence(gold, cited))


def answer_record(
    pipeline: Pipeline,
    retrieval: Retrieval,
    query: Query,
    qrels: Mapping[str, int],
    started: float,
    abstention: bool = True,
) -> dict[str, Any]:
    """One question answered as the service answers it (the top ``top_k`` hits), and with ``abstention``
    again without any passage of its gold documents: scores, citation, timing and token counts."""
    top_k = pipeline.settings.top_k
    answer = final_answer(pipeline.stream_answer(replace(retrieval, hits=retrieval.hits[:top_k]), start=started))
    record = {
        "prediction": answer.answer,
        "status": answer.status,
        "em": exact_match(_bare(answer), query.answers),
        "f1": token_f1(_bare(answer), query.answers),
        "cited": bool(answer.citations),
        "citation_correct": cited_correctly(answer, query.answers),
        # model: as the model cited; matched: re-cited to the evidence that holds it; selected: marginalisation
        "cited_how": answer.citations[0].how if answer.citations else None,
        "first_token_ms": answer.timings_ms.get("first_token"),
        "total_ms": answer.timings_ms.get("total"),
        "prompt_tokens": answer.prompt_tokens,
        "answer_tokens": answer.answer_tokens,
        "generator": answer.generator,
        "answerable_log_odds": answer.answerable_log_odds,
        "retrieval_confidence": answer.retrieval_confidence,
    }
    if abstention:
        # as if the collection lacked the gold documents: their passages gone from the hits and from every
        # stage's ranking, so retrieval's confidence is not measured against a gold passage left out
        unanswerable = final_answer(pipeline.stream_answer(without_gold(pipeline, retrieval, qrels, top_k)))
        record.update(
            without_gold_prediction=unanswerable.answer,
            without_gold_abstained=unanswerable.status == "abstained",
            without_gold_total_ms=unanswerable.timings_ms.get("total"),
            without_gold_log_odds=unanswerable.answerable_log_odds,
            without_gold_retrieval_confidence=unanswerable.retrieval_confidence,
        )
    return record


def without_gold(pipeline: Pipeline, retrieval: Retrieval, qrels: Mapping[str, int], top_k: int) -> Retrieval:
    """``retrieval`` without any passage of the question's gold documents, its top ``top_k`` hits kept."""
    gold_docs = [doc for doc, grade in qrels.items() if grade > 0]
    snapshot = pipeline.snapshot
    collections = {h.collection for h in retrieval.hits}
    gold = {
        c
        for name in collections
        for ids in snapshot.store.live_chunk_ids(name, gold_docs, snapshot.generation).values()
        for c in ids
    }
    left = retrieval.without(gold)
    return replace(left, hits=left.hits[:top_k])


def _bare(answer: Answer) -> str:
    """The answer scored as SQuAD scores it: its citation marks are not part of the answer."""
    return answer_key_text(answer.answer)


def _percentiles(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"p50": None, "p95": None}
    return {"p50": float(np.percentile(present, 50)), "p95": float(np.percentile(present, 95))}


def score_answers(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over the questions answered: EM, F1, citations, abstention, latency and tokens."""
    recall = float(np.mean([a["answer_recall"] for a in answers])) if answers else None
    generated = [a for a in answers if "em" in a]
    if not generated:
        return {f"answer_recall@{ANSWER_K}": recall, "n": 0, "n_answer_recall": len(answers)}
    cited = [a for a in generated if a["cited"]]

    def mean(key: str, rows: Sequence[Mapping[str, Any]] = generated) -> float | None:
        return float(np.mean([float(a[key]) for a in rows])) if rows else None

    return {
        f"answer_recall@{ANSWER_K}": recall,
        "em": mean("em"),
        "f1": mean("f1"),
        "cited": mean("cited"),  # share of answers that cite some evidence
        "citation_accuracy": mean("citation_correct", cited),  # of those, share citing a gold-bearing passage
        "citation_accuracy_all": mean("citation_correct"),  # over every answer
        # of the citing answers, the share re-cited to the evidence that holds them (rows before stop 48: 0)
        "cited_matched": float(np.mean([a.get("cited_how") == "matched" for a in cited])) if cited else None,
        "abstained_with_gold": float(np.mean([a["status"] == "abstained" for a in generated])),
        # share "I don't know" with the gold documents removed
        "abstention": mean("without_gold_abstained", [a for a in generated if "without_gold_abstained" in a]),
        "first_token_ms": _percentiles([a["first_token_ms"] for a in generated]),
        "total_ms": _percentiles([a["total_ms"] for a in generated]),
        "prompt_tokens": _percentiles([a["prompt_tokens"] for a in generated]),
        "answer_tokens": _percentiles([a["answer_tokens"] for a in generated]),
        "generators": sorted({str(a["generator"]) for a in generated}),
        "n": len(generated),
        "n_answer_recall": len(answers),
    }


def per_query_answers(answers: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Each answer metric by question id, for ``rag eval compare``."""
    generated = [a for a in answers if "em" in a]
    return {
        metric: {a["id"]: float(a[key]) for a in generated if a.get(key) is not None}
        for metric, key in (
            ("em", "em"),
            ("f1", "f1"),
            ("citation_correct", "citation_correct"),
            ("abstention", "without_gold_abstained"),
            ("first_token_ms", "first_token_ms"),
            ("total_ms", "total_ms"),
        )
    }
