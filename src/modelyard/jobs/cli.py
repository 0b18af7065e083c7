"""``modelyard jobs list|show|cancel`` and ``modelyard tasks list|run``.

``jobs`` commands talk to a running server over HTTP (``--url``, ``--api-key`` / ``MODELYARD_API_KEY``),
so they see exactly what ``/admin/jobs`` shows that key, tenant scoping included. ``tasks`` commands
read the settings (``--config``) and run against the metadata store directly: ``tasks run NAME`` runs
one periodic task once under its lease, for a Kubernetes CronJob (exit 0 when it ran, 1 when it
failed, 2 for a bad name or setting, 3 when another process holds the lease and nothing was done).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelyard.errors import ConfigError
from modelyard.settings import API_KEY_ENV

jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs of a running server.")
tasks_app = typer.Typer(no_args_is_help=True, help="Periodic tasks: list them, run one once.")
err_console = Console(stderr=True)
LEASE_HELD_EXIT = 3

UrlOpt = Annotated[str, typer.Option(help="Base URL of the running server.")]
KeyOpt = Annotated[str | None, typer.Option(envvar=API_KEY_ENV, help="API key (admin or read scope).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (as for serve).")]


def _call(method: str, url: str, path: str, api_key: str | None, **params: Any) -> dict[str, Any]:
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.request(method, url.rstrip("/") + path, headers=headers, params=params, timeout=30)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]modelyard: cannot reach {url}: {exc}[/red]")
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:300]
        err_console.print(f"[red]modelyard: {r.status_code}: {message}[/red]")
        raise typer.Exit(1)
    return r.json()  # type: ignore[no-any-return]


def _progress(job: dict[str, Any]) -> str:
    p = job["progress"]
    return f"{p['done']:g}/{p['total']:g}" if p["total"] else f"{p['done']:g}"


@jobs_app.command("list")
def list_cmd(
    url: UrlOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON answer.")] = False,
) -> None:
    """List jobs, newest first."""
    params = {k: v for k, v in {"tenant": tenant, "state": state, "kind": kind, "limit": limit}.items() if v}
    data = _call("GET", url, "/admin/jobs", api_key, **params)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table("id", "kind", "tenant", "state", "progress", "created", "error")
    for j in data["data"]:
        table.add_row(
            j["id"],
            j["kind"],
            j["tenant"] or "-",
            j["state"],
            _progress(j),
            j["created_at"] or "",
            (j["error"] or "")[:40],
        )
    Console(width=200).print(table)


@jobs_app.command("show")
def show_cmd(job_id: str, url: UrlOpt = "http://127.0.0.1:8000", api_key: KeyOpt = None) -> None:
    """One job as JSON: state, progress, result, error and its last log lines."""
    typer.echo(json.dumps(_call("GET", url, f"/admin/jobs/{job_id}", api_key), indent=2))


@jobs_app.command("cancel")
def cancel_cmd(job_id: str, url: UrlOpt = "http://127.0.0.1:8000", api_key: KeyOpt = None) -> None:
    """Cancel a job: a queued one at once, a running one at its next check."""
    job = _call("POST", url, f"/admin/jobs/{job_id}/cancel", api_key)
    typer.echo(f"{job['id']}: {job['state']}" + (" (cancel requested)" if job["state"] == "running" else ""))


def _service(config: Path | None) -> Any:
    from modelyard.jobs.catalog import known_kinds, known_tasks
    from modelyard.jobs.service import build_jobs
    from modelyard.settings import load_settings

    try:
        settings = load_settings(config)
        service = build_jobs(settings, known_kinds(settings))
    except ConfigError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None
    return settings, service, [*service.tasks(), *known_tasks(settings)]


@tasks_app.command("list")
def tasks_list_cmd(config: ConfigOpt = None) -> None:
    """The periodic tasks `serve` runs (name, period, what it does)."""
    _, service, tasks = _service(config)
    service.store.close()
    table = Table("name", "every_s", "description")
    for t in tasks:
        table.add_row(t.name, f"{t.every_s:g}", t.description)
    Console(width=160).print(table)


@tasks_app.command("run")
def tasks_run_cmd(name: str, config: ConfigOpt = None) -> None:
    """Run one periodic task once, under its lease (for a Kubernetes CronJob)."""
    from modelyard.jobs.periodic import PeriodicRunner, lease_for

    settings, service, tasks = _service(config)
    try:
        runner = PeriodicRunner(tasks, lease_for(settings))
    except ConfigError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None

    async def run() -> bool:
        try:
            await asyncio.to_thread(service.store.migrate)
            return await runner.run_once(name)
        finally:
            await runner.stop()
            await service.queue.close()
            service.store.close()

    try:
        ran = asyncio.run(run())
    except ConfigError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None
    if not ran:
        err_console.print(f"modelyard: task {name} is running elsewhere (lease held); nothing done")
        raise typer.Exit(LEASE_HELD_EXIT)
    if runner.stats[name].failures:
        err_console.print(f"[red]modelyard: task {name} failed (see the log above)[/red]")
        raise typer.Exit(1)
    typer.echo(f"task {name}: done")


def add_to(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs", help="Background jobs: list, show, cancel (over HTTP).")
    app.add_typer(tasks_app, name="tasks", help="Periodic tasks: list, run one once (for a CronJob).")
