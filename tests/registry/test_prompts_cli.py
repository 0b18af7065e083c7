"""``modelyard prompts`` through the real CLI app (typer's CliRunner) against a SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli import app

PROMPT = """\
name: capital-qa
messages:
  - role: system
    content: City only.
  - role: user
    content: "Capital of {{ country }}? ({{ n }} words)"
variables:
  - {name: country, default: France}
  - {name: n, type: integer, default: 1}
model: remote-chat
parameters: {temperature: 0, max_tokens: 8}
"""


@pytest.fixture(autouse=True)
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MODELYARD_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    return url


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["prompts", *args])
    return result.exit_code, result.stdout, result.stderr


def test_push_show_label_render(tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text(PROMPT)
    code, out, err = run("push", str(path), "-m", "first", "--label", "production")
    assert code == 0, err
    assert out.startswith("pushed capital-qa:1 (latest, production)")
    code, out, _ = run("push", str(path))
    assert code == 0 and out.startswith("unchanged: still capital-qa:1")
    path.write_text(PROMPT.replace("City only.", "The city, nothing else."))
    code, out, _ = run("push", str(path), "-m", "stricter", "--json")
    pushed = json.loads(out)
    assert code == 0 and (pushed["version"], pushed["created"], pushed["author"]) == (2, True, "cli")

    code, out, _ = run("list", "--json")
    assert code == 0 and json.loads(out)[0]["labels"] == {"production": 1, "latest": 2}
    code, out, _ = run("show", "capital-qa")
    assert code == 0 and "stricter" in out and "production" in out
    code, out, _ = run("show", "capital-qa@production", "--json")
    assert json.loads(out)["messages"][0]["content"] == "City only."

    code, out, _ = run("render", "capital-qa", "--var", "country=Peru", "--var", "n=2")
    assert code == 0 and out.splitlines() == ["[system] City only.", "[user] Capital of Peru? (2 words)"]
    code, _, err = run("label", "set", "capital-qa", "production", "2", "--protect")
    assert code == 0
    code, out, _ = run("render", "capital-qa:2", "--json")
    assert json.loads(out)["rendered"][0]["content"] == "The city, nothing else."
    code, out, _ = run("render", "capital-qa", "--json")
    assert json.loads(out)["prompt"] == "capital-qa:2"
    code, out, _ = run("label", "rm", "capital-qa", "production")
    assert code == 0 and out.strip() == "removed capital-qa@production"


def test_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text(PROMPT)
    assert run("push", str(path))[0] == 0
    code, _, err = run("render", "capital-qa", "--var", "n=many")
    assert code == 1 and "prompt.variables.n" in err
    code, _, err = run("show", "capital-qa@nope")
    assert code == 1 and "(version)" in err
    code, _, err = run("label", "set", "capital-qa", "latest", "1")
    assert code == 1 and "(label)" in err
    code, _, err = run("show", "missing")
    assert code == 1 and "(name)" in err
    path.write_text(PROMPT.replace("{{ country }}", "{{ country "))
    code, _, err = run("push", str(path))
    assert code == 1 and "messages[1].content" in err
