"""A test plugin adding a job type, "Echo", through the ``register_job_types`` hook: it stores the text it is
given as its "archive" output. POST /test-jobs/echo {"Text": ..., "Priority": ...} submits one.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Quart, request

from isengard import hookimpl
from isengard.jobs import JobRun, JobType
from isengard.rest.common import context
from isengard.rest.jobs import job_request, submitted

bp = Blueprint("output_jobs", __name__)


async def echo(job: JobRun) -> None:
    await job.step(0.5)
    await job.add_output("archive", job.parameters["Text"].encode(), "text/plain", "echo.txt")
    job.content["Length"] = len(job.parameters["Text"])


@bp.post("/test-jobs/echo")
async def submit_echo() -> Any:
    """Submit an Echo job (test plugin)."""
    body = await request.get_json()
    _, priority = job_request(body)
    job_id = await context().jobs.submit("Echo", {"Text": body["Text"]}, {"Description": "test"}, priority=priority)
    return submitted(job_id)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {"Echo": JobType(echo)}


@hookimpl
def register_routes(app: Quart) -> None:
    app.register_blueprint(bp)
