"""``modelyard tenants|keys|adapters|usage``: tenancy administration straight on the metadata store.

Every command reads the same settings as ``modelyard serve`` (``--config``, ``MODELYARD_*``) for the
database and the key secret, migrates if needed, and prints JSON. The CLI acts as ``cli`` in the
audit log. ``modelyard keys create --admin`` on a fresh install makes the first system admin key
(which also turns authentication on under ``tenancy.auth: auto``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from modelyard.errors import ModelyardError
from modelyard.store.audit import CLI_ACTOR

tenants_app = typer.Typer(no_args_is_help=True, help="Tenants: create, list, show, update, delete.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")
adapters_app = typer.Typer(no_args_is_help=True, help="Private LoRA adapters of tenants.")
usage_app = typer.Typer(no_args_is_help=True, help="Usage: totals and CSV/Parquet export.")

ACTOR = CLI_ACTOR
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (as for serve).")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Metadata store URL.")]
Json = Annotated[str | None, typer.Option(help='JSON object, e.g. \'{"rpm": 60, "tpm": 100000}\'.')]


@contextmanager
def _store(config: Path | None, database_url: str | None) -> Iterator[Any]:
    from modelyard.settings import load_settings
    from modelyard.tenancy.keys import load_server_secret
    from modelyard.tenancy.service import open_store

    store = None
    try:
        settings = load_settings(config, {"database_url": database_url})
        secret = load_server_secret(settings.tenancy.secret, settings.resolved_data_dir)
        store = open_store(settings, secret)  # bumps the auth epoch in Redis after each change
        store.migrate()
        yield store
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        if store is not None:
            store.close()


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _obj(raw: str | None, name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"--{name} must be a JSON object")
    return value


@tenants_app.command("create")
def tenants_create(
    tenant: str,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Allowed model (repeat; `*` = all).")
    ] = None,
    limits: Json = None,
    budget: Json = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a tenant with its allowed models, limits and budget."""
    with _store(config, database_url) as s:
        info = s.create_tenant(
            tenant,
            models=model or [],
            limits=_obj(limits, "limits"),
            budget=_obj(budget, "budget"),
            actor=ACTOR,
        )
        _print(info.to_dict())


@tenants_app.command("list")
def tenants_list(config: Config = None, database_url: DatabaseUrl = None) -> None:
    with _store(config, database_url) as s:
        _print([t.to_dict() for t in s.list_tenants()])


@tenants_app.command("show")
def tenants_show(tenant: str, config: Config = None, database_url: DatabaseUrl = None) -> None:
    with _store(config, database_url) as s:
        _print(s.get_tenant(tenant).to_dict())


@tenants_app.command("update")
def tenants_update(
    tenant: str,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Replace the allowed models.")
    ] = None,
    limits: Json = None,
    budget: Json = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    with _store(config, database_url) as s:
        info = s.update_tenant(
            tenant,
            actor=ACTOR,
            models=model,
            limits=_obj(limits, "limits") if limits is not None else None,
            budget=_obj(budget, "budget") if budget is not None else None,
            disabled=disabled,
        )
        _print(info.to_dict())


@tenants_app.command("delete")
def tenants_delete(tenant: str, config: Config = None, database_url: DatabaseUrl = None) -> None:
    with _store(config, database_url) as s:
        s.delete_tenant(tenant, actor=ACTOR)
        _print({"id": tenant, "deleted": True})


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Owning tenant.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A system admin key (no tenant).")] = False,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="admin, inference, read (repeat).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label.")] = "",
    expires_in: Annotated[float | None, typer.Option(help="Seconds until the key expires.")] = None,
    limits: Json = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key. The key itself is printed once, on stdout's first line; it is never stored."""
    if admin == (tenant is not None):
        raise typer.BadParameter("pass exactly one of --admin and --tenant")
    scopes = ["admin"] if admin else (scope or ["inference"])
    expires = datetime.now(UTC) + timedelta(seconds=expires_in) if expires_in else None
    with _store(config, database_url) as s:
        info, plaintext = s.create_key(
            tenant, scopes, name=name, expires_at=expires, limits=_obj(limits, "limits"), actor=ACTOR
        )
        typer.echo(plaintext)
        print(json.dumps(info.to_dict(), default=str), file=sys.stderr)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    with _store(config, database_url) as s:
        _print([k.to_dict() for k in s.list_keys(tenant)])


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: Config = None, database_url: DatabaseUrl = None) -> None:
    """Revoke a key; every gateway process refuses it from its next request."""
    with _store(config, database_url) as s:
        _print(s.revoke_key(key_id, actor=ACTOR).to_dict())


@adapters_app.command("add")
def adapters_add(
    tenant: str,
    base_model: str,
    name: str,
    path: Path,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register the PEFT folder PATH as TENANT's adapter BASE_MODEL:NAME."""
    from modelyard.http.admin.adapters import check_adapter_dir

    with _store(config, database_url) as s:
        check_adapter_dir(path.expanduser())
        _print(
            s.create_adapter(
                tenant, base_model, name, str(path.expanduser().resolve()), actor=ACTOR
            ).to_dict()
        )


@adapters_app.command("register")
def adapters_register(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Owning tenant.")],
    base: Annotated[str, typer.Option("--base", help="Base model the adapter is for.")],
    name: Annotated[str, typer.Option("--name", help="Adapter name: clients call `BASE:NAME`.")],
    from_registry: Annotated[
        str | None,
        typer.Option("--from-registry", help="A registry version NAME:VERSION holding a PEFT LoRA folder."),
    ] = None,
    path: Annotated[
        Path | None, typer.Option("--path", help="A PEFT folder on this machine instead.")
    ] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register TENANT's adapter BASE:NAME from a registry artifact (copied and checked against the
    registry's digest) or from a folder (--path)."""
    from modelyard.http.admin.adapters import check_adapter_dir, stored_adapter_dir
    from modelyard.registry.adapters import copy_registry_adapter
    from modelyard.registry.service import Registry
    from modelyard.settings import load_settings
    from modelyard.tenancy.store import check_id

    if (from_registry is None) == (path is None):
        raise typer.BadParameter("give exactly one of --from-registry and --path")
    with _store(config, database_url) as s:
        check_id("name", name)
        if path is not None:
            check_adapter_dir(path.expanduser())
            _print(
                s.create_adapter(tenant, base, name, str(path.expanduser().resolve()), actor=ACTOR).to_dict()
            )
            return
        settings = load_settings(config, {"database_url": database_url})
        s.get_tenant(tenant)  # 404 before copying anything
        dest = stored_adapter_dir(settings, tenant, base, name)
        registry = Registry("", engine=s.engine)
        copy_registry_adapter(registry, from_registry or "", base, dest)
        try:
            info = s.create_adapter(tenant, base, name, str(dest), actor=ACTOR)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        _print(info.to_dict())


@adapters_app.command("list")
def adapters_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    with _store(config, database_url) as s:
        _print([a.to_dict() for a in s.list_adapters(tenant)])


@adapters_app.command("remove")
def adapters_remove(
    tenant: str, model_name: str, config: Config = None, database_url: DatabaseUrl = None
) -> None:
    """Delete TENANT's adapter BASE:NAME (Redis-queue workers unload it on their next heartbeat)."""
    import anyio

    from modelyard.http.admin.adapters import forget_adapter
    from modelyard.settings import load_settings

    base, name = model_name.rsplit(":", 1)
    with _store(config, database_url) as s:
        info = s.delete_adapter(tenant, base, name, actor=ACTOR)
        anyio.run(forget_adapter, load_settings(config, {"database_url": database_url}), info)
        _print(info.to_dict())


@usage_app.command("summary")
def usage_summary(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    group_by: Annotated[
        str, typer.Option(help="Comma list of tenant, model, day, key, adapter, status.")
    ] = "tenant,model",
    since: Annotated[str | None, typer.Option(help="ISO date/time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date/time (exclusive).")] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    with _store(config, database_url) as s:
        t0 = datetime.fromisoformat(since) if since else None
        t1 = datetime.fromisoformat(until) if until else None
        _print(s.usage_summary(tenant, [g for g in group_by.split(",") if g], since=t0, until=t1))


@usage_app.command("export")
def usage_export(
    out: Path,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    config: Config = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write every usage record (one row per request) to OUT for billing."""
    from modelyard.http.admin.usage import to_csv, to_parquet

    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("--format must be csv or parquet")
    with _store(config, database_url) as s:
        t0 = datetime.fromisoformat(since) if since else None
        t1 = datetime.fromisoformat(until) if until else None
        rows = s.usage_rows(tenant, since=t0, until=t1)
        out.write_bytes(to_csv(rows) if fmt == "csv" else to_parquet(rows))
        _print({"rows": len(rows), "path": str(out)})


def add_to(app: typer.Typer) -> None:
    app.add_typer(tenants_app, name="tenants", help="Tenants: create, list, show, update, delete.")
    app.add_typer(keys_app, name="keys", help="API keys: create (shown once), list, revoke.")
    app.add_typer(adapters_app, name="adapters", help="Private LoRA adapters of tenants.")
    app.add_typer(usage_app, name="usage", help="Usage: totals and CSV/Parquet export.")
