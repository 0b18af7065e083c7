"""``modelyard datasets``: create, list, show, from-logs and split versioned datasets.

Every command reads the same settings as ``modelyard serve`` (``--config``, ``MODELYARD_*``) for the
metadata store and data dir, migrates if needed and prints JSON. Bad input prints one line naming
the line and field and exits with status 2; nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelyard.errors import ConfigError, ModelyardError
from modelyard.registry.datasets import DatasetStore, load_jsonl
from modelyard.store.audit import CLI_ACTOR

app = typer.Typer(no_args_is_help=True, help="Versioned datasets: create, list, show, from-logs, split.")
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (as for serve).")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Metadata store URL.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="State folder (artifacts live under it).")]
Tenant = Annotated[str | None, typer.Option("--tenant", help="Owning tenant (default: global).")]


@contextmanager
def open_store(
    config: Path | None, database_url: str | None, data_dir: Path | None
) -> Iterator[DatasetStore]:
    """The dataset store of the configured metadata store; modelyard errors exit 2 with one line."""
    from modelyard.settings import load_settings
    from modelyard.store.db import create_db_engine, migrate

    engine = None
    try:
        settings = load_settings(config, {"database_url": database_url, "data_dir": data_dir})
        engine = create_db_engine(settings.resolved_database_url)
        migrate(engine)
        yield DatasetStore(engine, settings.resolved_data_dir)
    except (ModelyardError, ConfigError) as exc:
        param = getattr(exc, "param", None)
        where = f" ({param})" if param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        if engine is not None:
            engine.dispose()


def _print(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
def create(
    name: str,
    file: Path,
    tenant: Tenant = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Validate FILE (JSONL) and store it as the next version of NAME (unchanged content: same version)."""
    with open_store(config, database_url, data_dir) as store:
        items = load_jsonl(file)
        info = store.create(name, items, source=str(file.resolve()), created_by=CLI_ACTOR, tenant=tenant)
        _print(info.to_dict())


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only this dataset's versions.")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Every dataset version (name, version, digest, items, source)."""
    with open_store(config, database_url, data_dir) as store:
        _print([v.to_dict() for v in store.versions(name)])


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME (latest) or NAME@VERSION.")],
    items: Annotated[bool, typer.Option("--items", help="Also print the items.")] = False,
    config: Config = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """One version's record (and its items with --items)."""
    from modelyard.registry.datasets import item_dict

    with open_store(config, database_url, data_dir) as store:
        info = store.get(ref)
        out: dict[str, object] = info.to_dict()
        if items:
            out["items"] = [item_dict(i) for i in store.items(info)]
        _print(out)


@app.command("from-logs")
def from_logs(
    name: str,
    model: Annotated[str | None, typer.Option(help="Served or requested model.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Requests of this tenant.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="chat, completions, ...")] = None,
    since: Annotated[str | None, typer.Option(help="15m / 2h / 7d ago, or an ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or a duration ago.")] = None,
    status: Annotated[int, typer.Option(help="HTTP status of the logged request.")] = 200,
    contains: Annotated[str | None, typer.Option("--contains", help="Prompt text contains this.")] = None,
    sample_n: Annotated[int | None, typer.Option("--sample", help="Draw this many items.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    config: Config = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """A new version of NAME from logged requests (expected = the logged response)."""
    from modelyard.monitoring.requestlog.query import parse_since
    from modelyard.registry.dataset_logs import LogFilter, items_from_logs

    with open_store(config, database_url, data_dir) as store:
        f = LogFilter(
            tenant=tenant,
            model=model,
            endpoint=endpoint,
            since=parse_since(since) if since else None,
            until=parse_since(until) if until else None,
            status=status,
            prompt_contains=contains,
        )
        items = items_from_logs(store.engine, f, n=sample_n, seed=seed)
        query = {
            k: v
            for k, v in {
                "model": model,
                "tenant": tenant,
                "endpoint": endpoint,
                "since": since,
                "until": until,
                "status": status,
                "contains": contains,
                "sample": sample_n,
                "seed": seed,
            }.items()
            if v is not None
        }
        source = "request_log?" + "&".join(f"{k}={v}" for k, v in query.items())
        _print(store.create(name, items, source=source, created_by=CLI_ACTOR, tenant=tenant).to_dict())


@app.command()
def split(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    test: Annotated[float, typer.Option("--test", help="Fraction of items in the test split.")] = 0.2,
    config: Config = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Deterministic train/test split by item-id hash: versions of NAME-train and NAME-test."""
    with open_store(config, database_url, data_dir) as store:
        train, test_info = store.split(ref, test, created_by=CLI_ACTOR)
        _print({"train": train.to_dict(), "test": test_info.to_dict()})
