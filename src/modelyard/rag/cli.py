"""``modelyard rag``: create, ingest, query, reembed, evaluate, versions, alias.

Every command works on the metadata database and vector store of the settings (``--config``, then
``$MODELYARD_CONFIG``/``./modelyard.yaml``; ``--database-url`` overrides the database), migrates the
database if needed, acts as ``cli`` in the audit log, prints JSON (reports are data first), and on an
error prints one line naming the field to stderr and exits 1. Ingest shows a progress bar on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from modelyard.errors import ConfigError, ModelyardError
from modelyard.store.audit import CLI_ACTOR

rag_app = typer.Typer(no_args_is_help=True, help="RAG: corpora, ingest, query, re-embed behind a gate.")
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (as for serve).")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Metadata database URL override.")]
Alias = Annotated[str, typer.Option("--alias", help="The alias to read or move.")]


@contextmanager
def _open(config: Path | None, database_url: str | None) -> Iterator[Any]:
    from modelyard.settings import load_settings
    from modelyard.store.db import create_db_engine, migrate

    err = Console(stderr=True)
    engine = None
    runtime = None
    try:
        settings = load_settings(config, {"database_url": database_url})
        from modelyard.rag.runtime import RagRuntime

        engine = create_db_engine(settings.resolved_database_url)
        migrate(engine)
        runtime = RagRuntime(settings, engine)
        yield runtime.service(), settings
    except (ModelyardError, ConfigError) as exc:
        where = f" ({exc.param})" if getattr(exc, "param", None) else ""
        err.print(f"[red]error{where}:[/red] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        if runtime is not None:
            runtime.close()
        if engine is not None:
            engine.dispose()


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@rag_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Corpus name (a-z, 0-9, -).")],
    embedder: Annotated[str, typer.Option(help="Embedder source.")] = "packaged:all-minilm-l6-v2",
    dimensions: Annotated[int | None, typer.Option(help="Keep only the first N dimensions.")] = None,
    chunk_size: Annotated[int, typer.Option(help="Tokens per chunk.")] = 128,
    chunk_overlap: Annotated[int, typer.Option(help="Tokens shared by consecutive chunks.")] = 16,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a corpus; its first ingest builds version 1 and points `production` at it."""
    from modelyard.rag.chunking import Chunking

    with _open(config, database_url) as (svc, _):
        corpus = svc.create_corpus(
            name, embedder, Chunking(chunk_size, chunk_overlap), dimensions=dimensions, actor=CLI_ACTOR
        )
        _echo(corpus.as_dict())


@rag_app.command("ingest")
def ingest(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders: .txt/.md (one document each) or .jsonl.")
    ],
    delete: Annotated[list[str] | None, typer.Option("--delete", help="Remove this document id.")] = None,
    prune: Annotated[bool, typer.Option(help="Remove stored documents missing from PATHS.")] = False,
    alias: Alias = "production",
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Ingest sources into the version ALIAS names, embedding only new or changed chunks."""
    from modelyard.rag.sources import read_sources

    with _open(config, database_url) as (svc, _):
        docs = read_sources(paths)  # everything is read and checked before anything is written
        with _progress(f"embedding {corpus}") as progress:
            report = svc.ingest(corpus, docs, delete=delete or (), prune=prune, alias=alias, actor=CLI_ACTOR,
                                progress=progress)  # fmt: skip
        _echo(report.as_dict())


@rag_app.command("query")
def query(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    text: Annotated[str, typer.Argument(help="The query.")],
    ref: Annotated[str | None, typer.Option("--version", help="Alias or version number.")] = None,
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    where: Annotated[list[str] | None, typer.Option("--where", help="Metadata filter key=value.")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Top-k chunks from the version an alias (default production) or number names."""
    filters = dict(w.split("=", 1) for w in where or () if "=" in w)
    with _open(config, database_url) as (svc, _):
        _echo(svc.query(corpus, text, ref=ref, k=top_k, where=filters or None).as_dict())


@rag_app.command("reembed")
def reembed(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    embedder: Annotated[str, typer.Option(help="Embedder source of the new version.")],
    labels: Annotated[Path, typer.Option(help="Labelled queries (JSONL: id, query, relevant).")],
    dimensions: Annotated[int | None, typer.Option(help="Keep only the first N dimensions.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Tokens per chunk [default: the current's].")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="Overlap [default: the current's].")] = None,
    tolerance: Annotated[
        float | None, typer.Option(help="Gate tolerance [default: rag.gate_tolerance].")
    ] = None,
    alias: Alias = "production",
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Build a new version with EMBEDDER, evaluate it against the current one, and move ALIAS only if
    nDCG@10 and recall@5 are within the tolerance. Exits 3 when the gate keeps the old version."""
    from modelyard.rag.chunking import Chunking
    from modelyard.rag.evaluate import LabelledSet

    with _open(config, database_url) as (svc, settings):
        current = svc.catalog.resolve(corpus, alias)
        chunking = None
        if chunk_size is not None or chunk_overlap is not None:
            chunking = Chunking(chunk_size or current.chunking.size,
                                current.chunking.overlap if chunk_overlap is None else chunk_overlap)  # fmt: skip
        with _progress(f"re-embedding {corpus}") as progress:
            report = svc.reembed(
                corpus, embedder, LabelledSet.load(labels), dimensions=dimensions, chunking=chunking,
                tolerance=settings.rag.gate_tolerance if tolerance is None else tolerance, alias=alias,
                actor=CLI_ACTOR, progress=progress,
            )  # fmt: skip
        _echo(report)
    if report["decision"] != "swapped":
        Console(stderr=True).print(
            f"kept version {report['alias_version']}: {report['gate']['reason']}", soft_wrap=True
        )
        raise typer.Exit(3)


@rag_app.command("evaluate")
def evaluate_version(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    labels: Annotated[Path, typer.Option(help="Labelled queries (JSONL).")],
    ref: Annotated[str | None, typer.Option("--version", help="Alias or version number.")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Score one version on a labelled set (recall@k, MRR, nDCG@10, hit@k) and store the result."""
    from modelyard.rag.evaluate import LabelledSet

    with _open(config, database_url) as (svc, _):
        _echo(svc.evaluate(svc.catalog.resolve(corpus, ref), LabelledSet.load(labels)))


@rag_app.command("versions")
def versions(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The corpus's versions (embedder, chunking, status, stored evaluation) and aliases."""
    with _open(config, database_url) as (svc, _):
        _echo({"versions": [v.as_dict() for v in svc.catalog.versions(corpus)],
               "aliases": svc.catalog.aliases(corpus)})  # fmt: skip


@rag_app.command("alias")
def set_alias(
    corpus: Annotated[str, typer.Argument(help="Corpus name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Point CORPUS@ALIAS at VERSION (atomic, audited; a rollback is the same command)."""
    with _open(config, database_url) as (svc, _):
        svc.catalog.set_alias(corpus, alias, version, actor=CLI_ACTOR, reason="cli")
        _echo(svc.catalog.aliases(corpus))


def add_to(app: typer.Typer) -> None:
    app.add_typer(rag_app, name="rag", help="RAG: corpora, ingest, query, re-embed behind a gate.")
