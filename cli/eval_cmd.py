"""``rag eval run`` and ``rag eval compare``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from indexer.adapt_options import AdaptOptions
from rag.settings import Settings

ADAPT = AdaptOptions()
eval_app = typer.Typer(help="Batch evaluation on BEIR-layout datasets.", no_args_is_help=True)


@eval_app.command("run")
def run(
    dataset: Annotated[Path, typer.Option(help="BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/).")],
    out: Annotated[Path, typer.Option(help="Directory for report.json, report.md, plots.")],
    index: Annotated[
        Path | None, typer.Option(help="Index to use (built there if missing; default OUT/index).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Evaluate a seeded random sample of N queries (0: all).")] = 0,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="Also answer each question (EM, F1, citations, latency), and again without its gold "
            "documents (abstention).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 13,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    adapt: Annotated[
        bool, typer.Option("--adapt", help="First train the index's ColBERT head on the corpus (`rag adapt`).")
    ] = False,
    adapt_minutes: Annotated[float, typer.Option(help="Training time bound of --adapt.")] = ADAPT.minutes,
    adapt_steps: Annotated[int, typer.Option(help="Training steps of --adapt.")] = ADAPT.max_steps,
) -> None:
    """Evaluate every stage (bm25, dense, rrf, MaxSim) on the queries that have qrels."""
    from eval.report import markdown  # the index, the models and ranx: loaded when the command runs
    from eval.runner import EvalOptions, run_eval

    adapt_options = (
        replace(ADAPT, minutes=adapt_minutes, max_steps=adapt_steps, show_progress=not quiet) if adapt else None
    )
    report = run_eval(
        EvalOptions(dataset, out, index, limit, generate, seed, show_progress=not quiet, adapt=adapt_options),
        Settings(),
    )
    typer.echo(markdown(report))
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'} and plots", err=True)


@eval_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="Run directory A (the baseline).")],
    b: Annotated[Path, typer.Argument(help="Run directory B.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per-metric difference B - A with a paired t-test over the queries both runs scored."""
    from eval.compare import compare_runs

    rows = compare_runs(a, b)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'stage':<12} {'metric':<11} {'A':>8} {'B':>8} {'B-A':>8} {'p':>8}  n")
    for r in rows:
        mark = " *" if r["p_value"] < 0.05 else ""
        typer.echo(
            f"{r['stage']:<12} {r['metric']:<11} {r['a']:8.4f} {r['b']:8.4f} {r['diff']:+8.4f} "
            f"{r['p_value']:8.4f}  {r['n']}{mark}"
        )
    typer.echo("* p < 0.05 (paired t-test)")
