"""``modelyard prompts lint FILES... | --registry``: lint prompts (text, JSON or SARIF; exit 0 / 1 / 2).

:func:`lint_command` is the command (``modelyard.cli`` adds it to the ``prompts`` group);
:data:`lint_app` is a one-command typer app for tests. A folder argument lints every ``*.yaml`` /
``*.yml`` under it; ``--registry`` adds every labelled version of the prompt registry.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from modelyard.errors import ConfigError, ModelyardError
from modelyard.registry.lint.context import ModelCatalog
from modelyard.registry.lint.core import FileResult, lint_file
from modelyard.registry.lint.report import build_document, print_text, to_sarif


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def expand(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder replaced by its ``*.yaml`` and ``*.yml`` files, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            out.append(p)
    return out


def lint_command(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Prompt YAML files, or folders of them.", show_default=False)
    ] = None,
    output_format: Annotated[
        Format, typer.Option("--format", "-f", help="text (one line per finding), json or sarif.")
    ] = Format.TEXT,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Target model for the context-window check [default: the prompt's `model`]."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file instead of stdout.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file naming the local models [default: as `serve`]."),
    ] = None,
    registry: Annotated[
        bool, typer.Option("--registry", help="Also lint every labelled version in the prompt registry.")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Metadata database of --registry [default: $MODELYARD_DATABASE_URL, else "
            "~/.local/share/modelyard/modelyard.db].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Lint prompt files and registry versions (exit 0 clean, 1 on errors, 2 on bad input; docs/prompts-lint.md)."""
    from modelyard.settings import load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(2) from None
    if not files and not registry:
        Console(stderr=True).print("[red]modelyard: give prompt FILES, --registry, or both[/red]")
        raise typer.Exit(2)
    catalog = ModelCatalog(settings)
    results: list[FileResult] = [lint_file(p, model=model, catalog=catalog) for p in expand(files or [])]
    if registry:
        from modelyard.registry.lint.registry import lint_registry

        try:
            results += lint_registry(database_url, model=model, catalog=catalog)
        except (ModelyardError, SQLAlchemyError) as exc:
            message = exc.message if isinstance(exc, ModelyardError) else str(exc).splitlines()[0]
            Console(stderr=True).print(
                f"[red]modelyard: the prompt registry: {message}[/red]", highlight=False
            )
            raise typer.Exit(2) from None
    document = build_document(results, strict=strict)
    if output_format is Format.TEXT:
        console = Console(file=output.open("w", encoding="utf-8") if output else None, soft_wrap=True)
        print_text(document, console)
        if output:
            console.file.close()
    else:
        payload = to_sarif(document) if output_format is Format.SARIF else document
        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            typer.echo(text, nl=False)
    raise typer.Exit(document["exit_code"])


lint_app = typer.Typer(no_args_is_help=True, help="Prompts: lint prompt files.")
lint_app.command("lint")(lint_command)


@lint_app.callback()
def _prompts() -> None:
    """Prompts: lint prompt files."""
