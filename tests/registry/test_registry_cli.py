"""``modelyard models`` sub-commands through typer's CliRunner, against a real SQLite registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from modelyard.registry import Registry
from modelyard.registry.cli import app


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MODELYARD_DATABASE_URL", url)  # read by each command when it runs
    monkeypatch.setenv("COLUMNS", "200")
    return url


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF cli weights")
    return path


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _register(weights: Path, *extra: str) -> tuple[int, str, str]:
    return _run(
        "register",
        "smol",
        "--artifact",
        str(weights),
        "--architecture",
        "llama",
        "--context-length",
        "8192",
        *extra,
    )


def test_register_list_show_and_alias(db_url: str, weights: Path) -> None:
    code, out, err = _register(
        weights,
        "--quantization",
        "Q4_1",
        "--alias",
        "production",
        "--json",
        "--serving-params",
        '{"max_tokens": 512}',
    )
    assert code == 0, err
    version = json.loads(out)
    assert (version["version"], version["aliases"], version["serving_params"]) == (
        1,
        ["production"],
        {"max_tokens": 512},
    )
    assert version["digest"] == "sha256:" + hashlib.sha256(b"GGUF cli weights").hexdigest()

    weights.write_bytes(b"GGUF v2")
    code, out, err = _register(weights)
    assert code == 0, err
    assert "smol:2" in out and "llama" in out

    code, out, _ = _run("list", "--json")
    assert code == 0
    [model] = json.loads(out)
    assert (model["name"], len(model["versions"]), model["aliases"]) == ("smol", 2, {"production": 1})

    code, out, _ = _run("list")
    assert code == 0 and "smol" in out and "production→1" in out

    code, out, _ = _run("alias", "set", "smol", "production", "2")
    assert code == 0 and "smol@production → version 2" in out
    code, out, _ = _run("alias", "set", "smol", "canary", "1", "--json")
    assert json.loads(out) == {"model": "smol", "aliases": {"canary": 1, "production": 2}}

    code, out, _ = _run("show", "smol")
    assert code == 0
    assert "Versions" in out and "canary" in out and "Q4_1" in out

    code, out, _ = _run("alias", "delete", "smol", "canary")
    assert code == 0 and "removed" in out

    registry = Registry(db_url)
    try:
        assert registry.resolve("smol").version == 2
        assert registry.get_model("smol").aliases == {"production": 2}
    finally:
        registry.close()


def test_database_url_option_overrides_the_environment(db_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, out, err = _run(
        "register",
        "remote",
        "--artifact",
        "openai_compat://vllm-a",
        "--architecture",
        "remote",
        "--context-length",
        "4096",
        "--database-url",
        other,
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["digest"] is None
    assert json.loads(_run("list", "--json")[1]) == []
    assert [m["name"] for m in json.loads(_run("list", "--json", "--database-url", other)[1])] == ["remote"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "ghost"), "'ghost' does not exist"),
        (("alias", "set", "ghost", "production", "1"), "'ghost' does not exist"),
        (
            (
                "register",
                "bad name",
                "--artifact",
                "openai_compat://x",
                "--architecture",
                "a",
                "--context-length",
                "1",
            ),
            "invalid model name",
        ),
        (
            ("register", "m", "--artifact", "/no/such/file", "--architecture", "a", "--context-length", "1"),
            "does not exist",
        ),
        (
            (
                "register",
                "m",
                "--artifact",
                "openai_compat://x",
                "--architecture",
                "a",
                "--context-length",
                "1",
                "--serving-params",
                "[1]",
            ),
            "JSON object",
        ),
        (("list", "--database-url", "mysql://nope/db"), "unsupported database"),
    ],
)
def test_errors_exit_1_with_a_message(db_url: str, args: tuple[str, ...], message: str) -> None:
    code, out, err = _run(*args)
    assert code == 1
    assert message in " ".join(err.split())
    assert out == ""
    if args[0] == "register":  # a rejected version does not leave an empty model behind
        assert json.loads(_run("list", "--json")[1]) == []


def test_every_registry_change_is_audited_as_the_cli(db_url: str, weights: Path) -> None:
    assert _register(weights, "--alias", "production")[0] == 0
    assert _run("alias", "set", "smol", "canary", "1")[0] == 0
    assert _run("alias", "delete", "smol", "canary")[0] == 0
    assert _run("price", "set", "smol", "--prompt-per-1k", "0.5", "--completion-per-1k", "1.5")[0] == 0
    assert _run("price", "clear", "smol")[0] == 0
    assert _run("alias", "delete", "smol", "nope")[0] == 1  # refused: nothing is stored, nothing audited

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT actor, action, target FROM audit_log ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("cli", "model.register", "smol"),
        ("cli", "model.version.create", "smol:1"),
        ("cli", "model.alias.set", "smol@production"),
        ("cli", "model.alias.set", "smol@canary"),
        ("cli", "model.alias.delete", "smol@canary"),
        ("cli", "model.prices.set", "smol"),
        ("cli", "model.prices.clear", "smol"),
    ]
