"""``prompts lint --registry``: every labelled version of the prompt registry, linted from its content."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard.registry.lint.cli import lint_app
from modelyard.registry.lint.registry import lint_registry
from modelyard.registry.prompt_spec import spec_from_dict
from modelyard.registry.prompts import PromptRegistry
from modelyard.registry.service import Registry


def _spec(system: str) -> dict:
    return {
        "name": "greet",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
        "variables": [{"name": "who", "default": "you"}],
        "parameters": {"max_tokens": 16},
    }


def _seed(database_url: str) -> None:
    registry = Registry(database_url)
    registry.migrate()
    prompts = PromptRegistry(registry.engine)
    prompts.push(spec_from_dict(_spec("Greet {{ who }}.")), commit_message="v1")  # unlabelled later
    prompts.push(
        spec_from_dict(_spec("{# modelyard: disable=PL007 #}Greet {{ who }}.")), labels=["production"]
    )
    prompts.push(spec_from_dict(_spec("Greet warmly.{% if who %}{% endif %}")), commit_message="latest")
    registry.close()


def test_lints_labelled_versions_only(database_url: str) -> None:
    _seed(database_url)
    results = lint_registry(database_url)
    assert [r.path for r in results] == ["registry://greet:2", "registry://greet:3"]
    v2, v3 = ({f.rule: f for f in r.findings} for r in results)
    assert v2["PL007"].suppressed and v2["PL007"].where == "messages[0].content"
    assert "PL007" not in v3  # `who` only tested, not interpolated
    assert {r for r, f in v2.items() if not f.suppressed} == {"PL005"}


def test_cli_registry_with_files(database_url: str, tmp_path: Path) -> None:
    _seed(database_url)
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntext: '{{ x }'\n")
    result = CliRunner().invoke(
        lint_app, ["lint", str(path), "--registry", "--database-url", database_url, "-f", "sarif"]
    )
    assert result.exit_code == 1, result.output
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in json.loads(result.output)["runs"][0]["results"]
    }
    assert uris == {str(path.as_uri()), "registry://greet:2", "registry://greet:3"}


def test_nothing_to_lint_or_a_bad_database_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(lint_app, ["lint"]).exit_code == 2
    bad = runner.invoke(
        lint_app, ["lint", "--registry", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/x"]
    )
    assert bad.exit_code == 2
