"""``modelyard eval run SUITE.yaml``: run a suite, store the run, print the table, exit by the gate.

Exit codes (:func:`modelyard.evals.gate.exit_code`): **0** the gate passed (or there is none),
**1** the gate failed, **2** the run itself failed — a bad suite (malformed YAML, unknown dataset or
scorer, a template that does not compile, a target model that does not exist: one line naming the
field, nothing stored), an unreachable server or a broken scorer.

Without ``--url`` the suite runs against a modelyard app started in this process from the same
settings as ``modelyard serve`` (``--config``); with it, against that server.
:func:`eval_run` is the command; the lead attaches it with ``add_run_command(eval_app)``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from modelyard.errors import ConfigError, ModelyardError

err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]modelyard eval:[/red] {message}", highlight=False)
    return typer.Exit(2)


def print_summary(doc: dict[str, Any], console: Console | None = None) -> None:
    """The reports package's terminal table of the run (the same one ``eval report`` prints)."""
    from modelyard.evals.report.table import run_renderable

    (console or Console()).print(run_renderable(doc))


def eval_run(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    url: Annotated[
        str | None, typer.Option("--url", help="OpenAI-compatible server (default: in process).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="MODELYARD_API_KEY", help="API key for the server.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the run document (JSON) here.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Store the run under this tenant.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings file (as for serve).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
) -> None:
    """Run an eval suite; exit 0 if its gate passed, 1 if it failed, 2 if the run failed."""
    import openai  # here, not at the top: `modelyard --help` and `serve` need not import it

    from modelyard.evals.execute import execute
    from modelyard.evals.gate import exit_code
    from modelyard.evals.progress import NullProgress, RichProgress
    from modelyard.evals.runner import RunFailed
    from modelyard.evals.suite import load_suite
    from modelyard.settings import load_settings

    try:
        settings = load_settings(config, {})
        spec = load_suite(suite)
        if quiet:
            doc = asyncio.run(
                execute(
                    spec,
                    settings,
                    NullProgress(),
                    base_dir=suite.resolve().parent,
                    url=url,
                    api_key=api_key,
                    tenant=tenant,
                )
            )
        else:
            with RichProgress(err) as progress:
                doc = asyncio.run(
                    execute(
                        spec,
                        settings,
                        progress,
                        base_dir=suite.resolve().parent,
                        url=url,
                        api_key=api_key,
                        tenant=tenant,
                    )
                )
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        raise _fail(f"error{where}: {exc.message}") from None
    except ConfigError as exc:
        raise _fail(exc.message) from None
    except (RunFailed, openai.APIError, TimeoutError, RuntimeError, OSError) as exc:
        raise _fail(f"the run failed: {exc}") from None
    if out is not None:
        out.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    if junit is not None or html is not None:
        _reports(doc, junit, html)
    if not quiet:
        print_summary(doc)
    raise typer.Exit(exit_code(doc))


def _reports(doc: dict[str, Any], junit: Path | None, html: Path | None) -> None:
    """JUnit XML and HTML from the reports package (``modelyard.evals.report``)."""
    from modelyard.evals.report import write_html, write_junit

    if junit is not None:
        write_junit(doc, junit)
    if html is not None:
        write_html(doc, html)


def add_run_command(eval_app: typer.Typer) -> None:
    """Attach ``run`` to the ``modelyard eval`` command group."""
    eval_app.command("run")(eval_run)


def main() -> None:
    """``python -m modelyard.evals.run_cli run SUITE.yaml`` (the same command, standalone)."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    add_run_command(app)

    @app.callback()
    def _group() -> None:
        """modelyard eval."""

    app()


if __name__ == "__main__":
    main()
