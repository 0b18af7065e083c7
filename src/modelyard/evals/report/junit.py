"""JUnit XML of a run document: one ``<testsuite>`` per target, one ``<testcase>`` per item and target.

The dialect is that of the Jenkins xUnit plugin's ``junit-10.xsd`` (what Jenkins, GitLab and GitHub
test reporters read; ``tests/evals/junit-10.xsd`` checks it). ``classname`` is the target and
``name`` the item id; ``time`` is the item's summed latency. An item that fails (fewer than half its
repeats passed) carries a ``<failure>`` whose message names the failing scorers and whose text
lists every failing verdict with its reason and the answer; an item that failed only through errors
(no repeat passed, one errored) carries an ``<error>`` instead. Properties record the run, suite,
dataset and target identity so a CI artefact can be traced back to the stored run.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from modelyard.evals.report.common import item_views, title

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: object) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))


def _time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def _property(parent: ET.Element, name: str, value: object) -> None:
    if value is not None:
        ET.SubElement(parent, "property", name=name, value=_clean(value))


def render_junit(doc: Mapping[str, Any]) -> str:
    """The JUnit XML document (UTF-8 text with an XML declaration)."""
    views = item_views(doc)
    root = ET.Element("testsuites", name=_clean(title(doc)))
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    dataset: Mapping[str, Any] = doc.get("dataset") or {}
    for target in doc.get("targets") or []:
        name = str(target["name"])
        mine = [v for v in views if v.target == name]
        failures = sum(1 for v in mine if not v.passed and not v.errored)
        errors = sum(1 for v in mine if v.errored)
        elapsed = sum(v.latency_s for v in mine)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_clean(name),
            tests=str(len(mine)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time=_time(elapsed),
            timestamp=_clean(doc.get("created_at") or ""),
        )
        properties = ET.SubElement(suite, "properties")
        _property(properties, "run_id", doc.get("run_id"))
        _property(properties, "suite", (doc.get("suite") or {}).get("name"))
        _property(properties, "suite_digest", (doc.get("suite") or {}).get("digest"))
        _property(properties, "dataset", f"{dataset.get('name')}@{dataset.get('version')}")
        _property(properties, "dataset_digest", dataset.get("digest"))
        _property(properties, "git_commit", doc.get("git_commit"))
        for key in ("kind", "ref", "resolved", "digest"):
            _property(properties, f"target_{key}", target.get(key))
        _property(properties, "pass_rate", ((doc.get("summary") or {}).get(name) or {}).get("pass_rate"))
        for view in mine:
            case = ET.SubElement(suite, "testcase", classname=_clean(name), name=_clean(view.item_id))
            case.set("time", _time(view.latency_s))
            if view.passed:
                continue
            body = list(view.problems())
            answers = [r.get("output") for r in view.results if r.get("output") is not None]
            if answers:
                body.append("answer: " + str(answers[0]))
            tag = "error" if view.errored else "failure"
            element = ET.SubElement(case, tag, message=_clean(view.headline()), type=f"eval.{tag}")
            element.text = _clean("\n".join(body))
        totals["tests"] += len(mine)
        totals["failures"] += failures
        totals["errors"] += errors
        totals["time"] += elapsed
    for key in ("tests", "failures", "errors"):
        root.set(key, str(int(totals[key])))
    root.set("time", _time(totals["time"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
