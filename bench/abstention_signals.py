"""When to say "I don't know": signals that tell answerable evidence from evidence without its gold
document, and the answerability rule's weight and threshold, measured on stored answers.

    python -m bench.abstention_signals [--answers eval/results/squad-dev-a-generate-150-copy/answers.jsonl] \
        [--choose-on eval/results/squad-dev-a-generate/answers.jsonl] [--index data/squad-dev-a-index] \
        [--result abstention_signals]

A run of ``rag eval run --generate`` stores, per question, its answer and the generator's answerability
log-odds with its retrieved evidence, and the log-odds again without any passage of its gold document.
This retrieves each question again, leaves the gold passages out as the evaluation does (from the hits
and from every stage's ranking: rag/objects.py ``Retrieval.without``), and computes signals known before
the answer: retrieval's confidence (rag/answerability.py), each path's best score among the evidence,
and how much of the question the evidence's highlights cover.

The rule is log-odds + weight x confidence against a threshold. Its weight (0 to 0.2) and threshold
are those with the best 0.8 F1 + 0.2 abstention (answerable questions taken as four in five of those
asked) on the ``--choose-on`` questions that are not in ``--answers``, among the rules that refuse at
most 0.05 more than the log-odds alone of ``--judged`` questions of each of ``--collections`` whose
evidence holds a relevant document; the next ``--judged`` such questions check it. The logistic fit's
weight, unbounded, is shown beside it. AUCs and rules are reported on ``--answers``, where an answerable
question a rule abstains on scores 0 and one it answers keeps its stored answer's EM and F1. Prints
tables and writes bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.common import DATASETS, ROOT, print_table, read_jsonl, write_result
from eval.answers import ABSTENTION_SPARE, without_gold
from eval.datasets import Dataset, load_dataset
from eval.runner import ensure_index
from rag.encode.encoder import Encoder
from rag.generate.evidence import highlight
from rag.objects import Hit, Retrieval, Stage
from rag.pipeline import Pipeline, final_answer
from rag.settings import Settings

REFUSAL_MARGIN = 0.05  # how many more of another collection's answerable questions a rule may refuse
WEIGHTS = tuple(round(0.01 * i, 2) for i in range(21))  # retrieval's weight: 0 to 0.2


def coverage(terms: set[str], texts: Sequence[str], tokenize: Callable[[str], list[str]]) -> float:
    """The largest share of the question's terms that one of ``texts`` holds."""
    if not terms:
        return 0.0
    return max((len(terms & set(tokenize(t))) / len(terms) for t in texts), default=0.0)


def signals(pipeline: Pipeline, retrieval: Retrieval) -> dict[str, float]:
    """What is known of a retrieval before an answer: its confidence, each path's best score among the
    evidence (absent from a path: that path's worst score in the ranking), the question's coverage."""
    tokenize = pipeline.snapshot.bm25_tokenize
    terms = set(tokenize(retrieval.question))
    shown: list[Hit] = retrieval.hits[: pipeline.settings.evidence_max]
    sentences = pipeline.settings.evidence_highlight_sentences

    def best(stage: Stage) -> float:
        values = [h.scores[stage] for h in shown if stage in h.scores]
        ranking = retrieval.rankings.get(stage) or [("", 0.0)]
        return max(values) if values else ranking[-1][1]

    confidence = pipeline.retrieval_confidence(retrieval)
    return {
        "confidence": float("nan") if confidence is None else confidence,
        "dense_best": best(Stage.DENSE),
        "bm25_best": best(Stage.BM25),
        "maxsim_best": best(Stage.MAXSIM),
        "coverage": coverage(
            terms, [highlight(dict.fromkeys(terms, 1.0), h.text, tokenize, sentences) for h in shown], tokenize
        ),
    }


def question_rows(pipeline: Pipeline, dataset: Dataset, stored: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two rows per stored answer: answerable (label 1) and without its gold documents (label 0)."""
    rows = []
    for question, row in enumerate(stored):
        retrieval = pipeline.retrieve(row["question"], pipeline.settings.top_k + ABSTENTION_SPARE)
        left = without_gold(pipeline, retrieval, dataset.qrels.get(row["id"], {}), pipeline.settings.top_k)
        answerable = {"label": 1, "log_odds": row["answerable_log_odds"], "em": row["em"], "f1": row["f1"]}
        unanswerable = {"label": 0, "log_odds": row["without_gold_log_odds"], "em": 0.0, "f1": 0.0}
        for found, base in ((retrieval, answerable), (left, unanswerable)):
            rows.append({"question": question, **base, **signals(pipeline, found)})
    return rows


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(an answerable row scores above an unanswerable one), ties counted half."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    return float((positive[:, None] > negative[None, :]).mean() + 0.5 * (positive[:, None] == negative[None, :]).mean())


def fitted(columns: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression()).fit(columns, labels)


def outcome(scores: np.ndarray, rows: Sequence[dict[str, Any]], threshold: float) -> dict[str, float]:
    """Abstaining below ``threshold``: abstention on the unanswerable rows, the share of answerable ones
    answered, and their EM and F1 (0 where abstained)."""
    labels = np.array([r["label"] for r in rows])
    answered = scores[labels == 1] >= threshold
    em = np.array([r["em"] for r in rows])[labels == 1]
    f1 = np.array([r["f1"] for r in rows])[labels == 1]
    return {
        "abstention": float((scores[labels == 0] < threshold).mean()),
        "answered": float(answered.mean()),
        "em": float(np.where(answered, em, 0.0).mean()),
        "f1": float(np.where(answered, f1, 0.0).mean()),
    }


def combined(rows: Sequence[dict[str, Any]], weight: float) -> np.ndarray:
    """Each row's log-odds + ``weight`` x retrieval's confidence."""
    return np.array([r["log_odds"] + weight * r["confidence"] for r in rows])


def refused(collection: dict[str, Any], weight: float, threshold: float) -> float | None:
    """The share of a collection's judged questions (relevant evidence found) that a rule refuses."""
    if not collection["odds"]:
        return None
    score = np.array(collection["odds"]) + weight * np.array(collection["confidences"])
    return float(np.mean(score < threshold))


def chosen_rule(
    rows: Sequence[dict[str, Any]], collections: Sequence[dict[str, Any]], before: float, weights: Sequence[float]
) -> tuple[float, float]:
    """The (weight, threshold) of the best 0.8 F1 + 0.2 abstention on ``rows`` among those that refuse
    at most :data:`REFUSAL_MARGIN` more of each other collection's questions than the log-odds alone at
    ``before``; ties go to the smaller weight, then threshold."""
    limits = [(c, (refused(c, 0.0, before) or 0.0) + REFUSAL_MARGIN) for c in collections]
    best: tuple[float, float, float] | None = None
    for weight in weights:
        scores = combined(rows, weight)
        for threshold in np.round(np.arange(0.0, 4.5, 0.02), 2):
            if any((refused(c, weight, threshold) or 0.0) > limit + 1e-9 for c, limit in limits):
                continue
            o = outcome(scores, rows, float(threshold))
            utility = 0.8 * o["f1"] + 0.2 * o["abstention"]
            if best is None or utility > best[0] + 1e-12:
                best = (utility, weight, float(threshold))
    return (0.0, before) if best is None else (best[1], best[2])


def judged_questions(settings: Settings, name: str, questions: int, judged: int, skip: int = 0) -> dict[str, Any]:
    """A collection's test questions (the first ``questions``) whose top hits hold a relevant document:
    the spread of retrieval's confidence, and for ``judged`` of them after the first ``skip`` the
    confidence and the generator's answerability log-odds (the check alone, no answer)."""
    dataset = load_dataset(DATASETS / name)
    longest = max(len(q.text) for q in dataset.queries)  # cisi has one of 2,023 characters: data, not a request
    settings = settings.model_copy(update={"max_question_chars": max(settings.max_question_chars, longest)})
    snapshot = ensure_index(dataset, ROOT / "data" / f"{name}-index", settings, show_progress=True)
    pipeline = Pipeline(snapshot, settings, Encoder.from_settings(settings, snapshot.params.encoder_model))
    # an infinite threshold abstains once the log-odds are known, before any answer
    check = Pipeline(snapshot, settings.model_copy(update={"answerability_threshold": float("inf")}), pipeline.encoder)
    confidences: list[float] = []
    odds: list[float] = []
    judged_confidences: list[float] = []
    for query in dataset.queries[:questions]:
        retrieval = pipeline.retrieve(query.text)
        relevant = {doc for doc, grade in dataset.qrels.get(query.id, {}).items() if grade > 0}
        confidence = pipeline.retrieval_confidence(retrieval)
        if confidence is None or not any(h.doc_id in relevant for h in retrieval.hits):
            continue
        confidences.append(confidence)
        if len(confidences) > skip and len(odds) < judged:
            odds.append(final_answer(check.stream_answer(retrieval)).answerable_log_odds or 0.0)
            judged_confidences.append(confidence)
    p10, p50, p90 = np.percentile(confidences, [10, 50, 90])
    return {
        "collection": name,
        "questions": len(confidences),
        "confidence_p10": float(p10),
        "confidence_p50": float(p50),
        "confidence_p90": float(p90),
        "judged": len(odds),
        "log_odds_p50": float(np.median(odds)) if odds else None,
        "odds": odds,
        "confidences": judged_confidences,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", default="eval/results/squad-dev-a-generate-150-copy/answers.jsonl")
    parser.add_argument("--choose-on", default="eval/results/squad-dev-a-generate/answers.jsonl")
    parser.add_argument("--index", default="data/squad-dev-a-index")
    parser.add_argument("--result", default="abstention_signals")
    parser.add_argument("--collections", default="scifact,cisi", help="refusals measured on these")
    parser.add_argument("--judged", type=int, default=40, help="questions per collection asked the check")
    args = parser.parse_args()
    settings = Settings()
    dataset = load_dataset(DATASETS / "squad-dev-a")
    snapshot = ensure_index(dataset, ROOT / args.index, settings, show_progress=True)
    pipeline = Pipeline(snapshot, settings, Encoder.from_settings(settings, snapshot.params.encoder_model))
    reported = [r for r in read_jsonl(ROOT / args.answers) if r.get("without_gold_log_odds") is not None]
    held = {r["id"] for r in reported}
    choosing = [
        r
        for r in read_jsonl(ROOT / args.choose_on)
        if r["id"] not in held and r.get("without_gold_log_odds") is not None
    ]
    choose_rows, report_rows = question_rows(pipeline, dataset, choosing), question_rows(pipeline, dataset, reported)
    names = ["log_odds", "confidence", "dense_best", "bm25_best", "maxsim_best", "coverage"]

    def matrix(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> np.ndarray:
        return np.array([[r[c] for c in columns] for r in rows], dtype=float)

    choose_labels = np.array([r["label"] for r in choose_rows])
    report_labels = np.array([r["label"] for r in report_rows])
    aucs = [{"signal": n, "auc": auc(matrix(report_rows, [n])[:, 0], report_labels)} for n in names]
    for combination in [["log_odds", n] for n in names[1:]] + [names]:
        model = fitted(matrix(choose_rows, combination), choose_labels)
        scores = model.decision_function(matrix(report_rows, combination))
        aucs.append({"signal": " + ".join(combination) + " (fitted on the others)", "auc": auc(scores, report_labels)})

    # The rule: log_odds + weight * confidence, the weight from the two-signal fit.
    model = fitted(matrix(choose_rows, ["log_odds", "confidence"]), choose_labels)
    scale = model.named_steps["standardscaler"].scale_
    odds_coef, confidence_coef = model.named_steps["logisticregression"].coef_[0] / scale
    weight = float(confidence_coef / odds_coef)

    names_of = [n for n in args.collections.split(",") if n]
    choosing_sets = [judged_questions(settings, n, 300, args.judged) for n in names_of]
    checking_sets = [judged_questions(settings, n, 300, args.judged, skip=args.judged) for n in names_of]
    before = settings.answerability_threshold

    def rule(label: str, w: float, threshold: float) -> dict[str, Any]:
        """A rule's outcome on the reported squad-dev-a questions, and the share of other collections'
        questions with relevant evidence it refuses: those it was chosen on, and the next ones."""
        line: dict[str, Any] = {"rule": label, "weight": w, "threshold": threshold}
        line.update(outcome(combined(report_rows, w), report_rows, threshold))
        for chosen_on, checked in zip(choosing_sets, checking_sets, strict=True):
            line[f"{chosen_on['collection']}_refused"] = refused(chosen_on, w, threshold)
            line[f"{checked['collection']}_refused_next"] = refused(checked, w, threshold)
        return line

    free = chosen_rule(choose_rows, [], before, [weight])
    alone = chosen_rule(choose_rows, choosing_sets, before, [0.0])
    chosen = chosen_rule(choose_rows, choosing_sets, before, WEIGHTS)
    rules = [
        rule("log-odds >= 1.0 (before)", 0.0, before),
        rule("fitted weight, threshold unconstrained", *free),
        rule("log-odds alone, constrained", *alone),
        rule("chosen: weight and threshold, constrained", *chosen),
    ]
    settings_total = before + settings.answerability_retrieval_weight * settings.answerability_retrieval_reference
    rules.append(rule("the settings in use", settings.answerability_retrieval_weight, settings_total))
    answerable_confidence = [r["confidence"] for r in choose_rows if r["label"] == 1]
    print(
        f"choose on {len(choosing)} questions, report on {len(reported)}; each answerable and without its gold document"
    )
    print_table(aucs, ["signal", "auc"])
    print_table(rules, list(rules[0]))
    print(f"median confidence of answerable questions (choosing set): {np.median(answerable_confidence):.2f}")
    spread = [{k: v for k, v in c.items() if k not in ("odds", "confidences")} for c in choosing_sets]
    print_table(spread, list(spread[0]) if spread else [])
    write_result(
        args.result,
        {
            "answers": args.answers,
            "choose_on": args.choose_on,
            "index": args.index,
            "aucs": aucs,
            "rules": rules,
            "chosen": {"weight": chosen[0], "threshold": chosen[1]},
            "collections": {"chosen_on": choosing_sets, "checked_on": checking_sets},
            "weight": weight,
            "median_answerable_confidence": float(np.median(answerable_confidence)),
            "rows": {"choose": choose_rows, "report": report_rows},
        },
    )


if __name__ == "__main__":
    main()
