"""/jobs: the jobs of every server on this index, their control (pause, resume, cancel, resubmit) and outputs.

Shapes are Orthanc's: a job shows its State, Progress (percent), Priority, ErrorCode with ErrorDescription and
ErrorDetails, CreationTime, CompletionTime once finished, EffectiveRuntime (seconds), EstimatedTimeOfArrival
while running, Timestamp (now), Type and Content. A refused action answers 400, as Orthanc does (with a JSON
error body, where Orthanc sends none). Routes that start jobs use :func:`job_request` and :func:`submitted`.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Blueprint, Quart, Response

from .. import hookimpl
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError
from ..model import JobRecord, JobState, precise_time
from .common import answer, context, flag, text_answer

bp = Blueprint("jobs", __name__)


# -- for the routes that start jobs ----------------------------------------------------------------------------
def job_request(body: dict[str, Any]) -> tuple[bool, int]:
    """(synchronous, priority) from Orthanc's fields: "Synchronous", else the opposite of "Asynchronous"
    (synchronous by default), and "Priority" (an integer, 0 by default; higher runs first)."""
    for name in ("Synchronous", "Asynchronous"):
        if name in body and not isinstance(body[name], bool):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Boolean value expected in field: {name}")
    synchronous = body["Synchronous"] if "Synchronous" in body else not body.get("Asynchronous", False)
    priority = body.get("Priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Integer value expected in field: Priority")
    return synchronous, priority


def submitted(job_id: str) -> Response:
    """The answer to an asynchronous request: where to follow the job."""
    return answer({"ID": job_id, "Path": f"/jobs/{job_id}"})


# -- showing jobs ----------------------------------------------------------------------------------------------
def _error_description(code: int) -> str:
    if code == 0:
        return "Success"
    known = ErrorCode.from_status(code)
    return known.message if known is not None else f"Error {code}"


def job_json(job: JobRecord, now: float | None = None) -> dict[str, Any]:
    """A job as Orthanc shows it, keys in Orthanc's (alphabetical) order."""
    now = time.time() if now is None else now
    runtime = job.runtime
    if job.state is JobState.RUNNING and job.started_at is not None:
        runtime += max(0.0, now - job.started_at)
    out: dict[str, Any] = {
        "Content": job.content,
        "CreationTime": job.creation_time,
        "EffectiveRuntime": round(runtime, 3),
        "ErrorCode": job.error_code,
        "ErrorDescription": _error_description(job.error_code),
        "ErrorDetails": job.error_details,
        "ID": job.id,
        "Priority": job.priority,
        "Progress": round(job.progress * 100),
        "State": job.state.value,
        "Timestamp": precise_time(now),
        "Type": job.type,
    }
    if job.completion_time is not None:
        out["CompletionTime"] = job.completion_time
    if job.state is JobState.RUNNING and job.progress > 0:
        out["EstimatedTimeOfArrival"] = precise_time(now + runtime * (1 - job.progress) / job.progress)
    return dict(sorted(out.items()))


@bp.get("/jobs")
async def list_jobs() -> Response:
    """The jobs (pending, running, paused and the recent history), or their details with ``expand``."""
    jobs = sorted(await context().index.list_jobs(), key=lambda j: j.id)
    if flag("expand"):
        now = time.time()
        return answer([job_json(j, now) for j in jobs])
    return answer([j.id for j in jobs])


@bp.get("/jobs/<job_id>")
async def get_job(job_id: str) -> Response:
    """One job: state, progress, timings, errors and content."""
    return answer(job_json(await context().jobs.get(job_id)))


@bp.delete("/jobs/<job_id>")
async def delete_job(job_id: str) -> Response:
    """Remove a finished job from the history, with its outputs."""
    await context().jobs.delete(job_id)
    return text_answer("")


# -- controlling jobs ------------------------------------------------------------------------------------------
@bp.post("/jobs/<job_id>/cancel")
async def cancel_job(job_id: str) -> Response:
    """Cancel a job: it fails with ErrorCode 37 (at its next step, if running)."""
    await context().jobs.cancel(job_id)
    return answer({})


@bp.post("/jobs/<job_id>/pause")
async def pause_job(job_id: str) -> Response:
    """Pause a pending job, or a running one at its next step."""
    await context().jobs.pause(job_id)
    return answer({})


@bp.post("/jobs/<job_id>/resume")
async def resume_job(job_id: str) -> Response:
    """Put a paused job back in the queue; it goes on from where it stopped."""
    await context().jobs.resume(job_id)
    return answer({})


@bp.post("/jobs/<job_id>/resubmit")
async def resubmit_job(job_id: str) -> Response:
    """Run a failed job again, from its start."""
    await context().jobs.resubmit(job_id)
    return answer({})


# -- outputs ---------------------------------------------------------------------------------------------------
@bp.get("/jobs/<job_id>/<key>")
async def job_output(job_id: str, key: str) -> Response:
    """A file a successful job produced (``archive`` for archives and media)."""
    ctx = context()
    output = await ctx.jobs.output(job_id, key)
    headers = {"Content-Disposition": f'filename="{output.filename}"'} if output.filename else {}
    body = await ctx.store.attachment_body(output.info)
    return Response(body, content_type=output.mime_type, headers=headers)


@bp.delete("/jobs/<job_id>/<key>")
async def delete_job_output(job_id: str, key: str) -> Response:
    """Remove one output of a job (the job stays in the history)."""
    await context().jobs.delete_output(job_id, key)
    return text_answer("")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
