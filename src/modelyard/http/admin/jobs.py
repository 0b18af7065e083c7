"""Admin REST API of background jobs (``/admin/jobs``): list, show (state, progress, result, last log
lines) and cancel.

A tenant key (``admin`` or ``read``) sees only its tenant's jobs; system jobs (no tenant) and other
tenants' jobs answer 404. Cancelling needs the ``admin`` scope on the job's tenant (a system admin for
system jobs). Jobs are submitted by the features that own them (``POST /admin/evals``, ...), through
``request.state.jobs``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.jobs.records import JobInfo, JobState
from modelyard.jobs.service import JobService
from modelyard.tenancy.access import principal_of, readable_tenant
from modelyard.tenancy.records import Principal

router = APIRouter(tags=["admin: jobs"])

MAX_LIST = 1000


def jobs_of(request: Request) -> JobService:
    jobs = getattr(request.state, "jobs", None)
    if jobs is None:
        raise NotFound("Background jobs are not running on this server.")
    return jobs  # type: ignore[no-any-return]


def _readable(p: Principal, job: JobInfo) -> bool:
    return p.is_system_admin if job.tenant is None else p.may_read(job.tenant)


async def _visible_job(request: Request, p: Principal, job_id: str) -> JobInfo:
    job = await jobs_of(request).get(job_id)
    if not _readable(p, job):
        raise NotFound(f"job `{job_id}` does not exist", param="job_id")
    return job


@router.get("/jobs")
async def list_jobs(
    request: Request,
    tenant: str | None = None,
    state: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    p = principal_of(request)
    scope = readable_tenant(p, tenant)
    try:
        wanted = JobState(state) if state is not None else None
    except ValueError:
        raise InvalidRequest(
            f"state={state!r} is not one of {[s.value for s in JobState]}", param="state"
        ) from None
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}", param="limit")
    jobs = await jobs_of(request).list_jobs(
        scope, every_tenant=scope is None, state=wanted, kind=kind, limit=limit
    )
    return {"object": "list", "data": [j.to_dict(logs=False) for j in jobs]}


@router.get("/jobs/{job_id}")
async def show_job(request: Request, job_id: str) -> dict[str, Any]:
    job = await _visible_job(request, principal_of(request), job_id)
    return job.to_dict()


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    p = principal_of(request)
    job = await _visible_job(request, p, job_id)
    if not (p.is_system_admin if job.tenant is None else p.may_manage(job.tenant)):
        raise PermissionDenied("Cancelling a job needs the `admin` scope on its tenant.")
    return (await jobs_of(request).cancel(job_id)).to_dict()
