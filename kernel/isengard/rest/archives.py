"""ZIP archives and DICOM media (ZIP with a DICOMDIR) of patients, studies and series, and of any set of them.

Routes and fields are Orthanc's (Orthanc Book, "REST API", downloading archives and media): GET or POST on
/{patients|studies|series}/{id}/archive and /media, and /tools/create-archive, /create-media and
/create-media-extended with a body {"Resources": [...]} (or a bare list), or, as in Orthanc 1.12, GET with
``?resources=a,b``. Options: "Transcode" (``?transcode=``) to a transfer syntax, "LossyQuality"
(``?lossy-quality=``), "Filename" (``?filename=``, of the Content-Disposition header), "Extended" (``?extended``)
for media, and "Synchronous"/"Asynchronous"/"Priority". A synchronous answer is the ZIP itself, streamed as it
is made (as Orthanc's SynchronousZipStream); an asynchronous one is an "Archive" or "Media" job, whose ZIP is
then at /jobs/{id}/archive.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..archive import ArchiveOptions, plan_archive, write_archive
from ..context import ServerContext
from ..dicom.transcode import lossy_quality, parse_syntax, quality_of
from ..jobs.archive import ARCHIVE, MEDIA, MIME_TYPE, archive_content, job_parameters
from .common import context, flag, get_resource, level_of_collection
from .jobs import job_request, submitted
from .modalities import bad_body, bool_field, raw_json, str_field

bp = Blueprint("archives", __name__)

_LEVELS = "<any(patients, studies, series):collection>"
#: The name of the job's output file when the request gives none (Orthanc's).
_JOB_FILENAME = "archive.zip"
#: The name of a synchronous answer of /tools/create-* (Orthanc's).
_TOOLS_FILENAME = "Archive.zip"


def _options(media: bool, extended: bool, transcode: str, quality: Any) -> ArchiveOptions:
    ctx = context()
    return ArchiveOptions(
        media=media,
        extended=extended,
        transcode=str(parse_syntax(transcode)) if transcode else None,
        quality=quality_of(quality, lossy_quality(ctx.config)),
    )


async def _answer(
    resources: list[str],
    options: ArchiveOptions,
    filename: str,
    default: str,
    *,
    synchronous: bool = True,
    priority: int = 0,
) -> Response:
    """The archive streamed (named ``filename``, else ``default``), or the job that makes it (its output named
    ``filename``, else "archive.zip"). Unknown resources are refused (404) before either."""
    ctx = context()
    plan = await plan_archive(ctx, resources, media=options.media)
    if not synchronous:
        parameters = job_parameters(resources, options, filename or _JOB_FILENAME)
        kind = MEDIA if options.media else ARCHIVE
        return submitted(await ctx.jobs.submit(kind, parameters, archive_content(plan), priority=priority))
    return Response(
        write_archive(ctx, plan, options),
        content_type=MIME_TYPE,
        headers={"Content-Disposition": f'filename="{filename or default}"'},
    )


def _query_options(media: bool, extended: bool) -> ArchiveOptions:
    return _options(media, extended, request.args.get("transcode", ""), request.args.get("lossy-quality"))


async def _body() -> dict[str, Any]:
    body = await raw_json(empty={})
    if isinstance(body, list):  # Orthanc takes the list of resources alone, too
        return {"Resources": body}
    if not isinstance(body, dict):
        raise bad_body("Must provide a JSON object")
    return body


def _body_options(body: dict[str, Any], media: bool, extended: bool) -> ArchiveOptions:
    return _options(
        media,
        bool_field(body, "Extended", extended) if media else False,
        str_field(body, "Transcode"),
        body.get("LossyQuality"),
    )


def _resources_field(body: dict[str, Any]) -> list[str]:
    if "Resources" not in body:
        raise bad_body("Missing field Resources in the JSON body")
    resources = body["Resources"]
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise bad_body("Expected a list of strings (Orthanc identifiers)")
    return resources


# -- one patient, study or series ------------------------------------------------------------------------------
async def _single(collection: str, public_id: str, media: bool) -> Response:
    await get_resource(level_of_collection(collection), public_id)
    default_name = f"{public_id}.zip"
    if request.method == "GET":
        options = _query_options(media, flag("extended"))
        return await _answer([public_id], options, request.args.get("filename", ""), default_name)
    body = await _body()
    synchronous, priority = job_request(body)
    options = _body_options(body, media, False)
    filename = str_field(body, "Filename")
    return await _answer([public_id], options, filename, default_name, synchronous=synchronous, priority=priority)


@bp.route(f"/{_LEVELS}/<public_id>/archive", methods=["GET", "POST"])
async def archive(collection: str, public_id: str) -> Response:
    """A ZIP of the resource's DICOM files, in "Patient/Study/Series/XX000000.dcm" folders."""
    return await _single(collection, public_id, False)


@bp.route(f"/{_LEVELS}/<public_id>/media", methods=["GET", "POST"])
async def media(collection: str, public_id: str) -> Response:
    """A ZIP with a DICOMDIR and the files as IMAGES/IM0, IM1..., ready to burn (``extended``: more keys)."""
    return await _single(collection, public_id, True)


# -- any set of resources --------------------------------------------------------------------------------------
async def _many(media: bool, extended: bool) -> Response:
    if request.method == "GET":  # Orthanc 1.12
        resources = [r for r in request.args.get("resources", "").split(",") if r]
        options = _query_options(media, extended)
        return await _answer(resources, options, request.args.get("filename", ""), _TOOLS_FILENAME)
    body = await _body()
    resources = _resources_field(body)
    synchronous, priority = job_request(body)
    options = _body_options(body, media, extended)
    filename = str_field(body, "Filename")
    return await _answer(resources, options, filename, _TOOLS_FILENAME, synchronous=synchronous, priority=priority)


@bp.route("/tools/create-archive", methods=["GET", "POST"])
async def create_archive() -> Response:
    """A ZIP of patients, studies, series and instances together (levels may be mixed)."""
    return await _many(False, False)


@bp.route("/tools/create-media", methods=["GET", "POST"])
async def create_media() -> Response:
    """DICOM media of patients, studies, series and instances together."""
    return await _many(True, False)


@bp.route("/tools/create-media-extended", methods=["GET", "POST"])
async def create_media_extended() -> Response:
    """DICOM media with the extended DICOMDIR keys."""
    return await _many(True, True)


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
