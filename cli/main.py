"""``rag``: one console script; each area adds its subcommands here."""

from __future__ import annotations

import sys

import typer

from cli.adapt import adapt
from cli.ask import ask
from cli.eval_cmd import eval_app
from cli.serve import llm_server, mcp, serve, ui
from indexer.cli import index_app
from rag.errors import RagError

app = typer.Typer(
    help="Hybrid RAG with late-interaction reranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(index_app, name="index")
app.command()(ask)
app.command()(adapt)
app.add_typer(eval_app, name="eval")
app.command()(serve)
app.command(name="llm-server")(llm_server)
app.command()(mcp)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(ui)


def main() -> None:
    """Entry point: project errors become one clear line on stderr and exit status 2."""
    try:
        app()
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: the index is unchanged unless a commit had already finished", file=sys.stderr)
        sys.exit(130)
