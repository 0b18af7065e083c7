"""``modelyard drift``: create, list, run, report and backfill.

Like ``modelyard experiments``, the commands work on the metadata database directly (``--database-url``,
default ``$MODELYARD_DATABASE_URL``, else the SQLite file under the data dir), migrate it if needed,
act as a system admin (``cli``) and on an error print one line naming the field to stderr and exit 1.
``modelyard drift run`` without an id runs every monitor that is due (for a Kubernetes CronJob);
the consumer itself runs as ``modelyard tasks run drift.consume`` (with ``monitoring.drift.enabled``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from modelyard.errors import ModelyardError
from modelyard.monitoring.drift.store import DriftStore
from modelyard.registry.cli import AsJson, DatabaseUrl
from modelyard.store.audit import CLI_ACTOR
from modelyard.store.db import default_database_url

drift_app = typer.Typer(no_args_is_help=True, help="Prompt drift monitors: create, list, run, report.")


@contextmanager
def _open(database_url: str | None) -> Iterator[DriftStore]:
    from modelyard.store.db import create_db_engine, migrate

    engine = None
    try:
        engine = create_db_engine(database_url or default_database_url())
        migrate(engine)
        yield DriftStore(engine)
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        if engine is not None:
            engine.dispose()


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@drift_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="The monitor spec as YAML or JSON (see docs/drift.md).")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant owning the monitor [default: global].")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a drift monitor from FILE."""
    spec = yaml.safe_load(file.read_text())
    with _open(database_url) as store:
        _echo(store.create_monitor(spec, tenant=tenant, actor=CLI_ACTOR).as_dict())


@drift_app.command("list")
def list_monitors(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """List the monitors with their latest run."""
    with _open(database_url) as store:
        found, latest = store.list_monitors(), store.latest_runs()
    if as_json:
        _echo([{**m.as_dict(), "latest": latest.get(m.spec.id)} for m in found])
        return
    table = Table("id", "tenant", "scope", "methods", "last run", "status", "alert")
    for m in found:
        run = latest.get(m.spec.id) or {}
        table.add_row(
            m.spec.id, m.tenant or "-", json.dumps(m.as_dict()["scope"]), ", ".join(m.spec.methods),
            m.as_dict()["last_run_at"] or "-", run.get("status", "-"), "yes" if run.get("alert") else "",
        )  # fmt: skip
    Console().print(table)


@drift_app.command("run")
def run(
    monitor_id: Annotated[
        str | None, typer.Argument(help="The monitor [default: every monitor due].")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run one monitor now, or every monitor that is due; prints the result as JSON."""
    from modelyard.monitoring.drift.runner import run_due, run_monitor

    with _open(database_url) as store:
        if monitor_id is None:
            _echo(run_due(store))
        else:
            _echo(run_monitor(store, store.get_monitor(monitor_id)))


@drift_app.command("report")
def report(
    monitor_id: Annotated[str, typer.Argument(help="The monitor.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the report.")] = Path(
        "drift-report.html"
    ),
    fmt: Annotated[str, typer.Option("--format", help="html (self-contained page) or json.")] = "html",
    database_url: DatabaseUrl = None,
) -> None:
    """Write the monitor's report (runs, scores over time, projection, templates, lengths)."""
    from modelyard.monitoring.drift.report import build_report, render_html

    if fmt not in ("html", "json"):
        Console(stderr=True).print("[red]error (format):[/red] use html or json", highlight=False)
        raise typer.Exit(1)
    with _open(database_url) as store:
        doc = build_report(store, monitor_id)
    out.write_text(render_html(doc) if fmt == "html" else json.dumps(doc, indent=2))
    typer.echo(f"wrote {out}")


@drift_app.command("backfill")
def backfill(
    since: Annotated[str, typer.Option(help="Re-read the request log from this long ago (7d) or time.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Move the consumer's cursor back so its next runs embed older request-log rows."""
    from modelyard.monitoring.drift.consumer import backfill_cursor
    from modelyard.monitoring.requestlog.query import parse_since

    with _open(database_url) as store:
        _echo({"cursor": backfill_cursor(store, parse_since(since))})


def add_to(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift", help="Prompt drift monitors: create, list, run, report, backfill.")
