"""The job kinds and periodic tasks this build knows, each in one list: ``serve`` accepts the kinds and
runs the tasks, ``modelyard worker --jobs`` runs the kinds, ``modelyard tasks`` runs the tasks. Features
add theirs here (eval runs, fine-tunes, re-embeds; drift monitors, GitOps sync); deployments add job
kinds of their own with the ``jobs.kinds`` setting. The job system's own tasks (``jobs.requeue``,
``jobs.prune``) come from :meth:`~modelyard.jobs.service.JobService.tasks`."""

from __future__ import annotations

from functools import partial

from modelyard.jobs.credentials import Credentials
from modelyard.jobs.periodic import PeriodicTask
from modelyard.jobs.records import JobKind
from modelyard.settings import Settings

EVAL = "eval"  # an eval run (modelyard.evals.job), submitted by POST /admin/evals


def known_kinds(settings: Settings, credentials: Credentials | None = None) -> list[JobKind]:
    """The built-in kinds; ``credentials`` is the process's vault of submitters' keys (see there)."""
    from modelyard.evals.job import run_eval_job

    return [JobKind(EVAL, partial(run_eval_job, settings=settings, credentials=credentials))]


def known_tasks(settings: Settings) -> list[PeriodicTask]:
    from modelyard.experiments.canary import canary_task
    from modelyard.monitoring.drift.tasks import drift_tasks

    return [canary_task(settings), *drift_tasks(settings)]
