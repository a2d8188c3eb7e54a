"""``rag adapt``: train the index's ColBERT head on its own corpus (no labels needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast, get_args

import typer

from eval.datasets import read_qrels, read_queries
from indexer.adapt_options import AdaptOptions, QuerySource
from rag.errors import InputError
from rag.settings import Settings

DEFAULTS = AdaptOptions()


def labelled_pairs(path: Path, split: str) -> tuple[tuple[str, str], ...]:
    """(query text, document id) for every relevant pair of a BEIR-layout directory's split
    (``queries.jsonl`` and ``qrels/SPLIT.tsv``; no corpus needed)."""
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    queries_file = path / "queries.jsonl"
    if not queries_file.exists():
        raise InputError(f"{path}: no queries.jsonl for the labelled pairs")
    texts = {q.id: q.text for q in read_queries(queries_file)}
    return tuple((texts[q], doc) for q, docs in qrels.items() if q in texts for doc, grade in docs.items() if grade > 0)


def adapt(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory to adapt.")],
    max_steps: Annotated[int, typer.Option(help="Training steps, resumed runs included.")] = DEFAULTS.max_steps,
    minutes: Annotated[
        float, typer.Option(help="Training time bound in minutes, resumed runs included.")
    ] = DEFAULTS.minutes,
    dim: Annotated[int, typer.Option(help="Dimension of the ColBERT projection.")] = DEFAULTS.dim,
    batch_size: Annotated[int, typer.Option(help="Queries per step.")] = DEFAULTS.batch_size,
    negatives: Annotated[int, typer.Option(help="Mined hard negatives per query.")] = DEFAULTS.negatives,
    max_passages: Annotated[
        int, typer.Option(help="Passages sampled to make pseudo-queries from.")
    ] = DEFAULTS.max_passages,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = DEFAULTS.learning_rate,
    labelled: Annotated[
        Path | None,
        typer.Option(help="Optional BEIR-layout directory (queries.jsonl, qrels/SPLIT.tsv) of labelled pairs."),
    ] = None,
    split: Annotated[str, typer.Option(help="Qrels split of --labelled.")] = "train",
    queries: Annotated[
        str,
        typer.Option(
            help="Pseudo-queries: 'ict' (inverse cloze), 'generated' (questions the generator writes for "
            "sampled passages, InPars-style) or 'both'."
        ),
    ] = DEFAULTS.queries,
    generated: Annotated[
        int, typer.Option(help="Passages to write a question for (--queries generated|both).")
    ] = DEFAULTS.generated,
    generation_minutes: Annotated[
        float, typer.Option(help="Time bound on writing questions; a later run resumes.")
    ] = DEFAULTS.generation_minutes,
    filter_depth: Annotated[
        int, typer.Option(help="Keep a written question if BM25 or dense ranks its passage this high.")
    ] = DEFAULTS.filter_depth,
    query_budget: Annotated[
        int, typer.Option(help="At most this many training queries (0: all).")
    ] = DEFAULTS.query_budget,
    seed: Annotated[int, typer.Option(help="Seed of sampling and training.")] = DEFAULTS.seed,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a ColBERT projection on the index's passages and re-project its token vectors with it.

    Interrupted runs resume from the last checkpoint; the query path uses the new head at once."""
    from indexer.adapt import adapt_index  # torch and the index: loaded when the command runs

    if queries not in get_args(QuerySource):
        raise InputError(f"--queries {queries!r}: use 'ict', 'generated' or 'both'")
    if generated < 0 or generation_minutes <= 0 or filter_depth < 1 or query_budget < 0:
        raise InputError(
            "--generated and --query-budget must be 0 or more, --generation-minutes and --filter-depth above 0"
        )
    options = AdaptOptions(
        max_steps=max_steps,
        minutes=minutes,
        dim=dim,
        batch_size=batch_size,
        negatives=negatives,
        max_passages=max_passages,
        learning_rate=learning_rate,
        seed=seed,
        queries=cast(QuerySource, queries),
        generated=generated,
        generation_minutes=generation_minutes,
        filter_depth=filter_depth,
        query_budget=query_budget,
        labelled=labelled_pairs(labelled, split) if labelled else (),
        show_progress=not quiet,
    )
    result = adapt_index(index, Settings(), options)
    typer.echo(
        f"generation {result.generation}: head {result.model_dir.relative_to(index)} trained {result.steps} steps "
        f"on {result.examples} pseudo-queries{' (resumed)' if result.resumed else ''}; loss {result.first_loss:.3f} "
        f"-> {result.last_loss:.3f}; data {result.data_seconds:.0f} s, training {result.train_seconds:.0f} s, "
        f"re-projection {result.commit_seconds:.0f} s"
    )
    if queries != "ict":
        now, reused, usable, kept = result.writing
        typer.echo(
            f"written questions: {now} written now, {reused} reused, {usable} usable, {kept} kept by the "
            f"retrieval filter (top {filter_depth})"
        )
    typer.echo("training queries: " + ", ".join(f"{n} {name}" for name, n in result.sources.items()))
    if result.final_stage is not None:
        typer.echo(f"final stage: {result.final_stage.mode} ({result.final_stage.reason})")
