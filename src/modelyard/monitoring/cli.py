"""``modelyard logs search`` and ``modelyard top``.

``logs search`` reads the request log straight from the metadata database (``--database-url``,
default ``$MODELYARD_DATABASE_URL`` else the SQLite file in the default data dir) and prints a table,
or JSON lines with ``--json``. ``top`` reads a running server's ``/metrics``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modelyard.errors import ModelyardError
from modelyard.settings import API_KEY_ENV

logs_app = typer.Typer(no_args_is_help=True, help="The request log: search stored prompts and responses.")
console = Console()
err_console = Console(stderr=True)


@logs_app.command("search")
def search_cmd(
    model: Annotated[str | None, typer.Option(help="Served model name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id (`anonymous` without auth).")] = None,
    since: Annotated[str | None, typer.Option(help="`15m`, `2h`, `7d` or an ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Same forms as --since.")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="One request.")] = None,
    status: Annotated[int | None, typer.Option(help="HTTP status (499: client disconnected).")] = None,
    contains: Annotated[str | None, typer.Option(help="Substring of the response.")] = None,
    limit: Annotated[int, typer.Option(help="Most records (1-1000), newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Metadata database [default: $MODELYARD_DATABASE_URL]."),
    ] = None,
) -> None:
    """Search the request log by model, tenant and time."""
    import orjson

    from modelyard.monitoring.requestlog.query import LogQuery, parse_since, search
    from modelyard.store.db import create_db_engine, default_database_url, migrate

    try:
        engine = create_db_engine(database_url or default_database_url())
        try:
            migrate(engine)
            rows = search(
                engine,
                LogQuery(
                    model=model,
                    tenant=tenant,
                    since=parse_since(since) if since else None,
                    until=parse_since(until) if until else None,
                    request_id=request_id,
                    status=status,
                    contains=contains,
                    limit=limit,
                ),
            )
        finally:
            engine.dispose()
    except ModelyardError as exc:
        err_console.print(f"[red]modelyard: {exc.message}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    table = Table()
    for col in (
        "time",
        "request",
        "tenant",
        "model",
        "status",
        "finish",
        "in",
        "out",
        "TTFT ms",
        "ms",
        "response",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["created_at"][:23],
            r["request_id"][:16],
            r["tenant"],
            r["model"],
            str(r["status"]),
            r["finish_reason"] or r["error"] or "",
            str(r["prompt_tokens"] or ""),
            str(r["completion_tokens"] or ""),
            "" if r["ttft_ms"] is None else f"{r['ttft_ms']:.1f}",
            f"{r['latency_ms']:.1f}",
            (r["response"] or "")[:60].replace("\n", " "),
        )
    (console if console.is_terminal else Console(width=200)).print(table)  # pipes get whole rows


def top_cmd(
    url: Annotated[str, typer.Option(help="Base URL of the running server.")] = "http://127.0.0.1:8000",
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between scrapes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=API_KEY_ENV,
            help="System admin key sent to a server with `tenancy.metrics_require_key`.",
        ),
    ] = None,
) -> None:
    """Live view of a running server: models, requests, TTFT, tokens/s, queue (from /metrics)."""
    import httpx

    from modelyard.monitoring.top import run

    try:
        frame = run(url, interval, once, api_key)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]modelyard: cannot read {url}/metrics: {exc}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        return
    if frame is not None:
        Console(width=160).print(frame)


def add_to(app: typer.Typer) -> None:
    """Register ``logs`` and ``top`` on the root CLI."""
    app.add_typer(logs_app, name="logs", help="The request log: search stored prompts and responses.")
    app.command("top")(top_cmd)
