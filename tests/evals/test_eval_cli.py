"""``modelyard eval report`` and ``modelyard eval compare`` through the root app, on run-document files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from eval_docs import passing_doc, result, run_doc
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.evals.cli import make_eval_app
from modelyard.evals.gate import evaluate_gate, run_status

runner = CliRunner()


def write(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def gated(flags: list[bool], min_pass_rate: float, run_id: str = "run-1") -> dict[str, Any]:
    doc = passing_doc(flags, run_id=run_id)
    doc["gate"] = evaluate_gate(doc, {"min_pass_rate": min_pass_rate})
    doc["status"] = run_status(doc["gate"], run_failed=False)
    return doc


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "report" in result.output and "compare" in result.output


@pytest.mark.parametrize(("min_rate", "code"), [(0.5, 0), (0.9, 1)])
def test_report_exit_code_follows_the_gate(tmp_path: Path, min_rate: float, code: int) -> None:
    run = write(tmp_path / "run.json", gated([True, True, False], min_rate))
    result = runner.invoke(app, ["eval", "report", run])
    assert result.exit_code == code, result.output
    assert "66.7%" in result.output


def test_report_of_a_failed_run_exits_2(tmp_path: Path) -> None:
    doc = passing_doc([True])
    doc["status"] = "error"
    assert runner.invoke(app, ["eval", "report", write(tmp_path / "run.json", doc)]).exit_code == 2


@pytest.mark.parametrize("fmt", ["json", "junit", "html", "table"])
def test_report_writes_each_format(tmp_path: Path, fmt: str) -> None:
    run = write(tmp_path / "run.json", gated([True, False], 0.0))
    out = tmp_path / "out" / f"report.{fmt}"
    result = runner.invoke(app, ["eval", "report", run, "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    if fmt == "json":
        assert json.loads(text)["run_id"] == "run-1"
    elif fmt == "junit":
        assert len(ET.fromstring(text).findall("./testsuite/testcase")) == 2
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>")
    else:
        assert "pass rate" in text


def test_compare_exits_1_on_a_significant_regression_only(tmp_path: Path) -> None:
    base = write(tmp_path / "a.json", passing_doc([True] * 30, run_id="a"))
    worse = write(tmp_path / "b.json", passing_doc([False] * 8 + [True] * 22, run_id="b"))
    same = write(tmp_path / "c.json", passing_doc([True] * 30, run_id="c"))
    slightly = write(tmp_path / "d.json", passing_doc([False] * 2 + [True] * 28, run_id="d"))
    result = runner.invoke(app, ["eval", "compare", base, worse])
    assert result.exit_code == 1 and "regression" in result.output
    assert runner.invoke(app, ["eval", "compare", base, same]).exit_code == 0
    assert runner.invoke(app, ["eval", "compare", base, slightly]).exit_code == 0  # p = 0.5: noise
    assert runner.invoke(app, ["eval", "compare", worse, base]).exit_code == 0  # an improvement
    as_json = runner.invoke(app, ["eval", "compare", base, worse, "--format", "json", "--resamples", "500"])
    assert json.loads(as_json.output)["comparisons"][0]["pass_to_fail"] == 8
    html = tmp_path / "cmp.html"
    assert runner.invoke(app, ["eval", "compare", base, worse, "-f", "html", "-o", str(html)]).exit_code == 1
    assert "McNemar" in html.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no run document"), ("{not json", "not a JSON run document"), ('{"a": 1}', "not a run document")],
)
def test_unloadable_runs_exit_2_with_a_message(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["eval", "report", str(path)])
    assert result.exit_code == 2 and message in result.output
    other = write(tmp_path / "ok.json", passing_doc([True]))
    assert runner.invoke(app, ["eval", "compare", other, str(path)]).exit_code == 2


def test_bad_options_exit_2(tmp_path: Path) -> None:
    run = write(tmp_path / "run.json", passing_doc([True]))
    assert runner.invoke(app, ["eval", "report", run, "--format", "pdf"]).exit_code == 2
    assert runner.invoke(app, ["eval", "compare", run, run, "--format", "junit"]).exit_code == 2
    assert runner.invoke(app, ["eval", "compare", run, run, "--alpha", "1.5"]).exit_code == 2


def test_the_run_loader_is_a_hook(tmp_path: Path) -> None:
    store = {"run-7": gated([True], 0.5, run_id="run-7")}
    custom = make_eval_app(load_run=lambda ref: store[ref])
    result = runner.invoke(custom, ["report", "run-7", "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["run_id"] == "run-7"


def test_compare_pairs_targets_on_request_even_within_one_run(tmp_path: Path) -> None:
    doc = run_doc(
        [result(f"q{i}", "old", True) for i in range(30)]
        + [result(f"q{i}", "new", i >= 8) for i in range(30)],
        ["old", "new"],
    )
    run = write(tmp_path / "ab.json", doc)
    result_ = runner.invoke(app, ["eval", "compare", run, run, "--pair", "old=new", "-f", "json"])
    assert result_.exit_code == 1 and json.loads(result_.output)["comparisons"][0]["pass_to_fail"] == 8
    assert runner.invoke(app, ["eval", "compare", run, run]).exit_code == 0  # same names: identical
    assert runner.invoke(app, ["eval", "compare", run, run, "--pair", "old"]).exit_code == 2
