"""``POST /wsi/dicomize``: the DICOMizer run by the server, as a job of type "WsiDicomizer" (Isengard's name: Orthanc
has no such route), storing the instances through the kernel's ingest as they are made.

The slide is the request body itself (Content-Type application/octet-stream or image/tiff, spooled to a temporary
file; DICOMizer options then in the query string), or ``{"Path": "relative/path", ...}`` naming a file inside the
configured ``WholeSlideImaging.DicomizerFolder`` (never outside it: the path is resolved, symbolic links
included, before it is accepted). Options are the DICOMizer's, in Orthanc's JSON spelling ("Compression",
"TileWidth"...); "Dataset" is the JSON of tags itself, not a file. A failed job deletes what it stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
from pathlib import Path, PurePath
from typing import Any

from quart import Blueprint, Quart, Response, request

from isengard import hookimpl
from isengard.context import ServerContext
from isengard.errors import ErrorCode, OrthancError
from isengard.jobs import JobRun, JobType
from isengard.jobs.run import JobInterrupted
from isengard.model import ResourceType
from isengard.rest.body import body_chunks
from isengard.rest.common import context, json_body
from isengard.rest.jobs import job_request, submitted
from isengard.rest.upload import rest_origin

from .dicomizer.cli import dicomize, one_line
from .dicomizer.dataset import DatasetError
from .dicomizer.jpeg import JpegError
from .dicomizer.options import UsageError, parser
from .dicomizer.sources import SourceError
from .dicomizer.writer import TargetError, WriteInstance
from .iiif import SECTION

JOB_TYPE = "WsiDicomizer"
FOLDER_OPTION = "DicomizerFolder"
UPLOAD_TYPES = ("application/octet-stream", "image/tiff")
#: The DICOMizer options a client may set, JSON name -> command-line name (paths to server files are left out).
OPTIONS = {
    name: option
    for option in (
        "compression",
        "tile-width",
        "tile-height",
        "jpeg-quality",
        "max-size",
        "reencode",
        "pyramid",
        "smooth",
        "levels",
        "imaged-width",
        "imaged-height",
        "imaged-depth",
        "offset-x",
        "offset-y",
        "optical-path",
    )
    for name in ["".join(word.capitalize() for word in option.split("-"))]
}
_NOT_OPTIONS = {"Path", "Dataset", "NoLabel", "Priority", "Synchronous", "Asynchronous"}

bp = Blueprint("wsi_dicomize", __name__)


def arguments(options: dict[str, Any]) -> list[str]:
    """The command line of the JSON options, checked by the DICOMizer's own parser (400 when it refuses)."""
    argv = []
    for name, value in options.items():
        if name in _NOT_OPTIONS:
            continue
        if name not in OPTIONS:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Unknown DICOMizer option: {name}")
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        argv.append(f"--{OPTIONS[name]}={text}")
    if options.get("NoLabel") in (True, "1", "true"):
        argv.append("--no-label")
    try:
        parser().parse_args(argv)
    except SystemExit:  # argparse has printed why to the server's stderr
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad DICOMizer options: {' '.join(argv)}") from None
    return argv


def inside_folder(ctx: ServerContext, relative: Any) -> Path:
    """The file ``relative`` names inside the configured folder: a relative path that stays inside, once resolved."""
    folder = (ctx.config.get(SECTION) or {}).get(FOLDER_OPTION)
    if not folder:
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, f"No {SECTION}.{FOLDER_OPTION} is configured")
    if not isinstance(relative, str) or not relative or PurePath(relative).is_absolute():
        raise OrthancError(ErrorCode.BAD_REQUEST, f'"Path" must be a path relative to {FOLDER_OPTION}')
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, f"Path outside of {FOLDER_OPTION}: {relative}")
    if not path.is_file():
        raise OrthancError(ErrorCode.INEXISTENT_FILE, f"No such file in {FOLDER_OPTION}: {relative}")
    return path


async def _spool_body() -> Path:
    """The request body in a temporary file, written as it arrives, within the upload limit."""
    fd, name = tempfile.mkstemp(prefix="isengard-wsi-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body_chunks():
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(Path(name).unlink, missing_ok=True)
        raise
    return Path(name)


@bp.post("/wsi/dicomize")
async def post_dicomize() -> Response:
    """Convert a slide into DICOM as a job: the body is the slide, or {"Path": ...} inside DicomizerFolder."""
    ctx = context()
    if request.mimetype in UPLOAD_TYPES:
        options: dict[str, Any] = dict(request.args)
        arguments(options)  # refused before the upload is read
        source, uploaded = await _spool_body(), True
    else:
        options = await json_body()
        source, uploaded = inside_folder(ctx, options.get("Path")), False
    try:
        argv = arguments(options)
        dataset = options.get("Dataset")
        if dataset is not None and not isinstance(dataset, dict):
            raise OrthancError(ErrorCode.BAD_REQUEST, '"Dataset" must be a JSON object of tags')
        _, priority = job_request({"Priority": int(options.get("Priority", 0))})
        parameters = {
            "Source": str(source),
            "Uploaded": uploaded,
            "Arguments": argv,
            "Dataset": dataset,
            "Origin": rest_origin(),
        }
        content = {"Source": "upload" if uploaded else options["Path"]}
        return submitted(await ctx.jobs.submit(JOB_TYPE, parameters, content, priority=priority))
    except BaseException:
        if uploaded:
            await asyncio.to_thread(source.unlink, missing_ok=True)
        raise


class IngestTarget:
    """The DICOMizer's target inside the server: each instance ingested as it is complete, deleted on failure.

    Called from the worker thread the conversion runs in; the store is used on the server's event loop."""

    def __init__(self, ctx: ServerContext, origin: dict[str, str], loop: asyncio.AbstractEventLoop) -> None:
        self.ctx, self.origin, self.loop = ctx, origin, loop
        self.stored: list[str] = []
        self.series = ""

    def add(self, write: WriteInstance) -> None:
        out = io.BytesIO()
        write(out)
        try:
            result = asyncio.run_coroutine_threadsafe(self.ctx.store.ingest(out.getvalue(), self.origin), self.loop)
            stored = result.result().to_json()
        except OrthancError as e:
            raise TargetError(f"the server refused an instance: {e.details or e}") from None
        self.stored.append(stored["ID"])
        self.series = stored["ParentSeries"]

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        for instance in self.stored:
            try:
                asyncio.run_coroutine_threadsafe(
                    self.ctx.store.delete(ResourceType.INSTANCE, instance), self.loop
                ).result()
            except OrthancError:
                pass  # already deleted by someone else
        self.stored.clear()


def _write_dataset(folder: str, tags: dict[str, Any]) -> str:
    path = Path(folder) / "dataset.json"
    path.write_text(json.dumps(tags), encoding="utf-8")
    return str(path)


async def run_job(job: JobRun) -> None:
    params = job.parameters
    source = Path(params["Source"])
    target = IngestTarget(job.context, params["Origin"], asyncio.get_running_loop())
    reported, keep = 0.0, False

    def progress(done: float) -> None:  # in the worker thread: a step now and then, where a cancel stops it
        nonlocal reported
        if done - reported >= 0.01 or done >= 1:
            reported = done
            job.step_from_thread(done)

    try:
        with tempfile.TemporaryDirectory(prefix="isengard-wsi-") as scratch:
            argv = list(params["Arguments"])
            if params.get("Dataset") is not None:
                argv.append(f"--dataset={_write_dataset(scratch, params['Dataset'])}")
            args = parser().parse_args([*argv, "--", str(source)])
            try:
                await asyncio.to_thread(dicomize, args, target, progress)
            except (UsageError, SourceError, JpegError, TargetError, DatasetError, OSError) as e:
                raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"WSI DICOMizer: {one_line(e)}") from None
        job.content.update({"Instances": list(target.stored), "ParentSeries": target.series})
    except JobInterrupted as e:
        keep = e.reason in ("pause", "stop")  # to be run again: the upload is needed then
        raise
    finally:
        if params["Uploaded"] and not keep:
            await asyncio.to_thread(source.unlink, missing_ok=True)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    # not resumable: a run cut short has deleted what it stored, and an uploaded slide is gone with it
    return {JOB_TYPE: JobType(run_job, resumable=False)}


@hookimpl(specname="register_routes")
def register_dicomize_route(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
