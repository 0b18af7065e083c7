"""``modelyard experiments`` in-process: create from a file, list, start, a refused second start,
stop, the report with its HTML page, and the sample-size calculator."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from modelyard.cli import app

runner = CliRunner()
SPEC = {
    "id": "cli-exp",
    "route": "chat",
    "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "params": {"temperature": 0.9}}],
}


def test_create_start_stop_and_report(tmp_path: Path) -> None:
    db = ["--database-url", f"sqlite:///{tmp_path / 'm.db'}"]
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    r = runner.invoke(app, ["experiments", "create", str(spec), *db])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "draft"
    spec.write_text(yaml.safe_dump({**SPEC, "id": "cli-2"}))
    assert runner.invoke(app, ["experiments", "create", str(spec), *db]).exit_code == 0
    assert runner.invoke(app, ["experiments", "start", "cli-exp", *db]).output.strip() == "cli-exp: running"
    r = runner.invoke(app, ["experiments", "start", "cli-2", *db])
    assert r.exit_code == 1 and "cli-exp" in r.output
    listed = json.loads(runner.invoke(app, ["experiments", "list", "--json", *db]).output)
    assert {e["id"]: e["status"] for e in listed} == {"cli-exp": "running", "cli-2": "draft"}
    page = tmp_path / "report.html"
    r = runner.invoke(app, ["experiments", "report", "cli-exp", "--html", str(page), *db])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["version"] == 1 and doc["decision"]["action"] == "keep_running"
    assert doc["decision"]["reason"].startswith("no data")
    assert "keep_running" in page.read_text()
    assert runner.invoke(app, ["experiments", "stop", "cli-exp", *db]).output.strip() == "cli-exp: stopped"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {**SPEC, "id": "bad", "variants": [{"name": "a", "weight": 10}, {"name": "b", "weight": 10}]}
        )
    )
    r = runner.invoke(app, ["experiments", "create", str(bad), *db])
    assert r.exit_code == 1 and "sum to 20" in r.output


def test_size() -> None:
    r = runner.invoke(app, ["experiments", "size", "--mde", "0.5", "--sd", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["units_per_variant"] == 252
    r = runner.invoke(app, ["experiments", "size", "--mde", "0.05", "--baseline-rate", "0.2"])
    assert 1000 < json.loads(r.output)["units_per_variant"] < 1200
    assert runner.invoke(app, ["experiments", "size", "--mde", "0.5"]).exit_code == 1


def test_rollout_start_status_and_check(tmp_path: Path) -> None:
    from modelyard.registry import Registry

    url = f"sqlite:///{tmp_path / 'm.db'}"
    db = ["--database-url", url]
    registry = Registry(url)
    registry.migrate()
    registry.register_model("chat")
    for i in (1, 2):
        registry.create_version(
            "chat", artifact_uri=f"https://example.com/{i}", architecture="llama", context_length=64
        )
    r = runner.invoke(app, ["rollout", "start", "chat", "--to", "2", *db])
    assert r.exit_code == 1 and "no stable version" in r.output
    registry.set_alias("chat", "production", 1)
    registry.close()
    r = runner.invoke(app, ["rollout", "start", "chat", "--to", "2", "--steps", "10,100", *db])
    assert r.exit_code == 0, r.output
    eid = json.loads(r.output)["id"]
    status = json.loads(runner.invoke(app, ["rollout", "status", eid, *db]).output)
    assert status["weights"] == {"stable": 90, "canary": 10} and status["rollout"]["state"] == "progressing"
    assert json.loads(runner.invoke(app, ["rollout", "check", *db]).output) == {eid: "wait"}
