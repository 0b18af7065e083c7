"""The judge's verdict parsing (the JSON shapes, the fallbacks, unparseable = 0 with a reason) and the
packaged rubric, which must compile and render with the judge's variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import NotFound
from modelyard.evals.judge import PackagedPrompts, parse_verdict, question_of
from modelyard.evals.types import EvalItem
from modelyard.registry.prompt_spec import render


@pytest.mark.parametrize(
    ("reply", "score", "parsed"),
    [
        ('{"score": 5, "reason": "right"}', 1.0, True),
        ('{"score": 1, "reason": "wrong"}', 0.0, True),
        ('Sure! {"score": 3, "reason": "half"} hope that helps', 0.5, True),
        ('{"score": "4"}', 0.75, True),
        ('{"verdict": "pass", "reason": "ok"}', 1.0, True),
        ('{"verdict": "FAIL"}', 0.0, True),
        ('{"pass": true}', 1.0, True),
        ('{not json} then {"score": 2}', 0.25, True),
        ("Score: 4/5", 0.75, True),
        ("I would say PASS.", 1.0, True),
        ("The answer is indeed correct.", 0.0, False),
        ('{"score": 9}', 0.0, False),
        ("", 0.0, False),
    ],
)
def test_parse_verdict(reply: str, score: float, parsed: bool) -> None:
    v = parse_verdict(reply)
    assert (v.score, v.parsed) == (score, parsed)
    if not parsed:
        assert v.reason.startswith("unparseable judge reply")


def test_the_packaged_rubric_renders_the_judge_variables() -> None:
    spec = PackagedPrompts().get("judge-rubric")
    item = EvalItem(
        "q", [{"role": "system", "content": "s"}, {"role": "user", "content": "Capital of France?"}], "Paris"
    )
    messages = render(spec, {"question": question_of(item), "answer": "Paris.", "expected": "Paris"})
    assert isinstance(messages, list) and messages[-1]["role"] == "user"
    assert "QUESTION: Capital of France?" in messages[-1]["content"]
    assert "ANSWER: Paris." in messages[-1]["content"] and "CONTEXT" not in messages[-1]["content"]
    assert spec.parameters["temperature"] == 0
    with pytest.raises(NotFound):
        PackagedPrompts().get("../../etc/passwd")


def test_track_run_logs_params_metrics_input_and_the_report() -> None:
    from modelyard.evals.tracking_hook import track_run

    calls: list[tuple[str, object]] = []

    class Run:
        run_id = "mlflow-1"

        def __enter__(self) -> Run:
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append(("end", None))

        def log_input(self, *args: object) -> None:
            calls.append(("input", args))

        def log_metrics(self, metrics: dict[str, float]) -> None:
            calls.append(("metrics", metrics))

        def log_artifact(self, path: object, artifact_path: str) -> None:
            calls.append(("artifact", (Path(str(path)).read_text()[:1], artifact_path)))

        def set_tag(self, key: str, value: str) -> None:
            calls.append(("tag", (key, value)))

    class Tracker:
        def start_run(
            self, experiment: str, name: str, params: dict[str, object], tags: dict[str, str]
        ) -> Run:
            calls.append(("start", (experiment, name, params["dataset_digest"])))
            return Run()

    doc = {
        "run_id": "evr_1",
        "status": "passed",
        "git_commit": None,
        "repeats": 1,
        "seed": 0,
        "suite": {"name": "s", "digest": "sha256:a"},
        "dataset": {"name": "d", "version": 2, "digest": "sha256:b"},
        "targets": [{"name": "t", "ref": "m", "resolved": "m"}],
        "scorers": [{"name": "c", "type": "contains"}],
        "summary": {"t": {"pass_rate": 0.5, "mean_score": 0.75, "errors": 0, "cost_usd": None}},
    }
    assert track_run(doc, None) is None
    assert track_run(doc, Tracker()) == "mlflow-1"
    assert calls[0] == ("start", ("eval/s", "evr_1", "sha256:b"))
    assert ("metrics", {"t.pass_rate": 0.5, "t.mean_score": 0.75, "t.errors": 0.0}) in calls
    assert ("artifact", ("{", "report")) in calls and ("tag", ("status", "passed")) in calls
