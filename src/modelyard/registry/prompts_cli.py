"""``modelyard prompts``: push, list, show, label and render the prompts of the registry.

Like ``modelyard models``, every command works on the metadata database directly (``--database-url``,
default ``$MODELYARD_DATABASE_URL``, else the SQLite file under the data dir), migrates it if needed,
acts as a system admin (audited as ``cli``), prints rich tables or JSON with ``--json``, and on an
error prints one line naming the field to stderr and exits 1. ``--tenant`` picks a tenant's prompt
(default: the global one). A running server sees a change within ``registry_poll_s``.

A reference is ``NAME`` (label ``production``, else latest), ``NAME@LABEL`` or ``NAME:VERSION``.
``prompts lint`` lives in its own module and is added to :data:`prompts_app` by the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelyard.errors import InvalidRequest, ModelyardError
from modelyard.registry.cli import AsJson, DatabaseUrl
from modelyard.registry.prompt_records import PromptInfo, PromptVersionInfo, parse_prompt_ref
from modelyard.registry.prompt_spec import PromptSpec, load_prompt_file, render
from modelyard.registry.prompts import ANY_TENANT, PromptRegistry
from modelyard.registry.service import Registry
from modelyard.store.audit import CLI_ACTOR
from modelyard.store.db import default_database_url

prompts_app = typer.Typer(no_args_is_help=True, help="Prompt registry: push, list, show, label, render.")
label_app = typer.Typer(no_args_is_help=True, help="Movable labels (production, staging, ...).")
prompts_app.add_typer(label_app, name="label")

Tenant = Annotated[
    str | None, typer.Option("--tenant", help="The tenant owning the prompt [default: global].")
]


@contextmanager
def _open(database_url: str | None) -> Iterator[PromptRegistry]:
    registry: Registry | None = None
    try:
        registry = Registry(database_url or default_database_url())
        registry.migrate()
        yield PromptRegistry(registry.engine)
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        if registry is not None:
            registry.close()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _versions_table(info: PromptInfo) -> Table:
    owner = f" (tenant {info.tenant})" if info.tenant else ""
    table = Table(title=f"{info.name}{owner}", title_justify="left")
    for column in ("version", "labels", "author", "created", "digest", "message"):
        table.add_column(column, overflow="fold")
    for v in info.versions:
        labels = [f"{lab}*" if lab in info.protected else lab for lab in v.labels]
        table.add_row(
            str(v.version),
            ", ".join(labels) or "-",
            v.author,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.digest[:19],
            v.commit_message or "-",
        )
    return table


def _select(store: PromptRegistry, ref: str, tenant: str | None) -> tuple[PromptInfo, PromptVersionInfo]:
    name, version = parse_prompt_ref(ref)
    info = store.get(name, tenant)
    return info, info.select(version, param="version")


@prompts_app.command("push")
def push(
    file: Annotated[Path, typer.Argument(help="A prompt YAML file.", exists=True, dir_okay=False)],
    message: Annotated[str, typer.Option("-m", "--message", help="Commit message.")] = "",
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Point this label at it.")] = None,
    tenant: Tenant = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Store FILE as the prompt's next version (an unchanged file returns the latest version)."""
    with _open(database_url) as store:
        spec = load_prompt_file(file)
        version, created = store.push(
            spec, commit_message=message, labels=label or [], tenant=tenant, actor=CLI_ACTOR
        )
    if as_json:
        _print_json({**version.to_dict(), "created": created})
        return
    what = "pushed" if created else "unchanged: still"
    labels = f" ({', '.join(version.labels)})" if version.labels else ""
    typer.echo(f"{what} {version.ref}{labels} {version.digest[:19]}")


@prompts_app.command("list")
def list_prompts(tenant: Tenant = None, database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Every prompt (or a tenant's and the global ones) with its latest version and labels."""
    with _open(database_url) as store:
        rows = store.list_prompts(ANY_TENANT if tenant is None else tenant)
    if as_json:
        _print_json([{k: v for k, v in p.to_dict().items() if k != "versions"} for p in rows])
        return
    table = Table(title="prompts", title_justify="left")
    for column in ("name", "tenant", "latest", "labels"):
        table.add_column(column, overflow="fold")
    for p in rows:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(p.labels.items()) if k != "latest")
        table.add_row(p.name, p.tenant or "-", str(p.latest.version if p.latest else "-"), labels or "-")
    Console().print(table)


@prompts_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@LABEL or NAME:VERSION.")],
    tenant: Tenant = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """A prompt's versions and labels, or (with @LABEL or :VERSION) one version's content."""
    with _open(database_url) as store:
        name, version = parse_prompt_ref(ref)
        info = store.get(name, tenant)
        picked = info.select(version, param="version") if version is not None else None
    if as_json:
        _print_json(picked.to_dict() if picked is not None else info.to_dict())
    elif picked is not None:
        typer.echo(f"{picked.ref}  {picked.digest}  {picked.author}  {picked.commit_message}")
        _print_json(picked.content)
    else:
        Console().print(_versions_table(info))


@label_app.command("set")
def label_set(
    name: str,
    label: str,
    version: int,
    protect: Annotated[
        bool | None,
        typer.Option("--protect/--unprotect", help="Protect the label (system admins only move it)."),
    ] = None,
    tenant: Tenant = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Point LABEL of prompt NAME at VERSION."""
    with _open(database_url) as store:
        info = store.set_label(name, label, version, tenant=tenant, protected=protect, actor=CLI_ACTOR)
    mark = " (protected)" if label in info.protected else ""
    typer.echo(f"{name}@{label} -> {version}{mark}")


@label_app.command("rm")
def label_rm(name: str, label: str, tenant: Tenant = None, database_url: DatabaseUrl = None) -> None:
    """Remove LABEL from prompt NAME."""
    with _open(database_url) as store:
        store.delete_label(name, label, tenant=tenant, actor=CLI_ACTOR)
    typer.echo(f"removed {name}@{label}")


def _variables(spec: PromptSpec, pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value of a variable declared non-string is read as JSON (``n=3``, ``on=true``)."""
    types = {v.name: v.type for v in spec.variables}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"--var takes NAME=VALUE, not {pair!r}", param="var")
        if types.get(key) not in (None, "string"):
            try:
                out[key] = json.loads(value)
                continue
            except ValueError:
                pass
        out[key] = value
    return out


@prompts_app.command("render")
def render_command(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@LABEL or NAME:VERSION.")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="A variable, NAME=VALUE (repeatable).")
    ] = None,
    tenant: Tenant = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Render a prompt version with the given variables (over its declared defaults)."""
    with _open(database_url) as store:
        _info, version = _select(store, ref, tenant)
        spec = version.spec()
        rendered = render(spec, _variables(spec, var or []))
    if as_json:
        _print_json({"prompt": version.ref, "rendered": rendered})
    elif isinstance(rendered, str):
        typer.echo(rendered)
    else:
        for message in rendered:
            typer.echo(f"[{message['role']}] {message['content']}")
