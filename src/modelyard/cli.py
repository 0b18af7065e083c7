"""The ``modelyard`` command line. Commands only parse flags and delegate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelyard.errors import ConfigError

app = typer.Typer(
    help="modelyard: an OpenAI-compatible multi-model LLM server and LLMOps platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _add_registry_commands() -> None:
    try:
        from modelyard.registry.cli import app as models_app
    except ImportError:  # the registry CLI is optional until it lands
        return
    app.add_typer(models_app, name="models", help="Model registry: list, register, show, alias set.")


@app.callback()
def main() -> None:
    """modelyard: an OpenAI-compatible multi-model LLM server and LLMOps platform."""


_add_registry_commands()

from modelyard.monitoring.cli import add_to as _add_monitoring_commands  # noqa: E402

_add_monitoring_commands(app)

from modelyard.tenancy.cli import add_to as _add_tenancy_commands  # noqa: E402

_add_tenancy_commands(app)

from modelyard.registry.datasets_cli import app as _datasets_app  # noqa: E402

app.add_typer(
    _datasets_app, name="datasets", help="Versioned datasets: create, list, show, from-logs, split."
)

from modelyard.evals.cli import add_to as _add_eval_commands  # noqa: E402

_add_eval_commands(app)
from modelyard.registry.lint.cli import lint_command as _lint_command  # noqa: E402
from modelyard.registry.prompts_cli import prompts_app as _prompts_app  # noqa: E402

_prompts_app.command("lint")(_lint_command)
app.add_typer(_prompts_app, name="prompts", help="Prompt registry: push, list, show, label, render, lint.")
from modelyard.jobs.cli import add_to as _add_jobs_commands  # noqa: E402

_add_jobs_commands(app)
from modelyard.experiments.cli import add_to as _add_experiment_commands  # noqa: E402

_add_experiment_commands(app)
from modelyard.monitoring.drift.cli import add_to as _add_drift_commands  # noqa: E402

_add_drift_commands(app)
from modelyard.rag.cli import add_to as _add_rag_commands  # noqa: E402

_add_rag_commands(app)


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML settings file (default: $MODELYARD_CONFIG, then ./modelyard.yaml)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8000].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="State folder [default: ~/.local/share/modelyard].")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Metadata store URL [default: SQLite in data dir].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error [default: info].")
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (local models, embedders and remote deployments)."""
    from modelyard.settings import load_settings

    try:
        settings = load_settings(
            config,
            {
                "host": host,
                "port": port,
                "data_dir": data_dir,
                "database_url": database_url,
                "log_level": log_level,
            },
        )
    except ConfigError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None

    import uvicorn

    from modelyard.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=max(int(settings.drain_timeout_s), 1),
        server_header=False,
    )


@app.command()
def worker(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML settings file (same as serve; `queue` and `local_models`)."
        ),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Consumer name in Redis [default: <host>-<pid>].")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Serve only this local model (repeatable).")
    ] = None,
    ready_file: Annotated[
        Path | None, typer.Option("--ready-file", help="Written once models are loaded, removed on exit.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="Serve /health, /ready and /metrics on this port.")
    ] = None,
    jobs: Annotated[
        str | None, typer.Option("--jobs", help="Run background jobs of these kinds (KIND[,KIND]) instead.")
    ] = None,
) -> None:
    """Serve queued requests of local models from Redis Streams (drains on SIGTERM), or with `--jobs`
    run background jobs."""
    import asyncio

    from modelyard.settings import load_settings

    try:
        settings = load_settings(config, {"log_level": log_level})
    except ConfigError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if jobs:
        from modelyard.jobs.worker import serve_job_worker

        kinds = [k.strip() for k in jobs.split(",") if k.strip()]
        try:
            asyncio.run(serve_job_worker(settings, kinds, worker_id, ready_file, http_port))
        except ConfigError as exc:
            err_console.print(f"[red]modelyard: {exc.message}[/red]")
            raise typer.Exit(2) from None
        return
    from modelyard.queue.worker import serve_worker

    asyncio.run(serve_worker(settings, worker_id, model, ready_file, http_port))


if __name__ == "__main__":
    app()
