"""``modelyard models``: list, register, show and alias the models of the registry.

Every command takes ``--database-url`` (default: ``$MODELYARD_DATABASE_URL``, else the SQLite file
``~/.local/share/modelyard/modelyard.db``), migrates the database if needed, prints rich tables,
or JSON with ``--json``. Errors print one line to stderr and exit with status 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelyard.errors import InvalidRequest, ModelNotFound, ModelyardError
from modelyard.registry.records import ModelInfo, Prices, VersionInfo
from modelyard.registry.sampling import SamplingDefaults
from modelyard.registry.service import Registry, version_fields
from modelyard.store.audit import CLI_ACTOR
from modelyard.store.db import default_database_url

app = typer.Typer(no_args_is_help=True, help="Model registry: list, register, show, alias set.")
alias_app = typer.Typer(no_args_is_help=True, help="Movable aliases (production, canary, ...).")
app.add_typer(alias_app, name="alias")
price_app = typer.Typer(no_args_is_help=True, help="Prices per 1000 tokens (cost and money budgets).")
app.add_typer(price_app, name="price")
defaults_app = typer.Typer(
    no_args_is_help=True, help="Sampling defaults of a version (for request fields left unset)."
)
app.add_typer(defaults_app, name="defaults")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Metadata database [default: $MODELYARD_DATABASE_URL, else ~/.local/share/modelyard/modelyard.db].",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _open(database_url: str | None) -> Iterator[Registry]:
    registry: Registry | None = None
    try:
        registry = Registry(database_url or default_database_url())
        registry.migrate()
        yield registry
    except ModelyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        Console(stderr=True).print(f"[red]error{where}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        if registry is not None:
            registry.close()


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_json_default, indent=2))


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def _price_text(prices: Prices | None) -> str:
    if prices is None:
        return "-"
    return f"{prices.prompt_per_1k:g} / {prices.completion_per_1k:g}"


def _defaults_text(defaults: SamplingDefaults) -> str:
    return " ".join(f"{k}={v}" for k, v in defaults.to_dict().items()) or "-"


def _versions_table(title: str, versions: tuple[VersionInfo, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("version", "aliases", "arch", "context", "quant", "digest", "defaults", "artifact"):
        table.add_column(column, overflow="fold")
    for v in versions:
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            v.architecture,
            str(v.context_length),
            v.quantization or "-",
            _short(v.digest),
            _defaults_text(v.defaults),
            v.artifact_uri,
        )
    return table


def _version_json(v: VersionInfo) -> dict[str, Any]:
    out = asdict(v)
    out["artifact_defaults"] = v.artifact_defaults.to_dict()
    out["default_overrides"] = v.default_overrides.to_dict()
    out["defaults"] = v.defaults.to_dict()
    return out


def _settings_defaults(name: str) -> SamplingDefaults:
    """The settings' defaults of local model ``name`` (the layer under the registry's), if it is one."""
    from modelyard.settings import load_settings

    try:
        settings = load_settings()
    except ModelyardError:
        return SamplingDefaults()
    found = next((m for m in settings.local_models if m.name == name), None)
    return SamplingDefaults.from_mapping(found.sampling_defaults() if found is not None else None)


@app.command("list")
def list_models(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """List registered models with their latest version and aliases."""
    with _open(database_url) as registry:
        models = registry.list_models()
    if as_json:
        _print_json([asdict(m) for m in models])
        return
    table = Table(title="Registered models", title_justify="left")
    for column in ("name", "versions", "latest", "aliases", "base", "price/1k in/out", "description"):
        table.add_column(column, overflow="fold")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-"
        latest = str(m.latest.version) if m.latest else "-"
        table.add_row(
            m.name,
            str(len(m.versions)),
            latest,
            aliases,
            "yes" if m.is_base_model else "no",
            _price_text(m.prices),
            m.description,
        )
    Console().print(table)


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="Model name (letters, digits, '.', '_', '-').")],
    artifact: Annotated[
        str,
        typer.Option("--artifact", help="Weights file or folder (digest computed), or a remote reference."),
    ],
    architecture: Annotated[str, typer.Option(help="Model architecture, e.g. llama, gemma3.")],
    context_length: Annotated[int, typer.Option("--context-length", help="Context window in tokens.")],
    quantization: Annotated[str | None, typer.Option(help="Weight quantization, e.g. Q4_K_M.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer location if not in the artifact.")] = None,
    digest: Annotated[str | None, typer.Option(help="sha256:<hex> of the artifact, to skip hashing.")] = None,
    serving_params: Annotated[
        str | None, typer.Option("--serving-params", help="Serving parameters as a JSON object.")
    ] = None,
    description: Annotated[str, typer.Option(help="Description, used when the model is new.")] = "",
    base_model: Annotated[
        bool, typer.Option("--base-model", help="A base (not instruction-tuned) model.")
    ] = False,
    alias: Annotated[
        str | None, typer.Option(help="Point this alias (e.g. production) at the new version.")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Add a new version of NAME (registering the model first if it is new)."""
    with _open(database_url) as registry:
        # Validate (and hash) before registering, so a bad version never leaves an empty model behind.
        fields = version_fields(
            artifact_uri=artifact,
            digest=digest,
            architecture=architecture,
            tokenizer=tokenizer,
            context_length=context_length,
            quantization=quantization,
            serving_params=_parse_params(serving_params),
        )
        try:
            registry.get_model(name)
        except ModelNotFound:
            registry.register_model(name, description=description, is_base_model=base_model, actor=CLI_ACTOR)
        version = registry.create_version(name, **fields, actor=CLI_ACTOR)
        if alias is not None:
            registry.set_alias(name, alias, version.version, actor=CLI_ACTOR)
            version = _find_version(registry.get_model(name), version.version)
    if as_json:
        _print_json(asdict(version))
        return
    Console().print(_versions_table(f"Registered {name}:{version.version}", (version,)))


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show a model with all its versions and aliases, and its sampling defaults.

    A version's defaults are the registry's (an operator's over the artifact's); the settings'
    defaults of a local model (``local_models[].defaults``, read from the same config as ``serve``)
    fill the fields they leave unset."""
    with _open(database_url) as registry:
        model = registry.get_model(name)
    fallback = _settings_defaults(name)
    if as_json:
        data = asdict(model)
        data["versions"] = [_version_json(v) for v in model.versions]
        data["settings_defaults"] = fallback.to_dict()
        _print_json(data)
        return
    console = Console()
    kind = "base model" if model.is_base_model else "model"
    console.print(f"[bold]{model.name}[/bold] ({kind}) {model.description}".rstrip(), highlight=False)
    console.print(f"price per 1k tokens (prompt / completion): {_price_text(model.prices)}", highlight=False)
    console.print(f"settings defaults (under each version's): {_defaults_text(fallback)}", highlight=False)
    console.print(_versions_table("Versions", model.versions))


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production or canary.")],
    version: Annotated[int, typer.Argument(help="Version number the alias points at.")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Point ALIAS of NAME at VERSION (creating or moving it)."""
    _alias_change(
        database_url, as_json, name, alias, lambda r: r.set_alias(name, alias, version, actor=CLI_ACTOR)
    )


@alias_app.command("delete")
def alias_delete(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Remove ALIAS from NAME."""
    _alias_change(database_url, as_json, name, alias, lambda r: r.delete_alias(name, alias, actor=CLI_ACTOR))


@price_app.command("set")
def price_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    prompt_per_1k: Annotated[float, typer.Option("--prompt-per-1k", help="Price of 1000 prompt tokens.")],
    completion_per_1k: Annotated[
        float, typer.Option("--completion-per-1k", help="Price of 1000 completion tokens.")
    ],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Set NAME's prices; servers pick them up within registry_poll_s."""
    with _open(database_url) as registry:
        model = registry.set_prices(
            name, prompt_per_1k=prompt_per_1k, completion_per_1k=completion_per_1k, actor=CLI_ACTOR
        )
    _print_prices(model, as_json)


@price_app.command("clear")
def price_clear(
    name: Annotated[str, typer.Argument(help="Model name.")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Remove NAME's prices (the tenancy.prices setting applies again)."""
    with _open(database_url) as registry:
        model = registry.clear_prices(name, actor=CLI_ACTOR)
    _print_prices(model, as_json)


VersionArg = Annotated[
    int | None,
    typer.Argument(help="Version number [default: the one `production` points at, else the latest]."),
]


@defaults_app.command("set")
def defaults_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg = None,
    temperature: Annotated[float | None, typer.Option(help="0-2; 0 is greedy.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="(0, 1].")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="0 is off.")] = None,
    min_p: Annotated[float | None, typer.Option("--min-p", help="0-1.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Chat and completions.")] = None,
    presence_penalty: Annotated[float | None, typer.Option("--presence-penalty", help="-2..2.")] = None,
    frequency_penalty: Annotated[float | None, typer.Option("--frequency-penalty", help="-2..2.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option("--repetition-penalty", help="(0, 2].")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="A stop sequence (repeatable).")] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Set the sampling defaults of NAME's VERSION (replacing earlier ones); servers pick them up
    within registry_poll_s. Requests that set a field themselves keep their value."""
    given = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "min_p": min_p,
        "max_tokens": max_tokens,
        "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty,
        "repetition_penalty": repetition_penalty,
        "stop": stop or None,
    }
    with _open(database_url) as registry:
        number = version if version is not None else registry.resolve(name).version
        info = registry.set_defaults(name, number, given, actor=CLI_ACTOR)
    _print_defaults(info, as_json)


@defaults_app.command("clear")
def defaults_clear(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Remove the operator's defaults of NAME's VERSION (the artifact's and the settings' apply)."""
    with _open(database_url) as registry:
        number = version if version is not None else registry.resolve(name).version
        info = registry.clear_defaults(name, number, actor=CLI_ACTOR)
    _print_defaults(info, as_json)


def _print_defaults(info: VersionInfo, as_json: bool) -> None:
    if as_json:
        _print_json({"model": info.model, "version": info.version, "defaults": info.defaults.to_dict()})
        return
    Console().print(f"{info.model}:{info.version} defaults: {_defaults_text(info.defaults)}", highlight=False)


def _print_prices(model: ModelInfo, as_json: bool) -> None:
    if as_json:
        _print_json({"model": model.name, "prices": asdict(model.prices) if model.prices else None})
        return
    Console().print(f"{model.name}: price per 1k tokens {_price_text(model.prices)}", highlight=False)


def _alias_change(
    database_url: str | None, as_json: bool, name: str, alias: str, change: Callable[[Registry], object]
) -> None:
    with _open(database_url) as registry:
        change(registry)
        aliases = registry.get_model(name).aliases
    if as_json:
        _print_json({"model": name, "aliases": aliases})
        return
    target = aliases.get(alias)
    message = f"{name}@{alias} → version {target}" if target is not None else f"{name}@{alias} removed"
    Console().print(message, highlight=False)


def _parse_params(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (OSError, ValueError) as exc:
        raise InvalidRequest(
            f"--serving-params is not valid JSON (or @file): {exc}", param="serving_params"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequest("--serving-params must be a JSON object", param="serving_params")
    return value


def _find_version(model: ModelInfo, number: int) -> VersionInfo:
    found = model.version(number)
    assert found is not None  # just created in this command
    return found
