"""/tools/find, /tools/count-resources and /tools/lookup: searches answered from the index."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.parse import element_text
from ..dicom.tags import IDENTIFIER_TAGS, keyword_of, vr_of
from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from ..query import FindQuery, LabelsConstraint, TagConstraint
from .common import answer, context, json_body
from .resources import expanded

bp = Blueprint("tools", __name__)


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def parse_find_request(ctx: ServerContext, body: dict[str, Any]) -> tuple[FindQuery, dict[str, str], list[str]]:
    """(query on main tags, constraints on other tags to check in files, requested tag keywords)."""
    try:
        level = ResourceType.parse(str(body.get("Level", "")))
    except ValueError:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, "Level must be Patient, Study, Series or Instance"
        ) from None
    query = body.get("Query", {})
    if not isinstance(query, dict):
        raise _bad('"Query" must be a JSON object')
    case_sensitive = body.get("CaseSensitive", True)
    if not isinstance(case_sensitive, bool):
        raise _bad('"CaseSensitive" must be a Boolean')
    case_sensitive_pn = ctx.config.bool("CaseSensitivePN")
    constraints: list[TagConstraint] = []
    file_constraints: dict[str, str] = {}
    for name, value in query.items():
        if not isinstance(value, str):
            raise _bad(f"the value of {name!r} in Query must be a string")
        try:
            keyword = keyword_of(name)
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"unknown tag {name!r}") from None
        vr = vr_of(keyword)
        tag_level = ctx.main_tags.level_of(keyword)
        sensitive = case_sensitive and (vr != "PN" or case_sensitive_pn)
        if tag_level is None:
            if value.strip() not in ("", "*"):
                file_constraints[keyword] = value
            continue
        constraint = TagConstraint.parse(keyword, tag_level, value, vr=vr, case_sensitive=sensitive)
        if constraint is not None:
            constraints.append(constraint)
    labels = body.get("Labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _bad('"Labels" must be a list of strings')
    try:
        labels_constraint = LabelsConstraint(body.get("LabelsConstraint", "All"))
    except ValueError:
        raise _bad('"LabelsConstraint" must be "All", "Any" or "None"') from None
    since, limit = body.get("Since", 0), body.get("Limit", 0)
    if not isinstance(since, int) or not isinstance(limit, int) or since < 0 or limit < 0:
        raise _bad('"Since" and "Limit" must be non-negative integers')
    cap = ctx.config.int("LimitFindInstances" if level is ResourceType.INSTANCE else "LimitFindResults")
    effective = min(x for x in (limit, cap) if x) if (limit or cap) else None
    requested = body.get("RequestedTags", [])
    if not isinstance(requested, list):
        raise _bad('"RequestedTags" must be a list')
    try:
        requested_keywords = [keyword_of(str(t)) for t in requested]
    except KeyError as e:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"unknown tag {e.args[0]!r}") from None
    find = FindQuery(level, constraints, tuple(labels), labels_constraint, since, effective)
    return find, file_constraints, requested_keywords


async def _file_matches(ctx: ServerContext, level: ResourceType, public_id: str, wanted: dict[str, str]) -> bool:
    """Tags the index does not keep are checked in the header of one instance of the resource."""
    instances = await ctx.index.instances_of(level, public_id)
    if not instances:
        return False
    ds, _ = await ctx.store.read_header(instances[0])
    for keyword, value in wanted.items():
        constraint = TagConstraint.parse(keyword, level, value, vr=vr_of(keyword), case_sensitive=True)
        actual = element_text(ds[keyword]) if keyword in ds else None
        if constraint is not None and not constraint.matches(actual):
            return False
    return True


async def run_find(ctx: ServerContext, body: dict[str, Any]) -> tuple[FindQuery, list[str], list[str]]:
    find, file_constraints, requested = parse_find_request(ctx, body)
    if not file_constraints:
        return find, await ctx.index.find(find), requested
    # Paging must apply after the file check, so the index is asked for every candidate.
    unpaged = FindQuery(find.level, find.constraints, find.labels, find.labels_constraint)
    candidates = await ctx.index.find(unpaged)
    checks = await asyncio.gather(*(_file_matches(ctx, find.level, c, file_constraints) for c in candidates))
    matching = [c for c, ok in zip(candidates, checks, strict=True) if ok][find.since :]
    return find, (matching if find.limit is None else matching[: find.limit]), requested


@bp.post("/tools/find")
async def find() -> Response:
    """Search a level by DICOM tags (wildcards, ranges, lists), labels; ``Expand`` for full objects."""
    ctx = context()
    body = await json_body()
    query, ids, requested = await run_find(ctx, body)
    if not body.get("Expand", False):
        return answer(ids)
    resources = await ctx.index.get_resources(query.level, ids)
    return answer(await expanded(ctx, resources, requested or None))


@bp.post("/tools/count-resources")
async def count_resources() -> Response:
    """How many resources a /tools/find body would return."""
    ctx = context()
    body = await json_body()
    _, ids, _ = await run_find(ctx, body)
    return answer({"Count": len(ids)})


@bp.post("/tools/lookup")
async def lookup() -> Response:
    """Resources whose PatientID, StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID is the body."""
    ctx = context()
    value = (await request.get_data(as_text=True)).strip()
    if not value:
        raise _bad("the body must hold a DICOM identifier")
    out = []
    for level in ResourceType:
        keyword = IDENTIFIER_TAGS[level]
        constraint = TagConstraint.parse(keyword, level, value, vr="LO", case_sensitive=True)
        if constraint is None or "*" in value or "?" in value:
            continue
        for public_id in await ctx.index.find(FindQuery(level, [constraint])):
            out.append({"ID": public_id, "Path": f"/{level.plural}/{public_id}", "Type": level.label})
    return answer(out)


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
