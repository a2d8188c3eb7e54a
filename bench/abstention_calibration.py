"""Would a reference confidence of each collection's own let the answerability rule abstain more?

    python -m bench.abstention_calibration [--signals abstention_signals] [--result abstention_calibration]

The rule is log-odds + weight x (confidence - reference) >= threshold, with one reference for every
collection (rag/answerability.py). Retrieval's confidence depends on the collection: its median over
questions whose evidence holds a relevant document is 12.3 on scifact and 7.6 on cisi, so a weight that
helps on squad-dev-a refuses most of cisi's questions, and bench/abstention_signals.py bounds it by
those refusals. This replays the rows that benchmark stored (no model runs) with each collection's own
reference: its median confidence over those questions, which moves a collection's confidences by the
difference between the references. The references here are measured with relevance labels; a service
would have to estimate them without (from the questions it is asked, or from pseudo-questions), so
this bounds what such a calibration could give, it does not build one.

For each way of setting the reference: the rule chosen as bench/abstention_signals.py chooses it (best
0.8 F1 + 0.2 abstention on the choosing questions, refusing at most 0.05 more of scifact's and cisi's
judged questions than the log-odds alone), and the rules with the fitted weight whose threshold gives
abstention 0.6 and 0.8 on the choosing questions. Outcomes on the reported questions; refusals on the
judged questions each rule was chosen on and on the next ones. Prints a table and writes
bench/results/<NAME>.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.abstention_signals import chosen_rule, combined, outcome, refused
from bench.common import RESULTS, print_table, write_result

WEIGHTS = tuple(round(0.01 * i, 2) for i in range(51))  # 0 to 0.5: wider than the one-reference search
ABSTENTION_TARGETS = (0.6, 0.8)


def own_reference(collection: dict[str, Any], reference: float) -> dict[str, Any]:
    """``collection`` as the rule sees it with its own reference (its median confidence) in place of
    ``reference``: each confidence moved by the difference."""
    shift = reference - collection["confidence_p50"]
    return {**collection, "confidences": [c + shift for c in collection["confidences"]]}


def threshold_for(rows: Sequence[dict[str, Any]], weight: float, abstention: float) -> float:
    """The least threshold that abstains on ``abstention`` of the rows without their gold document."""
    scores = np.sort(combined([r for r in rows if r["label"] == 0], weight))
    return float(scores[int(np.ceil(abstention * len(scores))) - 1]) + 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", default="abstention_signals", help="bench/results/NAME.json to replay")
    parser.add_argument("--result", default="abstention_calibration")
    args = parser.parse_args()
    stored = json.loads((RESULTS / f"{args.signals}.json").read_text())
    choose, report = stored["rows"]["choose"], stored["rows"]["report"]
    reference = stored["median_answerable_confidence"]  # squad-dev-a's own: the choosing questions'
    before, fitted_weight = 1.0, stored["weight"]
    ways: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "one reference": lambda c: c,
        "each collection's own": lambda c: own_reference(c, reference),
    }
    lines = []
    for way, seen in ways.items():
        chosen_on = [seen(c) for c in stored["collections"]["chosen_on"]]
        checked_on = [seen(c) for c in stored["collections"]["checked_on"]]
        rules = {"chosen, refusals bounded": chosen_rule(choose, chosen_on, before, WEIGHTS)}
        for target in ABSTENTION_TARGETS:
            rules[f"fitted weight, abstention {target} chosen"] = (
                fitted_weight,
                threshold_for(choose, fitted_weight, target),
            )
        for name, (weight, threshold) in rules.items():
            line: dict[str, Any] = {"reference": way, "rule": name, "weight": weight, "threshold": threshold}
            line.update(outcome(combined(report, weight), report, threshold))
            for first, then in zip(chosen_on, checked_on, strict=True):
                line[f"{first['collection']}_refused"] = refused(first, weight, threshold)
                line[f"{then['collection']}_refused_next"] = refused(then, weight, threshold)
            lines.append(line)
    references = {c["collection"]: c["confidence_p50"] for c in stored["collections"]["chosen_on"]}
    print(f"references: squad-dev-a {reference:.2f}, " + ", ".join(f"{k} {v:.2f}" for k, v in references.items()))
    print_table(lines, list(lines[0]))
    write_result(
        args.result,
        {"signals": args.signals, "references": {"squad-dev-a": reference, **references}, "rules": lines},
    )


if __name__ == "__main__":
    main()
