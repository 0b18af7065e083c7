"""The tracking seam: MLflowTracker against a real local MLflow store (SQLite under the data dir), read
back with MLflow's own client; NullTracker; and the backend choice of ``tracking_for``."""

from __future__ import annotations

from pathlib import Path

import pytest

# The mlflow extra is part of `dev`: a missing MLflow fails these tests rather than skipping them.
from mlflow.tracking import MlflowClient  # noqa: E402

from modelyard.errors import ConfigError
from modelyard.settings import Settings
from modelyard.tracking import NullTracker, RunStatus, tracker_for
from modelyard.tracking.mlflow_tracker import MLflowTracker  # noqa: E402
from modelyard.tracking.null import NullRun

DIGEST = "sha256:" + "ab12" * 16  # a whole sha256 digest, as datasets have


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MLflowTracker:
    data = tmp_path_factory.mktemp("tracking")
    t = tracker_for(Settings.model_validate({"data_dir": str(data)}))
    assert isinstance(t, MLflowTracker)
    assert t.tracking_uri == f"sqlite:///{data / 'mlflow.db'}"
    return t


def test_a_run_records_params_metrics_dataset_and_artifact(tracker: MLflowTracker, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"version": 1, "pass_rate": 0.9}')
    with tracker.start_run(
        "eval/smoke", run_name="smollm2-baseline", params={"repeats": 2, "seed": 7}, tags={"suite": "smoke"}
    ) as run:
        run.log_params({"target": "smollm2@production"})
        run.log_metrics({"pass_rate": 0.8}, step=0)
        run.log_metrics({"pass_rate": 0.9, "latency_ms_p50": 41.5}, step=1)
        run.log_input("smoke-30", DIGEST, "registry://datasets/smoke-30@3", context="eval")
        run.log_artifact(report, "reports")
        run.set_tag("git_commit", "deadbeef")
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    got = client.get_run(run.run_id or "")
    assert got.info.status == "FINISHED" and got.info.run_name == "smollm2-baseline"
    assert got.data.params == {"repeats": "2", "seed": "7", "target": "smollm2@production"}
    assert got.data.metrics == {"pass_rate": 0.9, "latency_ms_p50": 41.5}
    history = client.get_metric_history(got.info.run_id, "pass_rate")
    assert [(m.step, m.value) for m in history] == [(0, 0.8), (1, 0.9)]
    assert got.data.tags["suite"] == "smoke" and got.data.tags["git_commit"] == "deadbeef"
    [inp] = got.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest, inp.dataset.source) == (
        "smoke-30",
        DIGEST.removeprefix("sha256:")[:36],  # MLflow keeps 36 characters of a digest
        "registry://datasets/smoke-30@3",
    )
    tags = {t.key: t.value for t in inp.tags}
    assert tags["mlflow.data.context"] == "eval" and tags["modelyard.digest"] == DIGEST
    assert [a.path for a in client.list_artifacts(got.info.run_id, "reports")] == ["reports/report.json"]
    local = Path(client.download_artifacts(got.info.run_id, "reports/report.json", str(tmp_path / "dl")))
    assert local.read_text() == report.read_text()
    experiment = client.get_experiment(got.info.experiment_id)
    assert experiment.name == "eval/smoke" and "mlflow-artifacts" in experiment.artifact_location


def test_a_failing_block_marks_the_run_failed_and_experiments_are_reused(tracker: MLflowTracker) -> None:
    with pytest.raises(RuntimeError), tracker.start_run("eval/smoke", run_name="broken") as run:
        raise RuntimeError("scorer crashed")
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    assert client.get_run(run.run_id or "").info.status == "FAILED"
    killed = tracker.start_run("eval/smoke", run_name="killed")
    killed.end(RunStatus.KILLED)
    with killed:  # an explicit end wins over the context manager's
        pass
    assert client.get_run(killed.run_id or "").info.status == "KILLED"
    exp = client.get_experiment_by_name("eval/smoke")
    assert exp is not None
    assert len(client.search_runs([exp.experiment_id])) >= 3


def test_null_tracker_and_backend_choice(tmp_path: Path) -> None:
    base = {"data_dir": str(tmp_path)}
    assert isinstance(
        tracker_for(Settings.model_validate({**base, "tracking": {"backend": "none"}})), NullTracker
    )
    explicit = tracker_for(
        Settings.model_validate(
            {**base, "tracking": {"backend": "mlflow", "uri": f"sqlite:///{tmp_path}/x.db"}}
        )
    )
    assert isinstance(explicit, MLflowTracker) and explicit.tracking_uri.endswith("/x.db")
    run = NullTracker().start_run("e", params={"a": 1})
    assert isinstance(run, NullRun) and run.run_id is None
    with pytest.raises(ValueError), run:
        raise ValueError
    assert run.status is RunStatus.FAILED


def test_mlflow_backend_without_mlflow_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    base = {"data_dir": str(tmp_path)}
    assert isinstance(tracker_for(Settings.model_validate(base)), NullTracker)
    with pytest.raises(ConfigError, match=r"modelyard\[mlflow\]"):
        tracker_for(Settings.model_validate({**base, "tracking": {"backend": "mlflow"}}))
