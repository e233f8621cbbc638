"""/patients, /studies, /series, /instances: listing, reading, navigating and deleting resources."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.json import JsonFormat, dataset_to_json
from ..dicom.tags import keyword_of
from ..errors import ErrorCode, OrthancError
from ..model import Resource, ResourceType
from ..requested import relatives_of, requested_tags
from .common import answer, context, flag, get_resource, int_arg, level_of_collection, text_answer
from .serialize import resources_json
from .system import _mb

bp = Blueprint("resources", __name__)

COLLECTIONS = "<any(patients, studies, series, instances):collection>"


def requested_keywords() -> list[str] | None:
    raw = request.args.get("requestedTags") or request.args.get("requested-tags")
    if not raw:
        return None
    try:
        return [keyword_of(t) for t in raw.replace(",", ";").split(";") if t.strip()]
    except KeyError as e:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"unknown tag {e.args[0]!r}") from None


async def expanded(ctx: ServerContext, resources: list[Resource], keywords: list[str] | None) -> list[dict[str, Any]]:
    if keywords is None:
        return await resources_json(ctx, resources)
    known = await relatives_of(ctx, resources, keywords)
    tags = await asyncio.gather(*(requested_tags(ctx, r, keywords, known=known) for r in resources))
    return await resources_json(ctx, resources, tags)


@bp.get(f"/{COLLECTIONS}")
async def list_resources(collection: str) -> Response:
    """Identifiers of all resources of a level; ``?expand`` for full objects, ``since`` with ``limit`` to page."""
    ctx = context()
    level = level_of_collection(collection)
    since, limit = int_arg("since"), int_arg("limit")
    if (since is None) != (limit is None):  # Orthanc pages only with both
        missing = "since" if since is None else "limit"
        raise OrthancError(
            ErrorCode.BAD_REQUEST, f'Missing "{missing}" argument for GET request against: {request.path}'
        )
    ids = await ctx.index.list_resources(level, since=since or 0, limit=limit)
    if not flag("expand"):
        return answer(ids)
    return answer(await expanded(ctx, await ctx.index.get_resources(level, ids), requested_keywords()))


@bp.get(f"/{COLLECTIONS}/<public_id>")
async def get_one(collection: str, public_id: str) -> Response:
    """One resource with its main DICOM tags, parent and children."""
    ctx = context()
    res = await get_resource(level_of_collection(collection), public_id)
    return answer((await expanded(ctx, [res], requested_keywords()))[0])


@bp.delete(f"/{COLLECTIONS}/<public_id>")
async def delete(collection: str, public_id: str) -> Response:
    """Delete a resource, its descendants and its ancestors left empty."""
    remaining = await context().store.delete(level_of_collection(collection), public_id)
    if remaining is None:
        return answer({"RemainingAncestor": None})
    level, rid = remaining
    return answer({"RemainingAncestor": {"ID": rid, "Path": f"/{level.plural}/{rid}", "Type": level.label}})


async def _descendants(level: ResourceType, public_id: str, target: ResourceType) -> list[Resource]:
    ctx = context()
    current = [await get_resource(level, public_id)]
    while current and current[0].level < target:
        child = current[0].level.child
        assert child is not None
        # Orthanc's order: the children of the last parent first, each parent's children in their own order.
        current = await ctx.index.get_resources(child, [c for r in reversed(current) for c in r.children])
    return current


async def _ancestor(level: ResourceType, public_id: str, target: ResourceType) -> Resource:
    res = await get_resource(level, public_id)
    while res.level > target:
        assert res.parent is not None and res.level.parent is not None
        res = await get_resource(res.level.parent, res.parent)
    return res


_CHILD_ROUTES = [
    ("patients", "studies"),
    ("patients", "series"),
    ("patients", "instances"),
    ("studies", "series"),
    ("studies", "instances"),
    ("series", "instances"),
]
_PARENT_ROUTES = [
    ("studies", "patient"),
    ("series", "patient"),
    ("series", "study"),
    ("instances", "patient"),
    ("instances", "study"),
    ("instances", "series"),
]


def _child_view(parent: str, child: str):
    async def view(public_id: str) -> Response:
        ctx = context()
        found = await _descendants(level_of_collection(parent), public_id, level_of_collection(child))
        if "expand" in request.args and not flag("expand"):
            return answer([r.public_id for r in found])
        return answer(await expanded(ctx, found, requested_keywords()))

    view.__doc__ = f"The {child} of one of the {parent}, as full objects (``?expand=false`` for identifiers)."
    view.__name__ = f"{parent}_{child}"
    return view


def _parent_view(collection: str, parent: str):
    async def view(public_id: str) -> Response:
        target = ResourceType.parse(parent)
        res = await _ancestor(level_of_collection(collection), public_id, target)
        return answer((await expanded(context(), [res], requested_keywords()))[0])

    view.__doc__ = f"The {parent} one of the {collection} belongs to."
    view.__name__ = f"{collection}_{parent}"
    return view


for _parent, _child in _CHILD_ROUTES:
    bp.add_url_rule(f"/{_parent}/<public_id>/{_child}", view_func=_child_view(_parent, _child), methods=["GET"])
for _collection, _parent in _PARENT_ROUTES:
    bp.add_url_rule(
        f"/{_collection}/<public_id>/{_parent}", view_func=_parent_view(_collection, _parent), methods=["GET"]
    )


@bp.get(f"/{COLLECTIONS}/<public_id>/statistics")
async def resource_statistics(collection: str, public_id: str) -> Response:
    """Counts and disk usage of one resource and its descendants."""
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    s = await context().index.statistics(level, public_id)
    out: dict[str, Any] = {}
    if level <= ResourceType.PATIENT:
        out["CountStudies"] = s.count_studies
    if level <= ResourceType.STUDY:
        out["CountSeries"] = s.count_series
    if level <= ResourceType.SERIES:
        out["CountInstances"] = s.count_instances
    out.update(
        DicomDiskSize=str(s.dicom_disk_size),
        DicomDiskSizeMB=_mb(s.dicom_disk_size),
        DicomUncompressedSize=str(s.dicom_uncompressed_size),
        DicomUncompressedSizeMB=_mb(s.dicom_uncompressed_size),
        DiskSize=str(s.disk_size),
        DiskSizeMB=_mb(s.disk_size),
        UncompressedSize=str(s.uncompressed_size),
        UncompressedSizeMB=_mb(s.uncompressed_size),
    )
    return answer(out)


@bp.get("/<any(patients, studies, series):collection>/<public_id>/instances-tags")
async def instances_tags(collection: str, public_id: str) -> Response:
    """The tags of every instance of a resource, by instance identifier (reads each file's header)."""
    ctx = context()
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    fmt = JsonFormat.from_args(request.args)
    out: dict[str, Any] = {}
    for instance in await ctx.index.instances_of(level, public_id):
        ds, has_pixels = await ctx.store.read_header(instance)
        out[instance] = dataset_to_json(ds, fmt, with_pixel_data=has_pixels)
    return answer(out)


@bp.get("/<any(patients, studies, series):collection>/<public_id>/shared-tags")
async def shared_tags(collection: str, public_id: str) -> Response:
    """The tags whose value is the same in every instance of the resource."""
    ctx = context()
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    fmt = JsonFormat.from_args(request.args)
    shared: dict[str, Any] | None = None
    for instance in await ctx.index.instances_of(level, public_id):
        ds, _ = await ctx.store.read_header(instance)
        tags = dataset_to_json(ds, JsonFormat.FULL)
        if shared is None:
            shared = {k: v for k, v in tags.items() if v["Type"] == "String"}  # Orthanc compares text values only
        else:
            shared = {k: v for k, v in shared.items() if tags.get(k) == v}
    shared = shared or {}
    if fmt is JsonFormat.FULL:
        return answer(shared)
    if fmt is JsonFormat.SHORT:
        return answer({k: v["Value"] for k, v in shared.items()})
    return answer({v["Name"]: v["Value"] for v in shared.values()})


@bp.get("/patients/<public_id>/protected")
async def get_protected(public_id: str) -> Response:
    """1 if the patient is protected from recycling, else 0."""
    res = await get_resource(ResourceType.PATIENT, public_id)
    return text_answer("1" if res.is_protected else "0")


@bp.put("/patients/<public_id>/protected")
async def set_protected(public_id: str) -> Response:
    """Protect ("1" or "true") or release ("0" or "false") a patient."""
    await get_resource(ResourceType.PATIENT, public_id)
    value = (await request.get_data(as_text=True)).strip()
    if value not in ("0", "1", "true", "false"):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected")
    await context().index.set_protected(public_id, value in ("1", "true"))
    return text_answer("")


@bp.get(f"/{COLLECTIONS}/<public_id>/labels")
async def get_labels(collection: str, public_id: str) -> Response:
    """The labels of a resource."""
    return answer((await get_resource(level_of_collection(collection), public_id)).labels)


def _check_label(label: str) -> None:
    if not label or len(label) > 64 or not all(c.isalnum() or c in "_-" for c in label):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "a label has 1 to 64 letters, digits, '_' or '-'")


@bp.put(f"/{COLLECTIONS}/<public_id>/labels/<label>")
async def add_label(collection: str, public_id: str, label: str) -> Response:
    """Attach a label to a resource."""
    _check_label(label)
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    await context().index.set_label(level, public_id, label, True)
    return text_answer("")


@bp.delete(f"/{COLLECTIONS}/<public_id>/labels/<label>")
async def remove_label(collection: str, public_id: str, label: str) -> Response:
    """Remove a label from a resource."""
    _check_label(label)
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    await context().index.set_label(level, public_id, label, False)
    return text_answer("")


@bp.get(f"/{COLLECTIONS}/<public_id>/labels/<label>")
async def has_label(collection: str, public_id: str, label: str) -> Response:
    """200 if the resource has the label, 404 otherwise."""
    res = await get_resource(level_of_collection(collection), public_id)
    if label not in res.labels:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"the resource has no label {label}")
    return text_answer("")


@bp.get("/tools/labels")
async def all_labels() -> Response:
    """Every label used in the store."""
    return answer(await context().index.all_labels())


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
