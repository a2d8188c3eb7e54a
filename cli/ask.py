"""``rag ask``: answer a question from an index, with numbered sources."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from rag.objects import Answer, AnswerEvent, Filters, TokenEvent
from rag.settings import Settings


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    no_generate: Annotated[bool, typer.Option("--no-generate", help="Stop after retrieval.")] = False,
    generator: Annotated[
        str | None, typer.Option(help="local, remote or transformers (default: RAG_GENERATOR).")
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Hits to return.")] = None,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    date_from: Annotated[str | None, typer.Option(help="Only documents dated on or after (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option(help="Only documents dated on or before (YYYY-MM-DD).")] = None,
) -> None:
    """Retrieve, rerank and answer; the answer streams to the terminal unless --json."""
    from rag.index.snapshot import Snapshot  # the index and the models: loaded when the command runs
    from rag.pipeline import Pipeline

    settings = Settings()
    pipeline = Pipeline(Snapshot.load(index, settings), settings)
    filters = Filters(collection, tuple(source or ()), date_from, date_to)
    result: Answer | None = None
    for event in pipeline.stream(question, top_k, filters, generate=not no_generate, generator=generator):
        if isinstance(event, TokenEvent) and not as_json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, AnswerEvent):
            result = event.answer
    assert result is not None
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2, ensure_ascii=False))
        return
    if result.answer:
        typer.echo("")
    if result.status == "uncited":
        typer.echo("(this answer cites no evidence: check it against the sources)")
    elif result.status == "abstained":
        typer.echo("(the retrieved passages do not hold the answer)")
    typer.echo("\nsources:")
    cited = {c.chunk_id for c in result.citations}
    for e in result.evidence:
        mark = "*" if e.chunk_id in cited else " "
        where = e.url or e.source
        page = f", p. {e.page}" if e.page is not None else ""
        typer.echo(f"{mark}[{e.number}] {e.title}{page} ({e.date or 'undated'}) {where}  doc={e.doc_id}")
    timing = ", ".join(
        f"{k} {v:.0f} ms"
        for k, v in result.timings_ms.items()
        if k in ("encode", "retrieval_total", "first_token", "total")
    )
    typer.echo(f"\n{timing}", err=True)
