"""MLflow behind the tracking seam (the ``mlflow`` extra: ``pip install 'modelyard[mlflow]'``).

Uses :class:`mlflow.tracking.MlflowClient` with an explicit tracking URI, never MLflow's fluent API
and its process-global active run, so several runs (and servers) can track side by side. Experiments
are created on first use; with the default local store (``sqlite:///<data_dir>/mlflow.db``) their
artifacts go to ``<data_dir>/mlflow-artifacts/<experiment>``. Browse with
``mlflow ui --backend-store-uri sqlite:///<data_dir>/mlflow.db``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelyard.tracking.base import RunStatus

MLFLOW_DIGEST_CHARS = 36  # the length MLflow's dataset table allows
DATASET_SOURCE_TYPE = "modelyard"
# MLflow caps one log_batch call at 1000 metrics and 100 params.
_MAX_BATCH_METRICS = 1000
_MAX_BATCH_PARAMS = 100


class MLflowRun:
    """One MLflow run (see :class:`~modelyard.tracking.base.TrackedRun`)."""

    __slots__ = ("_client", "_id", "status")

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self._client, self._id = client, run_id
        self.status: RunStatus | None = None

    @property
    def run_id(self) -> str | None:
        return self._id

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_BATCH_PARAMS):
            self._client.log_batch(self._id, params=items[i : i + _MAX_BATCH_PARAMS])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), _MAX_BATCH_METRICS):
            self._client.log_batch(self._id, metrics=items[i : i + _MAX_BATCH_METRICS])

    def log_input(self, name: str, digest: str, source: str, context: str | None = None) -> None:
        # MLflow keeps at most 36 characters of a dataset digest: the head of the hex part goes there,
        # the whole digest (``sha256:<64 hex>``) in a tag beside it.
        short = digest.split(":", 1)[-1][:MLFLOW_DIGEST_CHARS]
        dataset = Dataset(name=name, digest=short, source_type=DATASET_SOURCE_TYPE, source=source)
        tags = [InputTag("modelyard.digest", digest)]
        if context:
            tags.append(InputTag("mlflow.data.context", context))
        self._client.log_inputs(self._id, [DatasetInput(dataset, tags=tags)])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self._id, str(path), artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self._client.log_batch(self._id, tags=[RunTag(key, str(value))])

    def end(self, status: RunStatus = RunStatus.FINISHED) -> None:
        if self.status is None:
            self._client.set_terminated(self._id, status.value)
            self.status = status

    def __enter__(self) -> MLflowRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(RunStatus.FAILED if exc_type is not None else RunStatus.FINISHED)


class MLflowTracker:
    """Runs in the MLflow tracking store at ``tracking_uri``; ``artifact_root`` (a folder) holds the
    artifacts of experiments created here (``None``: the tracking server decides)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri, self._artifact_root = tracking_uri, artifact_root
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:  # MLflow creates its tables on first use: a few seconds, only then
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_id(self, experiment: str) -> str:
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        location = (self._artifact_root / experiment).as_uri() if self._artifact_root else None
        try:
            return str(self.client.create_experiment(experiment, artifact_location=location))
        except MlflowException:  # another process created it first
            again = self.client.get_experiment_by_name(experiment)
            if again is None:
                raise
            return str(again.experiment_id)

    def start_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> MLflowRun:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags or {})
        tracked = MLflowRun(self.client, run.info.run_id)
        if params:
            tracked.log_params(params)
        return tracked
