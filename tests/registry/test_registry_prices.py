"""Per-model prices in the registry (SQLite and PostgreSQL): validation, revision bumps, the 0004
migration on a database that already holds 0003 rows, the price book's cache, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from modelyard.errors import InvalidRequest, ModelNotFound
from modelyard.registry import Prices, Registry
from modelyard.registry.cli import app
from modelyard.registry.prices import PriceBook
from modelyard.store.db import create_db_engine, migrate


def test_set_and_clear_prices_bump_the_revision(registry: Registry, artifact: Path) -> None:
    registry.register_model("smol")
    registry.create_version("smol", artifact_uri=str(artifact), architecture="llama", context_length=512)
    assert registry.get_model("smol").prices is None
    before = registry.revision()
    info = registry.set_prices("smol", prompt_per_1k=0.5, completion_per_1k=1.25)
    assert info.prices == Prices(0.5, 1.25)
    assert registry.revision() == before + 1
    registry.set_prices("smol", prompt_per_1k=0.5, completion_per_1k=1.25)  # no change, no bump
    assert registry.revision() == before + 1
    assert registry.prices() == {"smol": Prices(0.5, 1.25)}
    assert registry.list_models()[0].prices == Prices(0.5, 1.25)
    assert registry.clear_prices("smol").prices is None
    assert registry.prices() == {}
    assert registry.revision() == before + 2


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf, -math.inf, True, "1", None, 2e6])
def test_bad_prices_are_refused_and_change_nothing(registry: Registry, bad: object) -> None:
    registry.register_model("smol")
    registry.set_prices("smol", prompt_per_1k=1.0, completion_per_1k=2.0)
    revision = registry.revision()
    with pytest.raises(InvalidRequest) as err:
        registry.set_prices("smol", prompt_per_1k=1.0, completion_per_1k=bad)  # type: ignore[arg-type]
    assert err.value.param == "completion_per_1k"
    assert registry.get_model("smol").prices == Prices(1.0, 2.0)
    assert registry.revision() == revision


def test_prices_of_an_unknown_model_are_404(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.set_prices("nope", prompt_per_1k=1.0, completion_per_1k=1.0)


def test_0004_upgrades_a_0003_database_without_losing_rows(database_url: str, artifact: Path) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine, "0003_request_log")
        old = Registry("", engine=engine)
        old_models = ("a", "b")
        # The ORM now knows the new columns, so the 0003 rows are written with plain SQL.
        with engine.begin() as conn:
            for i, name in enumerate(old_models, 1):
                conn.execute(
                    text(
                        "INSERT INTO registry_models (id, name, description, is_base_model, created_at) "
                        "VALUES (:id, :name, 'old', false, CURRENT_TIMESTAMP)"
                    ),
                    {"id": i, "name": name},
                )
                conn.execute(
                    text(
                        "INSERT INTO registry_model_versions (model_id, version, artifact_uri, digest, "
                        "architecture, context_length, serving_params, created_at) VALUES "
                        "(:id, 1, :uri, NULL, 'llama', 512, '{}', CURRENT_TIMESTAMP)"
                    ),
                    {"id": i, "uri": str(artifact)},
                )
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, models, limits, budget, disabled, created_at) "
                    "VALUES ('acme', 'acme', '[]', '{}', '{}', false, CURRENT_TIMESTAMP)"
                )
            )
        migrate(engine)
        models = old.list_models()
        assert [(m.name, m.description, len(m.versions), m.prices) for m in models] == [
            ("a", "old", 1, None),
            ("b", "old", 1, None),
        ]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 1
        old.set_prices("b", prompt_per_1k=0.1, completion_per_1k=0.2)
        assert old.prices() == {"b": Prices(0.1, 0.2)}
    finally:
        engine.dispose()


def test_price_book_reloads_only_when_the_revision_moves(registry: Registry) -> None:
    registry.register_model("smol")
    registry.register_model("other")
    book = PriceBook(registry, {"smol": {"prompt_per_1k": 9.0}, "only-settings": {"completion_per_1k": 2.0}})
    assert book.refresh() is True
    assert book.refresh() is False
    assert book.price("smol") == Prices(9.0, 0.0)  # settings fallback
    assert book.cost("only-settings", 1000, 500) == pytest.approx(1.0)
    assert book.cost("unknown", 1000, 1000) == 0.0
    registry.set_prices("smol", prompt_per_1k=1.0, completion_per_1k=3.0)
    assert book.price("smol") == Prices(9.0, 0.0)  # cached until the next refresh
    assert book.refresh() is True
    assert book.price("smol") == Prices(1.0, 3.0)  # the registry wins over the settings
    assert book.cost("smol", 2000, 1000) == pytest.approx(5.0)
    registry.clear_prices("smol")
    book.refresh()
    assert book.price("smol") == Prices(9.0, 0.0)


def test_cli_price_set_show_list_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF")
    runner = CliRunner()
    args = [
        "register",
        "smol",
        "--artifact",
        str(weights),
        "--architecture",
        "llama",
        "--context-length",
        "64",
    ]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(
        app, ["price", "set", "smol", "--prompt-per-1k", "0.25", "--completion-per-1k", "0.75", "--json"]
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {
        "model": "smol",
        "prices": {"prompt_per_1k": 0.25, "completion_per_1k": 0.75},
    }
    shown = json.loads(runner.invoke(app, ["show", "smol", "--json"]).stdout)
    assert shown["prices"] == {"prompt_per_1k": 0.25, "completion_per_1k": 0.75}
    assert "0.25 / 0.75" in runner.invoke(app, ["show", "smol"]).stdout
    assert "0.25 / 0.75" in runner.invoke(app, ["list"]).stdout
    r = runner.invoke(app, ["price", "set", "smol", "--prompt-per-1k", "-1", "--completion-per-1k", "1"])
    assert r.exit_code == 1 and "prompt_per_1k" in r.stderr
    r = runner.invoke(app, ["price", "clear", "smol", "--json"])
    assert json.loads(r.stdout)["prices"] is None
