"""``rag index build|add|delete|stats|compress|choose-stage|verify``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rag.errors import InputError
from rag.retrieval import FALLBACK_MODE
from rag.settings import Settings

if TYPE_CHECKING:
    from indexer.writer import ChangeSummary
    from rag.index.manifest import FinalStageChoice
    from rag.objects import Document

# The commands import the index, the encoder and evaluation when they run: `rag --help`, a bad option and
# the light commands answer without loading torch, FAISS or ranx (seconds of imports).

index_app = typer.Typer(help="Build and update an index directory.", no_args_is_help=True)

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
InputOption = Annotated[
    Path,
    typer.Option(
        "--input", help="BEIR directory, .jsonl file, a folder, or one .txt/.md/.html/.pdf/.docx/.pptx/.xlsx."
    ),
]
CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection the documents go into.")]
_SKIPS_NAMED = 20  # skipped documents named one by one; the rest are counted
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _report(summary: ChangeSummary, seconds: float) -> None:
    typer.echo(
        f"generation {summary.generation}: {summary.added} added, {summary.replaced} replaced, "
        f"{summary.unchanged} unchanged, {summary.deleted} deleted; "
        f"{summary.chunks_added} passages encoded, {summary.chunks_removed} removed ({seconds:.1f} s)",
        err=True,
    )


def _load(path: Path, quiet: bool) -> list[Document]:
    from indexer.loaders import load_corpus

    if not quiet:
        typer.echo(f"reading {path} ...", err=True)
    corpus = load_corpus(path)
    for why in corpus.skipped[:_SKIPS_NAMED]:
        typer.echo(f"skipped {why}", err=True)
    if len(corpus.skipped) > _SKIPS_NAMED:
        typer.echo(f"... and {len(corpus.skipped) - _SKIPS_NAMED} more skipped", err=True)
    skipped = f", {len(corpus.skipped)} skipped (nothing to index)" if corpus.skipped else ""
    typer.echo(f"{len(corpus.documents)} documents{skipped}", err=True)  # said even with --quiet: data was left out
    return corpus.documents


@index_app.command()
def build(
    input: InputOption,
    index: IndexOption,
    collection: CollectionOption = "default",
    force: Annotated[bool, typer.Option(help="Replace an existing index's documents.")] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            help="With --force: encode every document again with today's settings (encoder, codec, engine) "
            "instead of keeping unchanged ones; on Qdrant into a new collection that the index's alias then names."
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Build an index from scratch (refuses an existing one unless --force)."""
    from indexer.final_stage import record_final_stage
    from indexer.writer import IndexWriter

    settings = Settings()
    if rebuild and not force:
        raise InputError("--rebuild replaces an existing index: give --force with it")
    documents = _load(input, quiet)
    start = time.perf_counter()
    with IndexWriter(index, settings, show_progress=not quiet) as writer:
        if writer.snapshot is not None and not force:
            raise InputError(f"{index} already holds an index; use `rag index add`, or --force")
        summary = writer.replace_all(documents, collection, rebuild=rebuild)
        _report(summary, time.perf_counter() - start)
        _report_choice(record_final_stage(writer, settings, show_progress=not quiet), settings)


@index_app.command()
def add(
    input: InputOption, index: IndexOption, collection: CollectionOption = "default", quiet: QuietOption = False
) -> None:
    """Add documents; a document whose id exists and whose content changed is replaced."""
    from indexer.writer import IndexWriter

    settings = Settings()
    documents = _load(input, quiet)
    start = time.perf_counter()
    with IndexWriter(index, settings, show_progress=not quiet) as writer:
        summary = writer.upsert(documents, collection)
    _report(summary, time.perf_counter() - start)


@index_app.command()
def delete(
    index: IndexOption,
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids.")],
    collection: Annotated[
        str | None,
        typer.Option(help="The documents' collection (needed where an id is in more than one)."),
    ] = None,
) -> None:
    """Delete documents from the store and all three indexes."""
    from indexer.writer import IndexWriter

    start = time.perf_counter()
    with IndexWriter(index, Settings(), show_progress=False) as writer:
        summary = writer.delete(doc_ids, collection)
    _report(summary, time.perf_counter() - start)


@index_app.command()
def stats(index: IndexOption, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts and sizes of the live snapshot."""
    from rag.index.snapshot import Snapshot

    snapshot = Snapshot.load(index, Settings())
    info = snapshot.stats()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"index        {index} (generation {info['generation']})")
    typer.echo(f"documents    {info['documents']}")
    typer.echo(f"chunks       {info['chunks']}")
    if info["deleted_rows"]:
        typer.echo(f"deleted rows {info['deleted_rows']} (tombstones, compacted by the next add)")
    typer.echo(f"token vecs   {info['token_vectors']} ({info['token_codec']}, {info['bytes_per_token_vector']} B each)")
    for part, size in info["bytes"].items():
        typer.echo(f"bytes.{part:<7}{size:>14,}")
    chosen = info["final_stage"]
    if chosen:
        typer.echo(f"final stage  {chosen['mode']}, MaxSim weight {chosen.get('maxsim_weight', 1.0):g}")
    else:
        typer.echo(f"final stage  not chosen (RAG_MAXSIM_MODE=auto uses {FALLBACK_MODE})")


@index_app.command()
def compress(
    index: IndexOption,
    codec: Annotated[str, typer.Option(help="Token-vector codec: float16, binary or pq.")],
    pq_bytes: Annotated[int | None, typer.Option(help="Bytes per token vector for pq (a divisor of dim).")] = None,
) -> None:
    """Store the token vectors with another codec (a new snapshot; no passage is encoded again)."""
    from indexer.writer import IndexWriter

    start = time.perf_counter()
    with IndexWriter(index, Settings(), show_progress=False) as writer:
        before = writer.snapshot.stats() if writer.snapshot is not None else None
        generation = writer.set_codec(codec, pq_bytes)
        after = writer.snapshot.stats() if writer.snapshot is not None else None
    if before is not None and after is not None:
        typer.echo(
            f"generation {generation}: {before['token_codec']} → {after['token_codec']}, "
            f"{before['bytes_per_token_vector']} → {after['bytes_per_token_vector']} bytes per token vector, "
            f"multi-vector {before['bytes']['multivector']:,} → {after['bytes']['multivector']:,} bytes "
            f"({time.perf_counter() - start:.1f} s)",
            err=True,
        )


@index_app.command()
def reweight(index: IndexOption) -> None:
    """Qdrant engine: write every BM25 weight again with today's mean passage length (exact BM25 again;
    a new snapshot, readers of the live one unaffected)."""
    from indexer.writer import IndexWriter

    start = time.perf_counter()
    with IndexWriter(index, Settings(), show_progress=False) as writer:
        before = writer.snapshot.params.engine.bm25_avgdl if writer.snapshot is not None else 0.0
        generation = writer.reweight_bm25()
        assert writer.snapshot is not None
        after = writer.snapshot.params.engine.bm25_avgdl
        chunks = len(writer.snapshot)
    typer.echo(
        f"generation {generation}: BM25 weights of {chunks} passages written again with mean passage length "
        f"{after:.2f} (were {before:.2f}; {time.perf_counter() - start:.1f} s)",
        err=True,
    )


def _report_choice(choice: FinalStageChoice | None, settings: Settings) -> None:
    if choice is None:
        typer.echo(
            f"final stage: not chosen (fewer than {settings.final_stage_min_passages} passages, or "
            f"RAG_FINAL_STAGE_QUERIES=0); RAG_MAXSIM_MODE=auto uses {FALLBACK_MODE}",
            err=True,
        )
        return
    scores = ", ".join(f"{mode} {value:.4f}" for mode, value in choice.ndcg.items())
    typer.echo(
        f"final stage: {choice.mode}, MaxSim weight {choice.maxsim_weight:g} ({choice.reason}; nDCG@10 {scores}; "
        f"{choice.seconds:.1f} s)",
        err=True,
    )


@index_app.command("choose-stage")
def choose_stage(index: IndexOption, quiet: QuietOption = False) -> None:
    """Choose the index's final stage again from held-out pseudo-queries (after many documents changed)."""
    from indexer.final_stage import record_final_stage
    from indexer.writer import IndexWriter

    settings = Settings()
    if settings.final_stage_queries == 0:
        raise InputError("RAG_FINAL_STAGE_QUERIES is 0: set it to the number of pseudo-queries to choose with")
    with IndexWriter(index, settings, show_progress=False) as writer:
        if writer.snapshot is None:
            raise InputError(f"no index at {index} (build one with `rag index build`)")
        _report_choice(record_final_stage(writer, settings, show_progress=not quiet), settings)


@index_app.command()
def verify(index: IndexOption) -> None:
    """Check every file's checksum and that the store and the three indexes agree."""
    from rag.index.snapshot import Snapshot

    snapshot = Snapshot.load(index, Settings())
    snapshot.verify()
    typer.echo(f"ok: generation {snapshot.generation}, {len(snapshot)} chunks")
    ahead = snapshot.committed_ahead()
    if ahead is not None:
        typer.echo(
            f"note: the store has committed generation {ahead}, which CURRENT does not name yet (a writer died "
            "after its commit): the next writer (`rag index add`, or the API) makes it the one served"
        )
