"""``modelyard eval report`` and ``modelyard eval compare``: render and compare stored run documents.

``RUN`` is resolved by the app's ``load_run(ref) -> dict`` hook; :func:`load_run_file` (the default)
reads a run-document JSON file. Build the app with another hook (run ids from the metadata store)
as ``make_eval_app(load_run=...)``; ``modelyard eval run`` is added to the same app.

Exit codes:

- ``eval report``: the document's own exit code (:func:`modelyard.evals.gate.exit_code`): **0** gate
  passed or none, **1** gate failed, **2** the run failed; **2** also for a run that cannot be loaded;
- ``eval compare``: **0** no significant regression, **1** a significant regression (the verdict of
  :mod:`modelyard.evals.compare`, McNemar's exact test at ``--alpha``), **2** a run cannot be loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from modelyard.errors import InvalidRequest
from modelyard.evals.compare import DEFAULT_ALPHA, DEFAULT_RESAMPLES, DEFAULT_SEED, REGRESSION, compare_runs
from modelyard.evals.gate import EXIT_GATE_FAILED, EXIT_PASSED, EXIT_RUN_FAILED, exit_code
from modelyard.evals.report import COMPARE_FORMATS, RUN_FORMATS, render_compare, render_run
from modelyard.evals.report.table import compare_renderable, run_renderable
from modelyard.evals.types import RUN_ID_PREFIX

LoadRun = Callable[[str], dict[str, Any]]


class RunNotLoadable(InvalidRequest):
    """A ``RUN`` argument that names no readable run document."""

    code = "run_not_loadable"


def load_run_file(ref: str) -> dict[str, Any]:
    """Read a run document from a JSON file; raises :class:`RunNotLoadable` naming the problem."""
    path = Path(ref)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunNotLoadable(f"no run document at {ref!r}", param="RUN") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunNotLoadable(f"{ref}: not a JSON run document ({exc})", param="RUN") from exc
    if not isinstance(doc, dict) or "results" not in doc or "version" not in doc:
        raise RunNotLoadable(f"{ref}: not a run document (no 'version' and 'results')", param="RUN")
    return doc


def load_run_ref(ref: str) -> dict[str, Any]:
    """A run document from the JSON file ``ref``, else the stored run whose id is ``ref`` (``evr_...``)
    in the metadata store of the settings (``$MODELYARD_CONFIG``, then ``./modelyard.yaml``)."""
    if not ref.startswith(RUN_ID_PREFIX) or Path(ref).exists():
        return load_run_file(ref)
    from modelyard.evals.execute import open_stores
    from modelyard.settings import load_settings

    with open_stores(load_settings(None, {})) as stores:
        doc = stores.runs.get(ref)
    if doc is None:
        raise RunNotLoadable(f"no eval run {ref!r} in the metadata store", param="RUN")
    return doc


def _emit(text: str, renderable: Any, out: Path | None, console: Console) -> None:
    if out is None:
        if renderable is not None:
            console.print(renderable)
        else:
            typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    Console(stderr=True).print(f"wrote {out}")


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"error: {message}", highlight=False, markup=False)
    return typer.Exit(EXIT_RUN_FAILED)


def make_eval_app(load_run: LoadRun = load_run_file) -> typer.Typer:
    """The ``eval`` command group, resolving ``RUN`` arguments with ``load_run``."""
    eval_app = typer.Typer(no_args_is_help=True, help="Evaluations: run suites, report and compare runs.")

    def load(ref: str) -> dict[str, Any]:
        try:
            return load_run(ref)
        except InvalidRequest as exc:
            raise _fail(exc.message) from exc

    @eval_app.command("report")
    def report_cmd(
        run: Annotated[str, typer.Argument(metavar="RUN", help="A run document (JSON file) or run id.")],
        fmt: Annotated[
            str, typer.Option("--format", "-f", help=f"One of {', '.join(RUN_FORMATS)}.")
        ] = "table",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    ) -> None:
        """Render a run: terminal table, JSON, JUnit XML or self-contained HTML. Exits 0 gate passed, 1 gate
        failed, 2 run failed (or RUN not loadable)."""
        if fmt not in RUN_FORMATS:
            raise _fail(f"--format must be one of {', '.join(RUN_FORMATS)}, not {fmt!r}")
        doc = load(run)
        text = render_run(doc, fmt)
        _emit(text, run_renderable(doc) if fmt == "table" else None, out, Console())
        raise typer.Exit(exit_code(doc))

    @eval_app.command("compare")
    def compare_cmd(
        run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The baseline run.")],
        run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The candidate run.")],
        fmt: Annotated[
            str, typer.Option("--format", "-f", help=f"One of {', '.join(COMPARE_FORMATS)}.")
        ] = "table",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
        alpha: Annotated[float, typer.Option(help="Significance level of the verdict.")] = DEFAULT_ALPHA,
        resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = DEFAULT_RESAMPLES,
        seed: Annotated[int, typer.Option(help="Bootstrap RNG seed.")] = DEFAULT_SEED,
        pair: Annotated[
            list[str] | None,
            typer.Option(
                "--pair", help="TARGET_A=TARGET_B to compare (repeatable; default: targets of the same name)."
            ),
        ] = None,
    ) -> None:
        """Paired comparison of two runs (items by id, repeats averaged): McNemar's exact test and a bootstrap CI
        of the score difference. Exits 1 on a significant regression of RUN_B against RUN_A, else 0; 2 when a run
        cannot be loaded."""
        if fmt not in COMPARE_FORMATS:
            raise _fail(f"--format must be one of {', '.join(COMPARE_FORMATS)}, not {fmt!r}")
        if not 0.0 < alpha < 1.0:
            raise _fail(f"--alpha must be in (0, 1), not {alpha}")
        if resamples < 100:
            raise _fail(f"--resamples must be at least 100, not {resamples}")
        pairs: list[tuple[str, str]] = []
        for spec in pair or []:
            name_a, sep, name_b = spec.partition("=")
            if not (sep and name_a and name_b):
                raise _fail(f"--pair must look like TARGET_A=TARGET_B, not {spec!r}")
            pairs.append((name_a, name_b))
        doc = compare_runs(
            load(run_a),
            load(run_b),
            pairs=pairs or None,
            alpha=alpha,
            resamples=resamples,
            seed=seed,
        )
        text = render_compare(doc, fmt)
        _emit(text, compare_renderable(doc) if fmt == "table" else None, out, Console())
        raise typer.Exit(EXIT_GATE_FAILED if doc["verdict"] == REGRESSION else EXIT_PASSED)

    from modelyard.evals.run_cli import add_run_command

    add_run_command(eval_app)
    return eval_app


eval_app = make_eval_app(load_run_ref)


def add_to(app: typer.Typer) -> None:
    """Register ``modelyard eval`` on the root app."""
    app.add_typer(eval_app, name="eval", help="Evaluations: run suites, report and compare runs.")
