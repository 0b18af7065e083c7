"""Renderings of the run and compare documents: table, JSON, JUnit XML (validated against junit-10.xsd), HTML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from eval_docs import passing_doc, result, run_doc

from modelyard.evals.compare import compare_runs
from modelyard.evals.gate import evaluate_gate
from modelyard.evals.report import render_compare, render_run, write_html, write_junit
from modelyard.evals.report.html import render_compare_html, render_run_html

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).with_name("junit-10.xsd")))
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    results = []
    for target in ("smol", "smol-v2"):
        for i in range(6):
            for repeat in range(2):
                passed = not (target == "smol-v2" and i < 2)
                results.append(result(f"q{i}", target, passed, repeat=repeat, latency_s=0.1 + 0.01 * i))
    results.append(result("q6", "smol", False, error="upstream 503 \x07<boom>"))
    results.append(
        result("q7", "smol", False, output="<script>alert(1)</script>", reason="wanted \x01 'Paris' & more")
    )
    d = run_doc(results, ["smol", "smol-v2"])
    d["gate"] = evaluate_gate(d, {"min_pass_rate": 0.9})
    d["status"] = "failed"
    return d


def test_table_shows_targets_rates_gate_and_failures(doc: dict[str, Any]) -> None:
    text = render_run(doc, "table")
    assert "smol-v2" in text and "66.7%" in text and "75.0%" in text  # 4/6 and 6/8
    assert "status FAILED: gate failed" in text and "min_pass_rate 0.900" in text
    assert "q6" in text and "upstream 503" in text


def test_json_is_the_document(doc: dict[str, Any]) -> None:
    assert json.loads(render_run(doc, "json")) == json.loads(json.dumps(doc))


def test_junit_validates_and_has_one_case_per_item_and_target(doc: dict[str, Any]) -> None:
    xml = render_run(doc, "junit")
    SCHEMA.validate(xml)
    root = ET.fromstring(xml)
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 8 + 6 and {c.get("classname") for c in cases} == {"smol", "smol-v2"}
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("14", "3", "1")
    by_key = {(c.get("classname"), c.get("name")): c for c in cases}
    failure = by_key[("smol-v2", "q0")].find("failure")
    assert failure is not None and failure.get("message") == "failed: exact (0 of 2 repeats passed)"
    assert "repeat 1: exact (score 0.000): wrong answer" in (failure.text or "")
    error = by_key[("smol", "q6")].find("error")
    assert error is not None and "upstream 503" in (error.text or "")
    assert "wanted" in (by_key[("smol", "q7")].find("failure").text or "")  # type: ignore[union-attr]
    assert by_key[("smol", "q0")].find("failure") is None
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["run_id"] == "run-1" and props["dataset_digest"] == "sha256:data"


def test_the_schema_rejects_what_is_not_junit() -> None:
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(
            '<testsuites><testsuite name="x" tests="1"/></testsuites>'
        )  # failures, errors missing
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(
            '<testsuites><testsuite name="x" tests="1" failures="0" errors="0" time="1s"/></testsuites>'
        )


def _assert_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page


def test_html_is_self_contained_with_plots(doc: dict[str, Any]) -> None:
    page = render_run(doc, "html")
    _assert_self_contained(page)
    assert page.count("<svg") == 3 and "Latency distribution" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # model output is escaped
    assert "min_pass_rate 0.900" in page and "Failing items (4)" in page


def test_html_without_plots_says_how_to_get_them(doc: dict[str, Any]) -> None:
    page = render_run_html(doc, with_plots=False)
    _assert_self_contained(page)
    assert "<svg" not in page and "modelyard[reports]" in page


def test_compare_renderings() -> None:
    baseline = passing_doc([True] * 30, run_id="base")
    worse = passing_doc([False] * 8 + [True] * 22, run_id="worse")
    compared = compare_runs(baseline, worse)
    table = render_compare(compared, "table")
    assert "regression" in table and "0.0078" in table and "base" in table
    assert json.loads(render_compare(compared, "json"))["verdict"] == "regression"
    page = render_compare_html(compared)
    _assert_self_contained(page)
    assert page.count("<svg") == 1 and "q7" in page and "McNemar 1947" in page
    assert "<svg" not in render_compare_html(compared, with_plots=False)


def test_unknown_formats_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="junit"):
        render_run(doc, "pdf")
    with pytest.raises(ValueError):
        render_compare(doc, "junit")


def test_write_helpers(doc: dict[str, Any], tmp_path: Path) -> None:
    write_junit(doc, tmp_path / "a" / "junit.xml")
    write_html(doc, tmp_path / "b" / "report.html")
    SCHEMA.validate(str(tmp_path / "a" / "junit.xml"))
    assert (tmp_path / "b" / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_item_verdicts_of_reports_agree_with_the_summary(doc: dict[str, Any]) -> None:
    root = ET.fromstring(render_run(doc, "junit"))
    for suite in root.findall("testsuite"):
        s = doc["summary"][suite.get("name")]
        failed = int(suite.get("failures") or 0) + int(suite.get("errors") or 0)
        assert int(suite.get("tests") or 0) == s["items"]
        assert failed == round(s["items"] * (1 - s["pass_rate"]))
