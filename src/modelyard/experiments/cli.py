"""``modelyard experiments``: create, list, start, pause, stop, conclude, report and size.

Like ``modelyard prompts``, every command but ``size`` works on the metadata database directly
(``--database-url``, default ``$MODELYARD_DATABASE_URL``, else the SQLite file under the data dir),
migrates it if needed, acts as a system admin (audited as ``cli``) and on an error prints one line
naming the field to stderr and exits 1. A running server follows a change within ``registry_poll_s``.
The commands only delegate: to :class:`~modelyard.experiments.store.ExperimentStore`,
:func:`~modelyard.experiments.report.experiment_report` and :func:`~modelyard.experiments.stats.sample_size`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from modelyard.errors import ModelyardError
from modelyard.experiments.records import Status
from modelyard.experiments.store import ExperimentStore
from modelyard.registry.cli import AsJson, DatabaseUrl
from modelyard.registry.service import Registry
from modelyard.store.audit import CLI_ACTOR
from modelyard.store.db import default_database_url

experiments_app = typer.Typer(
    no_args_is_help=True, help="A/B experiments: create, list, start, stop, report, size."
)
Tenant = Annotated[
    str | None, typer.Option("--tenant", help="The tenant owning the experiment [default: global].")
]


@contextmanager
def _open(database_url: str | None) -> Iterator[tuple[Registry, ExperimentStore]]:
    registry: Registry | None = None
    try:
        registry = Registry(database_url or default_database_url())
        registry.migrate()
        yield registry, ExperimentStore(registry.engine)
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        if registry is not None:
            registry.close()


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@experiments_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="The experiment as YAML or JSON (see docs/experiments.md).")],
    tenant: Tenant = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a draft experiment from FILE."""
    spec = yaml.safe_load(file.read_text())
    with _open(database_url) as (_, store):
        _echo(store.create(spec, tenant=tenant, actor=CLI_ACTOR).as_dict())


@experiments_app.command("list")
def list_experiments(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """List every experiment."""
    with _open(database_url) as (_, store):
        found = store.list_experiments()
    if as_json:
        _echo([e.as_dict() for e in found])
        return
    table = Table("id", "tenant", "route", "unit", "status", "variants")
    for e in found:
        table.add_row(
            e.id, e.tenant or "-", e.route, e.unit, str(e.status),
            ", ".join(f"{v.name} {v.weight}%" for v in e.variants),
        )  # fmt: skip
    Console().print(table)


def _move(eid: str, status: Status, database_url: str | None) -> None:
    with _open(database_url) as (_, store):
        e = store.transition(eid, status, actor=CLI_ACTOR)
    typer.echo(f"{e.id}: {e.status}")


@experiments_app.command("start")
def start(
    eid: Annotated[str, typer.Argument(help="The experiment id.")], database_url: DatabaseUrl = None
) -> None:
    """Start (or resume) an experiment."""
    _move(eid, Status.RUNNING, database_url)


@experiments_app.command("pause")
def pause(
    eid: Annotated[str, typer.Argument(help="The experiment id.")], database_url: DatabaseUrl = None
) -> None:
    """Pause an experiment (requests pass through; the route stays taken)."""
    _move(eid, Status.PAUSED, database_url)


@experiments_app.command("stop")
def stop(
    eid: Annotated[str, typer.Argument(help="The experiment id.")], database_url: DatabaseUrl = None
) -> None:
    """Stop an experiment for good."""
    _move(eid, Status.STOPPED, database_url)


@experiments_app.command("conclude")
def conclude(
    eid: Annotated[str, typer.Argument(help="The experiment id.")], database_url: DatabaseUrl = None
) -> None:
    """Mark an experiment concluded (its report is final)."""
    _move(eid, Status.CONCLUDED, database_url)


@experiments_app.command("report")
def report(
    eid: Annotated[str, typer.Argument(help="The experiment id.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write the HTML page here.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    min_units: Annotated[int, typer.Option(help="Fewest units per variant before deciding.")] = 100,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the report (JSON) of an experiment, ending in its decision."""
    from modelyard.experiments.report import experiment_report

    with _open(database_url) as (registry, store):
        doc = experiment_report(
            registry.engine, store, eid, prices=registry.prices(), alpha=alpha, min_units=min_units,
            now=datetime.now(UTC),
        )  # fmt: skip
    if html is not None:
        from modelyard.experiments.report_html import render_html

        html.write_text(render_html(doc))
    _echo(doc)


@experiments_app.command("size")
def size(
    mde: Annotated[float, typer.Option("--mde", help="The smallest absolute effect worth detecting.")],
    sd: Annotated[float | None, typer.Option("--sd", help="Standard deviation of a mean metric.")] = None,
    baseline_rate: Annotated[
        float | None, typer.Option("--baseline-rate", help="The control's rate, for a rate metric.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Probability of detecting the effect.")] = 0.8,
) -> None:
    """Units per variant (two variants, 50/50) to detect MDE at ALPHA with POWER."""
    from modelyard.experiments.stats import sample_size

    try:
        n = sample_size(mde, sd=sd, baseline_rate=baseline_rate, alpha=alpha, power=power)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    _echo({"units_per_variant": n, "total_units": 2 * n, "mde": mde, "alpha": alpha, "power": power})


rollout_app = typer.Typer(no_args_is_help=True, help="Canary rollouts: start, status, check.")


@rollout_app.command("start")
def rollout_start(
    model: Annotated[str, typer.Argument(help="The model (and route) to roll out.")],
    to: Annotated[int, typer.Option("--to", help="The version to roll out.")],
    alias: Annotated[
        str, typer.Option(help="The alias naming the stable version; moved on promotion.")
    ] = "production",
    steps: Annotated[
        str, typer.Option(help="Canary percentages, comma-separated, ending at 100.")
    ] = "5,25,50,100",
    min_duration: Annotated[float, typer.Option(help="Seconds each step lasts at least.")] = 60.0,
    min_samples: Annotated[int, typer.Option(help="Requests of each variant a step needs.")] = 50,
    failure_limit: Annotated[int, typer.Option(help="Failed checks before rolling back.")] = 1,
    inconclusive_limit: Annotated[int, typer.Option(help="Checks without enough data before pausing.")] = 3,
    database_url: DatabaseUrl = None,
) -> None:
    """Start a canary of MODEL:TO against MODEL@ALIAS; `serve` advances it (task experiments.canary)."""
    from modelyard.experiments.canary import start_rollout

    try:
        step_list = [int(s) for s in steps.split(",")]
    except ValueError:
        Console(stderr=True).print("[red]error (steps):[/red] integers separated by commas")
        raise typer.Exit(1) from None
    with _open(database_url) as (registry, store):
        exp = start_rollout(
            store, registry, model, to, alias=alias, steps=step_list, min_duration_s=min_duration,
            min_samples=min_samples, failure_limit=failure_limit, inconclusive_limit=inconclusive_limit,
            actor=CLI_ACTOR,
        )  # fmt: skip
    _echo(exp.as_dict())


@rollout_app.command("status")
def rollout_status(
    eid: Annotated[str, typer.Argument(help="The rollout's experiment id.")], database_url: DatabaseUrl = None
) -> None:
    """Show a rollout: its step, state, weights and history."""
    with _open(database_url) as (_, store):
        e = store.get(eid)
    _echo(
        {
            "id": e.id,
            "status": str(e.status),
            "weights": {v.name: v.weight for v in e.variants},
            "rollout": e.rollout,
        }
    )


@rollout_app.command("check")
def rollout_check(database_url: DatabaseUrl = None) -> None:
    """Check every progressing rollout once, here (what the periodic task does each period)."""
    from modelyard.experiments.canary import run_rollouts

    with _open(database_url) as (registry, store):
        _echo(run_rollouts(store, registry.engine, registry))


def add_to(app: typer.Typer) -> None:
    app.add_typer(
        experiments_app, name="experiments", help="A/B experiments: create, list, start, stop, report, size."
    )
    app.add_typer(rollout_app, name="rollout", help="Canary rollouts: start, status, check.")
