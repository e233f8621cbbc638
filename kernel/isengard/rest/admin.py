"""Administration /tools: log levels per category, metrics, bulk operations, re-indexing from files."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Quart, Response, current_app, request

from .. import ORTHANC_VERSION, hookimpl
from ..context import ServerContext
from ..dicom.network import matching_syntaxes
from ..dicom.parse import ENCODINGS
from ..errors import ErrorCode, OrthancError
from ..logs import LEVELS
from ..model import ResourceType
from .attachments import metadata_names
from .common import answer, context, json_body, text_answer
from .serialize import resource_json

bp = Blueprint("admin", __name__)

#: Orthanc's log categories, mapped to the loggers that produce those messages here.
LOG_CATEGORIES = {
    "generic": "isengard",
    "http": "isengard.rest",
    "dicom": "isengard.dicom",
    "jobs": "isengard.jobs",
    "lua": "isengard.lua",
    "plugins": "isengard.plugins",
    "sqlite": "isengard.sqlite",
}


def _level_name(logger: str) -> str:
    level = logging.getLogger(logger).getEffectiveLevel()
    return "trace" if level <= logging.DEBUG else "verbose" if level <= logging.INFO else "default"


@bp.get("/tools")
async def tools() -> Response:
    """The names of the /tools routes this server answers."""
    names = set()
    for rule in current_app.url_map.iter_rules():
        parts = rule.rule.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "tools" and "<" not in parts[1]:
            names.add(parts[1])
    return answer(sorted(names))


def _category_view(category: str, logger: str) -> Callable[[], Awaitable[Response]]:
    async def view() -> Response:
        if request.method == "PUT":
            name = (await request.get_data(as_text=True)).strip()
            if name not in LEVELS:
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "the level must be default, verbose or trace")
            logging.getLogger(logger).setLevel(LEVELS[name])
            return text_answer("")
        return text_answer(_level_name(logger))

    view.__doc__ = f"Verbosity of the {category} log messages: default, verbose or trace."
    view.__name__ = f"log_level_{category}"
    return view


for _category, _logger in LOG_CATEGORIES.items():
    bp.add_url_rule(
        f"/tools/log-level-{_category}", view_func=_category_view(_category, _logger), methods=["GET", "PUT"]
    )


@bp.put("/tools/default-encoding")
async def set_default_encoding() -> Response:
    """Change the character set assumed for files that declare none (Latin1, Utf8, ...)."""
    name = (await request.get_data(as_text=True)).strip()
    if name not in ENCODINGS:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"unknown encoding {name!r}")
    context().store.default_encoding = name
    return text_answer("")


# -- metrics --------------------------------------------------------------------------------------------------
class Metrics:
    """Counters of the REST server, for /tools/metrics-prometheus."""

    def __init__(self) -> None:
        self.enabled = True
        self.active = 0
        self.last_duration_ms = 0.0


def _metrics() -> Metrics:
    return current_app.config.setdefault("ISENGARD_METRICS", Metrics())


@bp.before_app_request
async def _request_started() -> None:
    request.isengard_started = time.perf_counter()  # type: ignore[attr-defined]
    _metrics().active += 1


@bp.after_app_request
async def _request_done(response: Response) -> Response:
    metrics = _metrics()
    metrics.active = max(0, metrics.active - 1)
    started = getattr(request, "isengard_started", None)
    if started is not None:
        metrics.last_duration_ms = (time.perf_counter() - started) * 1000
    return response


@bp.get("/tools/metrics")
async def get_metrics() -> Response:
    """1 if metrics are collected, else 0."""
    return text_answer("1" if _metrics().enabled else "0")


@bp.put("/tools/metrics")
async def set_metrics() -> Response:
    """Turn the collection of metrics on ("1") or off ("0")."""
    value = (await request.get_data(as_text=True)).strip()
    if value not in ("0", "1"):
        raise OrthancError(ErrorCode.BAD_REQUEST, "the body must be 0 or 1")
    _metrics().enabled = value == "1"
    return text_answer("")


@bp.get("/tools/metrics-prometheus")
async def metrics_prometheus() -> Response:
    """Counts, sizes and request figures in Prometheus' text format."""
    metrics = _metrics()
    if not metrics.enabled:
        return text_answer("")
    stats = await context().index.statistics()
    now = int(time.time() * 1000)
    values: dict[str, float] = {
        "orthanc_count_instances": stats.count_instances,
        "orthanc_count_patients": stats.count_patients,
        "orthanc_count_series": stats.count_series,
        "orthanc_count_studies": stats.count_studies,
        "orthanc_disk_size_mb": stats.disk_size / (1024 * 1024),
        "orthanc_uncompressed_size_mb": stats.uncompressed_size / (1024 * 1024),
        "orthanc_rest_api_active_requests": metrics.active,
        "orthanc_rest_api_duration_ms": round(metrics.last_duration_ms, 3),
    }
    body = "".join(f"{name} {value:g} {now}\n" for name, value in values.items())
    return Response(body, content_type="text/plain; version=0.0.4")


@bp.get("/tools/dicom-conformance")
async def dicom_conformance() -> Response:
    """A short conformance statement: the services and transfer syntaxes of this server."""
    ctx = context()
    lines = [
        "DICOM Conformance Statement of Isengard",
        f"(Orthanc {ORTHANC_VERSION} compatible)",
        "",
        f"Application entity title: {ctx.config.str('DicomAet')}",
        "Storage SCP: every storage SOP class known to pydicom, as received (no transcoding).",
        "Query/Retrieve SCP: C-FIND, C-MOVE, C-GET, Patient Root and Study Root.",
        "Verification SCP: C-ECHO.",
    ]
    return text_answer("\n".join(lines) + "\n")


# -- bulk operations ------------------------------------------------------------------------------------------
async def _resources_argument(body: dict[str, Any]) -> list[str]:
    resources = body.get("Resources")
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise OrthancError(ErrorCode.BAD_REQUEST, '"Resources" must be a list of identifiers')
    return resources


@bp.post("/tools/bulk-delete")
async def bulk_delete() -> Response:
    """Delete several resources of any levels at once (unknown identifiers are skipped)."""
    ctx = context()
    for public_id in await _resources_argument(await json_body()):
        level = await ctx.index.lookup(public_id)
        if level is not None:
            try:
                await ctx.store.delete(level, public_id)
            except OrthancError as e:
                if e.code is not ErrorCode.UNKNOWN_RESOURCE:  # deleted meanwhile, with a parent listed first
                    raise
    return answer({})


@bp.post("/tools/bulk-content")
async def bulk_content() -> Response:
    """The JSON of several resources at once; with "Level", of their descendants or ancestors at that level."""
    ctx = context()
    body = await json_body()
    ids = await _resources_argument(body)
    target: ResourceType | None = None
    if "Level" in body:
        try:
            target = ResourceType.parse(str(body["Level"]))
        except ValueError:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "unknown Level") from None
    with_metadata = body.get("Metadata", True) is not False
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for public_id in ids:
        level = await ctx.index.lookup(public_id)
        if level is None:
            continue
        for res in await _related(ctx, level, public_id, target or level):
            if res.public_id in seen:
                continue
            seen.add(res.public_id)
            item = resource_json(ctx, res)
            if with_metadata:
                item["Metadata"] = await _metadata_json(ctx, res.level, res.public_id)
            out.append(item)
    return answer(out)


async def _related(ctx: ServerContext, level: ResourceType, public_id: str, target: ResourceType) -> list[Any]:
    resources = await ctx.index.get_resources(level, [public_id])
    while resources and resources[0].level > target:
        parent_level = resources[0].level.parent
        assert parent_level is not None
        resources = await ctx.index.get_resources(parent_level, [r.parent for r in resources if r.parent])
    while resources and resources[0].level < target:
        child_level = resources[0].level.child
        assert child_level is not None
        resources = await ctx.index.get_resources(child_level, [c for r in resources for c in r.children])
    return resources


async def _metadata_json(ctx: ServerContext, level: ResourceType, public_id: str) -> dict[str, str]:
    names = metadata_names(ctx)
    values = await ctx.index.get_metadata(level, public_id)
    return {names.get(k, str(k)): v for k, (v, _) in sorted(values.items())}


# -- re-indexing ----------------------------------------------------------------------------------------------
async def reconstruct(ctx: ServerContext, level: ResourceType, public_id: str) -> None:
    """Re-read the files of a resource and store them again: main tags follow the current configuration."""
    for instance in await ctx.index.instances_of(level, public_id):
        data = await ctx.store.read_dicom(instance)
        await ctx.store.reindex(instance, data)


@bp.post("/<any(patients, studies, series, instances):collection>/<public_id>/reconstruct")
async def reconstruct_resource(collection: str, public_id: str) -> Response:
    """Rebuild the index entries of a resource from its files (after ExtraMainDicomTags changed)."""
    ctx = context()
    level = next(lv for lv in ResourceType if lv.plural == collection)
    if await ctx.index.lookup(public_id) is not level:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Unknown resource: {public_id}")
    await reconstruct(ctx, level, public_id)
    return answer({})


@bp.post("/tools/reconstruct")
async def reconstruct_all() -> Response:
    """Rebuild the index entries of every patient from the files."""
    ctx = context()
    for patient in await ctx.index.list_resources(ResourceType.PATIENT):
        await reconstruct(ctx, ResourceType.PATIENT, patient)
        await asyncio.sleep(0)
    return answer({})


@bp.post("/tools/invalidate-tags")
async def invalidate_tags() -> Response:
    """Orthanc drops cached DICOM-as-JSON here; Isengard keeps no such cache, so there is nothing to drop."""
    return answer({})


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)


# -- what the DICOM server accepts ----------------------------------------------------------------------------
@bp.get("/tools/accepted-transfer-syntaxes")
async def get_accepted_transfer_syntaxes() -> Response:
    """The transfer syntaxes the DICOM server accepts in new associations."""
    return answer(context().dicom_settings.syntaxes)


@bp.put("/tools/accepted-transfer-syntaxes")
async def set_accepted_transfer_syntaxes() -> Response:
    """Change them: a UID pattern ("1.2.840.10008.1.2.4.*") or a list of them; answers the resulting list."""
    body = await json_body(expect=(str, list))
    patterns = [body] if isinstance(body, str) else body
    if not patterns or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise OrthancError(
            ErrorCode.BAD_REQUEST, "expected a transfer syntax UID, or a list of them (wildcards allowed)"
        )
    syntaxes = matching_syntaxes(patterns)
    if not syntaxes:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "no known transfer syntax matches")
    context().dicom_settings.syntaxes = syntaxes
    return answer(syntaxes)


@bp.get("/tools/unknown-sop-class-accepted")
async def get_unknown_sop_class_accepted() -> Response:
    """1 if the DICOM server stores SOP classes it does not know, else 0."""
    return text_answer("1" if context().dicom_settings.unknown_sop_class_accepted else "0")


@bp.put("/tools/unknown-sop-class-accepted")
async def set_unknown_sop_class_accepted() -> Response:
    """Accept ("1", "true") or refuse ("0", "false") unknown SOP classes in new associations."""
    value = (await request.get_data(as_text=True)).strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise OrthancError(ErrorCode.BAD_REQUEST, "expected 0, 1, true or false")
    context().dicom_settings.unknown_sop_class_accepted = value in ("1", "true")
    return text_answer("")
