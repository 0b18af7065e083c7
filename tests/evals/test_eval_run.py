"""``modelyard eval run`` against a real ``modelyard serve`` (remote deployments on the mock upstream),
driven as a subprocess: the run document, retries, errors, gates and exit codes, the scripted judge, and
bad input that exits 2 before any request, storing nothing. ``POST /admin/evals`` runs a stored dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from modelyard.registry.dataset_tables import EvalRunRow
from modelyard.store.db import create_db_engine
from servers import MockUpstream, RemoteServer

WORDS = ["Paris", "Tokyo", "Rome", "Berlin", "Madrid", "Oslo"]


def write_dataset(path: Path, n: int = 6, *, half_wrong: bool = False) -> Path:
    rows = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        expected = "Nowhere" if half_wrong and i % 2 else word
        rows.append(
            {"id": f"q{i}", "input": [{"role": "user", "content": f"say {word}"}], "expected": expected}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Eval:
    """``python -m modelyard.evals.run_cli run`` with its own metadata store (not the server's)."""

    def __init__(self, tmp: Path, server: RemoteServer) -> None:
        self.tmp, self.server = tmp, server
        self.db = f"sqlite:///{tmp / 'evals.db'}"
        self.config = tmp / "settings.yaml"
        self.config.write_text(yaml.safe_dump({"data_dir": str(tmp / "data"), "database_url": self.db}))

    def suite(self, name: str, body: dict[str, Any]) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **body}) if isinstance(body, dict) else body)
        return path

    def run(
        self, suite: Path, *extra: str, url: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
        out = self.tmp / f"{suite.stem}.json"
        out.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "modelyard.evals.run_cli",
            "run",
            str(suite),
            "-c",
            str(self.config),
            "-q",
            "--out",
            str(out),
        ]
        if url:
            args += ["--url", self.server.url]
        r = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=300, cwd=self.tmp)
        return r, json.loads(out.read_text()) if out.exists() else None

    def stored(self) -> list[str]:
        engine = create_db_engine(self.db)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("eval_runs"):
                    return []
                return [r for (r,) in conn.execute(sa.select(EvalRunRow.id))]
        finally:
            engine.dispose()


@pytest.fixture
def ev(tmp_path: Path, server: RemoteServer) -> Eval:
    return Eval(tmp_path, server)


def test_a_run_scores_every_item_target_and_repeat(ev: Eval, mock_upstream: MockUpstream) -> None:
    write_dataset(ev.tmp / "qa.jsonl")
    suite = ev.suite(
        "mixed",
        {
            "dataset": "qa.jsonl",
            "targets": [
                {"model": "remote-chat"},
                {"model": "flaky", "name": "flaky"},
                {"model": "eval-broken", "name": "broken"},
            ],
            "scorers": [
                {"type": "contains", "name": "has-answer"},
                {"type": "regex", "pattern": "^echo:", "weight": 0.5},
            ],
            "repeats": 2,
            "seed": 5,
            "concurrency": 3,
            "retries": 2,
            "timeout": 10,
            "gate": {"min_pass_rate": {"remote-chat": 0.9}},
        },
    )
    r, doc = ev.run(suite)
    assert r.returncode == 0, (r.stderr, doc and doc["gate"], doc and doc["summary"])
    assert doc is not None and doc["status"] == "passed" and doc["gate"]["passed"]
    assert [(x["target"], x["item_id"], x["repeat"]) for x in doc["results"]] == [
        (t, f"q{i}", rep) for t in ("remote-chat", "flaky", "broken") for i in range(6) for rep in range(2)
    ]
    by = {t: [x for x in doc["results"] if x["target"] == t] for t in ("remote-chat", "flaky", "broken")}
    assert all(
        x["passed"] and x["output"].startswith("echo:") and x["error"] is None for x in by["remote-chat"]
    )
    assert all(x["error"] is None for x in by["flaky"])  # every odd upstream attempt is a 503: retried
    assert all(x["error"] and x["error"].startswith("5") and not x["passed"] for x in by["broken"])
    assert doc["summary"]["remote-chat"]["pass_rate"] == 1.0
    assert doc["summary"]["broken"]["errors"] == 12
    # `resolved` is the response's `model` field: here what the upstream deployment answered.
    assert doc["targets"][0] | {"digest": None} == {
        "name": "remote-chat",
        "kind": "model",
        "ref": "remote-chat",
        "resolved": "mock",
        "digest": None,
    }
    assert doc["dataset"]["digest"].startswith("sha256:") and doc["suite"]["digest"].startswith("sha256:")
    assert doc["seed"] == 5 and doc["repeats"] == 2
    assert ev.stored() == [doc["run_id"]]
    # `eval report` reads the stored run by its id from the store the settings name
    report = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "eval", "report", doc["run_id"], "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MODELYARD_CONFIG": str(ev.config)},
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["summary"] == doc["summary"]


def test_a_failed_gate_exits_1_and_a_baseline_is_read(ev: Eval) -> None:
    write_dataset(ev.tmp / "qa.jsonl", half_wrong=True)
    base = {"dataset": "qa.jsonl", "targets": [{"model": "remote-chat"}], "scorers": [{"type": "contains"}]}
    junit, html = ev.tmp / "junit.xml", ev.tmp / "report.html"
    r, doc = ev.run(
        ev.suite("low", {**base, "gate": {"min_pass_rate": 0.9}}), "--junit", str(junit), "--html", str(html)
    )
    assert r.returncode == 1, r.stderr
    assert junit.read_text().count("<testcase") == 6 and "<html" in html.read_text().lower()
    assert doc is not None and doc["status"] == "failed" and doc["summary"]["remote-chat"]["pass_rate"] == 0.5
    assert "min_pass_rate" in doc["gate"]["reasons"][0]
    r, doc2 = ev.run(ev.suite("again", {**base, "gate": {"max_regression": 0.1, "baseline": doc["run_id"]}}))
    assert r.returncode == 0, r.stderr
    assert doc2 is not None and doc2["gate"]["baseline_run"] == doc["run_id"]


def test_the_scripted_judge_agrees_exactly_with_contains(ev: Eval, mock_upstream: MockUpstream) -> None:
    write_dataset(ev.tmp / "qa.jsonl", n=12, half_wrong=True)
    suite = ev.suite(
        "judged",
        {
            "dataset": "qa.jsonl",
            "targets": [{"model": "remote-chat"}],
            "scorers": [
                {"type": "contains", "name": "contains"},
                {
                    "type": "judge",
                    "name": "judge",
                    "model": "judge",
                    "base_url": f"{mock_upstream.url}/v1",
                    "judge_repeats": 2,
                    "threshold": 0.75,
                },
            ],
        },
    )
    r, doc = ev.run(suite)
    assert r.returncode == 0, r.stderr
    assert doc is not None
    pairs = [(x["scores"]["contains"]["passed"], x["scores"]["judge"]["passed"]) for x in doc["results"]]
    assert sum(c for c, _ in pairs) == 6
    assert all(c == j for c, j in pairs)
    assert {x["scores"]["judge"]["score"] for x in doc["results"]} == {0.0, 1.0}


BAD_SUITES: list[tuple[str, Any, str]] = [
    ("malformed", "name: x\ntargets: [\n  - model: remote-chat\n", "not valid YAML at line"),
    ("unknown-dataset", {"dataset": "no-such-set@1"}, "(dataset)"),
    ("missing-file", {"dataset": "absent.jsonl"}, "(dataset)"),
    ("unknown-scorer", {"scorers": [{"type": "telepathy"}]}, "(scorers[0].type)"),
    ("bad-scorer-field", {"scorers": [{"type": "contains", "wat": 1}]}, "(scorers[0].wat)"),
    (
        "bad-template",
        {"targets": [{"model": "remote-chat", "prompt_file": "broken-prompt.yaml"}]},
        "(targets[0].prompt_file)",
    ),
    (
        "missing-model",
        {"targets": [{"model": "remote-chat"}, {"model": "no-such-model"}]},
        "(targets[1].model)",
    ),
    ("bad-target-field", {"targets": [{"model": "remote-chat", "temperature": 0}]}, "targets[0].temperature"),
    ("bad-gate", {"gate": {"min_pass_rate": 3}}, "(gate.min_pass_rate)"),
    ("no-prompt-for-variables", {"dataset": "vars.jsonl"}, "(targets[0].prompt)"),
]


@pytest.mark.parametrize(("name", "change", "needle"), BAD_SUITES, ids=[b[0] for b in BAD_SUITES])
def test_bad_input_exits_2_naming_the_field_and_sends_and_stores_nothing(
    ev: Eval, mock_upstream: MockUpstream, name: str, change: Any, needle: str
) -> None:
    write_dataset(ev.tmp / "qa.jsonl")
    (ev.tmp / "vars.jsonl").write_text('{"id": "v", "input": {"country": "France"}}\n')
    (ev.tmp / "broken-prompt.yaml").write_text(
        "name: p\nmessages:\n  - role: user\n    content: 'Capital of {{ country'\n"
    )
    base = {"dataset": "qa.jsonl", "targets": [{"model": "remote-chat"}], "scorers": [{"type": "contains"}]}
    suite = ev.suite(name, change if isinstance(change, str) else {**base, **change})
    before = mock_upstream.stats()["requests"].get("mock", 0)
    r, doc = ev.run(suite)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in " ".join(r.stderr.split()), r.stderr
    assert doc is None and ev.stored() == []
    assert mock_upstream.stats()["requests"].get("mock", 0) == before


def test_post_admin_evals_runs_a_registry_dataset(server: RemoteServer, tmp_path: Path) -> None:
    data_dir = Path(yaml.safe_load(server.config_path.read_text())["data_dir"])
    dataset = write_dataset(tmp_path / "qa.jsonl")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "datasets",
            "create",
            "http-qa",
            str(dataset),
            "--data-dir",
            str(data_dir),
            "--database-url",
            f"sqlite:///{data_dir / 'modelyard.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    suite = {
        "name": "http",
        "dataset": "http-qa@1",
        "targets": [{"model": "remote-chat"}],
        "scorers": [{"type": "contains"}],
    }
    bad = httpx.post(
        f"{server.url}/admin/evals", json={"suite": {**suite, "scorers": [{"type": "telepathy"}]}}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "suite.scorers[0].type"
    bad = httpx.post(f"{server.url}/admin/evals", json={"suite": {**suite, "dataset": "/etc/passwd.jsonl"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "suite.dataset"
    assert httpx.get(f"{server.url}/admin/evals").json()["data"] == []
    resp = httpx.post(f"{server.url}/admin/evals", json={"suite": suite})
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]
    deadline = time.monotonic() + 60
    while (doc := httpx.get(f"{server.url}/admin/evals/{run_id}").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert doc["status"] == "passed", doc
    assert doc["dataset"]["name"] == "http-qa" and doc["dataset"]["version"] == 1
    assert len(doc["results"]) == 6 and doc["summary"]["remote-chat"]["pass_rate"] == 1.0
    assert httpx.get(f"{server.url}/admin/evals/evr_nope").status_code == 404
    # the run was a job of kind `eval` (its record shows the result, and no credential)
    job = httpx.get(f"{server.url}/admin/jobs/{resp.json()['job']}").json()
    assert job["kind"] == "eval" and job["state"] == "succeeded", job
    assert job["result"] == {"run_id": run_id, "status": "passed"}
    assert "api_key" not in str(job)
    # and an MLflow run (the mlflow extra is installed with dev): params, dataset digest, metrics, report
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{data_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("eval/http")
    assert experiment is not None
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.data.tags["modelyard.run_id"] == run_id
    assert tracked.data.params["dataset_digest"] == doc["dataset"]["digest"]
    assert tracked.data.metrics["remote-chat.pass_rate"] == 1.0
    assert [a.path for a in client.list_artifacts(tracked.info.run_id)] == ["report"]


def test_a_prompt_file_target_renders_item_variables(ev: Eval) -> None:
    (ev.tmp / "vars.jsonl").write_text(
        '{"id": "fr", "input": {"country": "France"}, "expected": "France"}\n'
        '{"id": "jp", "input": {"country": "Japan"}, "expected": "Japan"}\n'
    )
    (ev.tmp / "qa-prompt.yaml").write_text(
        "name: qa\nmessages:\n  - role: system\n    content: Be brief.\n"
        "  - role: user\n    content: 'Capital of {{ country }}, {{ style }}?'\n"
        "variables: [{name: country, type: string}, {name: style, default: please}]\nparameters: {max_tokens: 4}\n"
    )
    suite = ev.suite(
        "prompted",
        {
            "dataset": "vars.jsonl",
            "targets": [{"model": "remote-chat", "prompt_file": "qa-prompt.yaml"}],
            "scorers": [{"type": "contains"}],
        },
    )
    r, doc = ev.run(suite)
    assert r.returncode == 0, r.stderr
    assert doc is not None and doc["targets"][0]["kind"] == "prompt"
    assert [x["output"] for x in doc["results"]] == ["echo: Capital of France,", "echo: Capital of Japan,"]
    assert all(x["passed"] for x in doc["results"])


def test_in_process_runs_the_app_in_the_command(ev: Eval, mock_upstream: MockUpstream) -> None:
    ev.config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(ev.tmp / "data"),
                "database_url": ev.db,
                "local_models": [],
                "embedders": [],
                "deployments": [
                    {"model": "in-proc", "base_url": f"{mock_upstream.url}/v1", "upstream_model": "mock"}
                ],
            }
        )
    )
    write_dataset(ev.tmp / "qa.jsonl")
    suite = ev.suite(
        "inproc",
        {"dataset": "qa.jsonl", "targets": [{"model": "in-proc"}], "scorers": [{"type": "contains"}]},
    )
    r, doc = ev.run(suite, url=False)
    assert r.returncode == 0, r.stderr
    assert doc is not None and doc["summary"]["in-proc"]["pass_rate"] == 1.0
    assert ev.stored() == [doc["run_id"]]


def test_compare_flags_a_worse_prompt_and_not_an_identical_rerun(ev: Eval) -> None:
    """A prompt that cuts every word to four letters loses the 10 long words of 30: a significant
    regression by ``eval compare`` (exit 1); the same prompt run twice is no difference (exit 0)."""
    short = ["red", "sun", "sky", "tea", "cup", "map", "oak", "ice", "owl", "fig"] * 2
    long = [
        "orange",
        "purple",
        "silver",
        "planet",
        "violet",
        "harbor",
        "meadow",
        "castle",
        "forest",
        "island",
    ]
    words = short + long
    (ev.tmp / "words.jsonl").write_text(
        "".join(
            json.dumps({"id": f"w{i:02d}", "input": {"word": w}, "expected": w}) + "\n"
            for i, w in enumerate(words)
        )
    )
    for name, template in (("good", "say {{ word }}"), ("worse", "say {{ word[:4] }}")):
        (ev.tmp / f"{name}.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "messages": [{"role": "user", "content": template}],
                    "variables": [{"name": "word", "type": "string"}],
                    "parameters": {"max_tokens": 8},
                }
            )
        )
    docs = {}
    for run, prompt in (("base", "good"), ("rerun", "good"), ("regressed", "worse")):
        suite = ev.suite(
            run,
            {
                "dataset": "words.jsonl",
                "targets": [{"model": "remote-chat", "prompt_file": f"{prompt}.yaml", "name": "chat"}],
                "scorers": [{"type": "contains"}],
            },
        )
        r, docs[run] = ev.run(suite)
        assert r.returncode == 0, r.stderr
    assert docs["base"]["summary"]["chat"]["pass_rate"] == 1.0
    assert docs["regressed"]["summary"]["chat"]["pass_rate"] == pytest.approx(20 / 30)

    def compare(a: str, b: str) -> tuple[int, dict[str, Any]]:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "eval",
                "compare",
                str(ev.tmp / f"{a}.json"),
                str(ev.tmp / f"{b}.json"),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return r.returncode, json.loads(r.stdout)

    code, worse = compare("base", "regressed")
    assert code == 1 and worse["verdict"] == "regression", worse
    code, same = compare("base", "rerun")
    assert code == 0 and same["verdict"] != "regression", same
