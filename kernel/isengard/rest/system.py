"""/system, /statistics, /plugins and the server-wide /tools: what a client asks first."""

from __future__ import annotations

import datetime
import logging

from pydicom.uid import generate_uid
from quart import Blueprint, Quart, Response, request

from .. import ORTHANC_API_VERSION, ORTHANC_VERSION, __version__, hookimpl
from ..context import ServerContext
from ..dicom.tags import format_tag, parse_tag
from ..errors import ErrorCode, OrthancError
from ..logs import LEVELS as LOG_LEVELS
from ..model import ResourceType
from .common import answer, context, text_answer

bp = Blueprint("system", __name__)


def _mb(size: int) -> int:
    return size // (1024 * 1024)


@bp.get("/system")
async def system() -> Response:
    """Version, identity and capabilities of the server (clients pick features from ApiVersion)."""
    ctx = context()
    config = ctx.config
    return answer(
        {
            "ApiVersion": ORTHANC_API_VERSION,
            "Capabilities": {"HasExtendedChanges": False, "HasExtendedFind": False, "HasLabels": True},
            "CheckRevisions": config.bool("CheckRevisions"),
            "DatabaseBackendPlugin": None,
            "DatabaseServerIdentifier": "Orthanc",
            "DatabaseVersion": 6,
            "DicomAet": config.str("DicomAet"),
            "DicomDefaultRetrieveMethod": config.str("DicomDefaultRetrieveMethod"),
            "DicomPort": config.int("DicomPort"),
            "HasLabels": True,
            "HttpPort": config.int("HttpPort"),
            "IngestTranscoding": config.str("IngestTranscoding"),
            "IsHttpServerSecure": config.bool("SslEnabled") or bool(config.dict("RegisteredUsers")),
            "IsengardVersion": __version__,
            "MainDicomTags": {
                level.label: ";".join(format_tag(parse_tag(k)) for k in ctx.main_tags.by_level[level])
                for level in ResourceType
            },
            "MaximumPatientCount": config.int("MaximumPatientCount"),
            "MaximumStorageMode": config.str("MaximumStorageMode"),
            "MaximumStorageSize": config.int("MaximumStorageSize"),
            "Name": config.str("Name"),
            "OverwriteInstances": config.bool("OverwriteInstances"),
            "PluginsEnabled": True,
            "ReadOnly": False,
            "StorageAreaPlugin": None,
            "StorageCompression": config.bool("StorageCompression"),
            "UserMetadata": config.dict("UserMetadata"),
            "Version": ORTHANC_VERSION,
        }
    )


@bp.get("/statistics")
async def statistics() -> Response:
    """Counts and disk usage of the whole store."""
    s = await context().index.statistics()
    return answer(
        {
            "CountInstances": s.count_instances,
            "CountPatients": s.count_patients,
            "CountSeries": s.count_series,
            "CountStudies": s.count_studies,
            "TotalDiskSize": str(s.disk_size),
            "TotalDiskSizeMB": _mb(s.disk_size),
            "TotalUncompressedSize": str(s.uncompressed_size),
            "TotalUncompressedSizeMB": _mb(s.uncompressed_size),
        }
    )


#: Orthanc lists this pseudo-plugin: the script its web interface loads to let plugins extend it.
EXPLORER_JS = "explorer.js"


@bp.get("/plugins")
async def plugins() -> Response:
    """Names of the plugins loaded besides the kernel, and Orthanc's "explorer.js"."""
    return answer([p.name for p in context().plugins] + [EXPLORER_JS])


@bp.get(f"/plugins/{EXPLORER_JS}")
async def explorer_js() -> Response:
    """The extensions of Orthanc Explorer by the plugins (none of Isengard's extend it)."""
    return text_answer("// Extensions to Orthanc Explorer by the registered plugins\n", "application/javascript")


@bp.get("/plugins/<name>")
async def plugin(name: str) -> Response:
    """Description of one loaded plugin."""
    for p in context().plugins:
        if p.name == name:
            return answer(p.to_json())
    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no plugin named {name}")


@bp.get("/tools/now")
async def now() -> Response:
    """The server's time in UTC, as Orthanc writes dates (20240131T235959)."""
    return text_answer(datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S"))


@bp.get("/tools/now-local")
async def now_local() -> Response:
    """The server's local time."""
    return text_answer(datetime.datetime.now().strftime("%Y%m%dT%H%M%S"))


@bp.get("/tools/generate-uid")
async def generate() -> Response:
    """A new DICOM UID; ``level`` (patient, study, series, instance) is required as in Orthanc."""
    level = request.args.get("level", "")
    try:
        ResourceType.parse(level)
    except ValueError:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, "level must be patient, study, series or instance"
        ) from None
    return text_answer(generate_uid())


@bp.get("/tools/log-level")
async def get_log_level() -> Response:
    """The verbosity of the log: default, verbose or trace."""
    level = logging.getLogger("isengard").getEffectiveLevel()
    name = "trace" if level <= logging.DEBUG else "verbose" if level <= logging.INFO else "default"
    return text_answer(name)


@bp.put("/tools/log-level")
async def set_log_level() -> Response:
    """Change the verbosity of the log at run time."""
    name = (await request.get_data(as_text=True)).strip()
    if name not in LOG_LEVELS:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "the log level must be default, verbose or trace")
    logging.getLogger("isengard").setLevel(LOG_LEVELS[name])
    return text_answer("")


@bp.get("/tools/default-encoding")
async def default_encoding() -> Response:
    """The character set assumed for files that declare none."""
    return text_answer(context().store.default_encoding)


@bp.post("/tools/reset")
async def reset() -> Response:
    """Restart the server: the configuration is read again and plugins are reloaded."""
    context().lifecycle.request_restart()
    return answer({})


@bp.post("/tools/shutdown")
async def shutdown() -> Response:
    """Stop the server cleanly."""
    context().lifecycle.request_stop()
    return answer({})


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
