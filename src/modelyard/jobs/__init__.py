"""Background work: job records and their runners, and periodic tasks with a lease (docs/jobs.md)."""

from modelyard.jobs.context import JobCancelled, JobContext, ProgressSink
from modelyard.jobs.periodic import PeriodicTask
from modelyard.jobs.records import JobInfo, JobKind, JobState

__all__ = ["JobCancelled", "JobContext", "JobInfo", "JobKind", "JobState", "PeriodicTask", "ProgressSink"]
