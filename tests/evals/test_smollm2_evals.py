"""The committed capitals suite and the LLM judge on the packaged SmolLM2, through ``modelyard serve``.

Slow: the server loads SmolLM2-135M-Instruct (converted weights cached in ~/.cache/modelyard/models).
The server runs the engine's AVX2 configuration (float32 activations, ``dual`` weights) on every host,
so that the judge's greedy verdicts do not move with the host's default numerics. Measured on a Zen 4 /
AVX-512 bf16 host (2 cores), 2026-12-04: capitals passes 31/32 (0.969) in both runs with identical
outputs (32/32 under bf16); SmolLM2 as judge of ``tests/evals/data/judge-easy.jsonl`` (20 answers, half
of them wrong by construction), one request at a time, agrees with ``contains`` on 16/20 = 0.80 (0.45
under bf16: a 135M judge is a smoke test, a stronger remote model is the production judge). The test
asserts the measured rate minus a 0.15 margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servers import MockUpstream, RemoteServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SMOL = "smollm2-135m-instruct"
JUDGE_AGREEMENT_MEASURED = 0.80
JUDGE_MARGIN = 0.15


@pytest.fixture(scope="module")
def smol(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    config = {
        "local_models": [{"name": SMOL, "source": f"packaged:{SMOL}"}],
        "embedders": [],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        # the AVX2 default on every host: the judge's verdicts move with the engine's numerics (bf16 0.45,
        # this 0.80 on judge-easy), so the stated rate is for one configuration
        "engine": {"max_model_len": 2048, "dtype": "float32", "quantization": "dual"},
        "deployments": [{"model": "echo", "base_url": f"{mock_upstream.url}/v1", "upstream_model": "mock"}],
    }
    srv = RemoteServer(tmp_path_factory.mktemp("smol-evals"), config, ready_timeout_s=600)
    yield srv
    srv.close()


def run_suite(suite: Path, server: RemoteServer, tmp: Path, name: str) -> dict[str, Any]:
    settings = tmp / "settings.yaml"
    settings.write_text(yaml.safe_dump({"data_dir": str(tmp / "data")}))
    out = tmp / f"{name}.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.evals.run_cli",
            "run",
            str(suite),
            "-c",
            str(settings),
            "-q",
            "--url",
            server.url,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_capitals_pass_rate_is_high_and_identical_across_two_seeded_runs(
    smol: RemoteServer, tmp_path: Path
) -> None:
    suite = ROOT / "evals" / "suites" / "capitals.yaml"
    first = run_suite(suite, smol, tmp_path, "first")
    second = run_suite(suite, smol, tmp_path, "second")
    assert len(first["results"]) >= 30
    rate = first["summary"]["smollm2"]["pass_rate"]
    print(f"\ncapitals pass rate: {rate:.3f} / {second['summary']['smollm2']['pass_rate']:.3f}")
    assert rate >= 0.7
    assert second["summary"]["smollm2"]["pass_rate"] == rate
    assert [r["passed"] for r in first["results"]] == [r["passed"] for r in second["results"]]
    assert first["targets"][0]["resolved"] == SMOL and first["gate"]["passed"]
    assert first["git_commit"] is None or len(first["git_commit"]) == 40


def test_smollm2_as_judge_agrees_with_contains_at_the_stated_rate(smol: RemoteServer, tmp_path: Path) -> None:
    (tmp_path / "judge-easy.jsonl").write_text(
        (ROOT / "tests" / "evals" / "data" / "judge-easy.jsonl").read_text()
    )
    suite = tmp_path / "judge.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "judge-agreement",
                "dataset": "judge-easy.jsonl",
                "targets": [{"model": "echo"}],
                "scorers": [
                    {"type": "contains", "name": "contains"},
                    {"type": "judge", "name": "judge", "model": SMOL, "threshold": 0.75},
                ],
                # one judge request at a time: greedy outputs then do not depend on which requests
                # happened to share an engine batch (bf16/fp32 sums differ with the batch shape)
                "concurrency": 1,
            }
        )
    )
    doc = run_suite(suite, smol, tmp_path, "judge")
    pairs = [(r["scores"]["contains"]["passed"], r["scores"]["judge"]["passed"]) for r in doc["results"]]
    assert len(pairs) == 20 and sum(c for c, _ in pairs) == 10
    agreement = sum(c == j for c, j in pairs) / len(pairs)
    print(f"\nSmolLM2 judge agreement with contains: {agreement:.2f}")
    assert agreement >= JUDGE_AGREEMENT_MEASURED - JUDGE_MARGIN
