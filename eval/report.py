"""``report.md`` tables and PNG plots from a run's report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.metrics import METRICS
from rag.objects import Stage

RAW = Stage.MAXSIM_RAW


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {report['dataset']} ({report['n_queries']} queries)", ""]
    lines.append("| stage | " + " | ".join(METRICS) + " | p50 ms | p95 ms |")
    lines.append("|---|" + "---|" * (len(METRICS) + 2))
    for stage, values in report["stages"].items():
        cells = [f"{values[m]:.4f}" for m in METRICS]
        lat = values["latency_ms"]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {lat['p50']:.1f} | {lat['p95']:.1f} |")
    lines += ["", f"Final stage (what the default pipeline returns): `{report['final_stage']}`.", ""]
    lines += _mode_lines(report.get("maxsim_mode"))
    adapt = report.get("adapt")
    if adapt:
        lines += [
            f"Adapted ColBERT head (`rag adapt`, corpus only): {adapt['steps']} steps on {adapt['examples']} "
            f"pseudo-queries, loss {adapt['loss_first']:.3f} → {adapt['loss_last']:.3f}; data {adapt['data_s']:.0f} s, "
            f"training {adapt['train_s']:.0f} s, re-projection {adapt['reproject_s']:.0f} s on this CPU. "
            f"`{RAW}` reranks the same candidates with the encoder's raw token vectors.",
            "",
        ]
    answers = report.get("answers")
    if answers:
        lines += ["| answers | value |", "|---|---|"]
        for key, value in answers.items():
            lines.append(f"| {key} | {_cell(value)} |")
        lines.append("")
    lines.append(
        f"Index build {report['timing_s']['index_build']:.0f} s, whole run {report['timing_s']['total']:.0f} s. "
        f"Latency: {report['config']['latency']}."
    )
    return "\n".join(lines) + "\n"


def _mode_lines(mode: dict[str, Any] | None) -> list[str]:
    """Which MaxSim mode ran and why: the setting, and the index's label-free choice with its signal."""
    if not mode:
        return []
    line = f"MaxSim mode in use: `{mode['in_use']}` (setting `{mode['setting']}`"
    if "weight_in_use" in mode:  # reports from before the weight was chosen per index
        line += f"), MaxSim weight {mode['weight_in_use']:g} (setting `{mode['weight_setting']}`"
    chosen = mode.get("chosen")
    if chosen is None:
        line += "; the index has no recorded choice)." if mode["setting"] == "auto" else ")."
        return [line, ""]
    scores = ", ".join(f"{m} {v:.4f}" for m, v in chosen["ndcg"].items())
    picked = f"{chosen['mode']}` at MaxSim weight {chosen.get('maxsim_weight', 1.0):g}"
    return [
        line + f"; chosen for this index: `{picked}). Why: {chosen['reason']}. "
        f"nDCG@10 on its {chosen['queries']} held-out pseudo-queries: {scores} ({chosen['seconds']:.0f} s).",
        "",
    ]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def write_report(report: dict[str, Any], latencies: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "report.md").write_text(markdown(report))
    stages = list(report["stages"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(METRICS)
    for i, metric in enumerate(METRICS):
        xs = [s + i * width for s in range(len(stages))]
        ax.bar(xs, [report["stages"][st][metric] for st in stages], width, label=metric)
    ax.set_xticks([s + width * (len(METRICS) - 1) / 2 for s in range(len(stages))], stages)
    ax.set_ylim(0, 1)
    ax.set_title(f"{report['dataset']}: retrieval quality per stage")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics_per_stage.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.boxplot([latencies[s] for s in stages], showfliers=False)
    ax.set_xticks(range(1, len(stages) + 1), stages)
    ax.set_ylabel("ms from the question (query encoding included)")
    ax.set_title(f"{report['dataset']}: latency per stage, one query at a time")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    plt.close(fig)
