"""/tools/find, /tools/count-resources, /tools/lookup (searches answered from the index) and /tools/create-dicom.

The body of /tools/find is read as the Orthanc Book describes it ("Performing finds within Orthanc"), with the
1.12 additions: Labels and LabelsConstraint, RequestedTags, Full and Short. Where the Book is silent the
behaviour is the one of Orthanc itself:

- the tags of the queried level and of its ancestors are matched in the index; a main tag of a lower level
  (Modality in a study-level find) matches nothing, except ModalitiesInStudy at study level, which matches the
  Modality of any series of the study;
- tags the index does not keep are matched in the header of one instance of each candidate;
- a dotted path of keywords or tags (``RequestAttributesSequence.ScheduledProcedureStepID``, ``00400275.00400009``)
  matches inside a sequence, as QIDO-RS asks (PS3.18 8.3.4.1): an extension, Orthanc's /tools/find refuses it;
- CaseSensitive (default: the CaseSensitivePN option) applies to every tag, not only to person names;
- instances come in the order they were stored, other levels by identifier.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.create import CreationRequest, check_encoding, create_instance, create_series
from ..dicom.json import JsonFormat
from ..dicom.parse import ENCODINGS, dataset_text
from ..dicom.tags import IDENTIFIER_TAGS, format_tag, keyword_of, parse_tag, vr_of
from ..errors import ErrorCode, OrthancError
from ..lookup import FileConstraint, add_constraint, find_resources
from ..model import ResourceType
from ..query import ConstraintKind, FindQuery, LabelsConstraint, OrderKey, TagConstraint, has_wildcard
from ..requested import format_tags, relatives_of, requested_tags
from .attachments import metadata_kind
from .common import answer, context, json_body
from .modules import MODULES
from .serialize import resource_json
from .upload import rest_origin

bp = Blueprint("tools", __name__)


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def unknown_tag(name: str) -> OrthancError:
    """Orthanc's "Unknown DICOM tag" (27), as a 400: the client named the tag."""
    return OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400)


def tag_name(name: str) -> str:
    """A tag named in a request, as the kernel names it: its keyword, or "gggg,eeee" for a private tag."""
    try:
        return keyword_of(name)
    except KeyError:
        pass
    try:
        tag = parse_tag(name)
    except KeyError:
        raise unknown_tag(name) from None
    if (tag >> 16) % 2 == 0:
        raise unknown_tag(name)
    return format_tag(tag)


def tag_path(name: str) -> list[str]:
    """A tag or a dotted path into sequences ("RequestAttributesSequence.00400009"), each step named as
    :func:`tag_name` does; every step but the last must be a sequence (private ones cannot be checked)."""
    path = [tag_name(step) for step in name.split(".")]
    for step in path[:-1]:
        if vr_of(step) not in ("SQ", "UN"):
            raise _bad(f"{step} is not a sequence, in {name}")
    return path


def _bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _bad(f'Field "{name}" should be a Boolean')
    return value


def _count_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f'Field "{name}" should be an integer')
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Field "{name}" should be a positive integer')
    return value


def _strings_field(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f'Field "{name}" should be a list of strings')
    return value


def body_format(body: dict[str, Any]) -> JsonFormat:
    """The tag format of expanded answers: "Short", else "Full", else Orthanc's human-readable default."""
    if _bool_field(body, "Short", False):
        return JsonFormat.SHORT
    if _bool_field(body, "Full", False):
        return JsonFormat.FULL
    return JsonFormat.SIMPLIFY


@dataclass
class FindRequest:
    """A /tools/find body, checked and split into what the index answers and what files must confirm."""

    query: FindQuery
    in_files: list[FileConstraint] = field(default_factory=list)
    answers_nothing: bool = False  # a main tag of a lower level: Orthanc matches nothing
    expand: bool = False
    requested: list[str] = field(default_factory=list)
    fmt: JsonFormat = JsonFormat.SIMPLIFY


def _parse_value(name: str, level: ResourceType, value: str, sensitive: bool) -> TagConstraint:
    constraint = TagConstraint.parse(name, level, value, vr=vr_of(name), case_sensitive=sensitive, universal_star=False)
    assert constraint is not None  # only an empty value is universal in /tools/find, and it is skipped
    return constraint


#: Value representations whose values sort as numbers in an OrderBy.
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"})


def _order_by(ctx: ServerContext, level: ResourceType, keys: Any) -> tuple[OrderKey, ...]:
    """Orthanc 1.12.5's ``OrderBy``: ``[{"Type": "DicomTag"|"Metadata", "Key": ..., "Direction": "ASC"|"DESC"}]``.

    A DICOM tag must be a main tag of the level or of an ancestor: the index sorts, no file is read.
    """
    if not isinstance(keys, list):
        raise _bad('Field "OrderBy" should be a list')
    out = []
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("Key"), str) or not isinstance(key.get("Type"), str):
            raise _bad('Each item of "OrderBy" needs the strings "Type" and "Key"')
        direction = key.get("Direction", "ASC")
        if direction not in ("ASC", "DESC"):
            raise _bad('"Direction" in "OrderBy" must be "ASC" or "DESC"')
        descending = direction == "DESC"
        if key["Type"] == "Metadata":
            out.append(OrderKey(level, metadata=metadata_kind(ctx, key["Key"]), descending=descending))
        elif key["Type"] == "DicomTag":
            name = tag_name(key["Key"])
            owner = ctx.main_tags.level_of(name)
            if owner is None or owner > level:
                raise _bad(f"OrderBy: {key['Key']} is not a main DICOM tag of the {level.label} level or above")
            out.append(OrderKey(owner, tag=name, descending=descending, numeric=vr_of(name) in _NUMERIC_VRS))
        else:
            raise _bad('"Type" in "OrderBy" must be "DicomTag" or "Metadata"')
    return tuple(out)


def parse_find(ctx: ServerContext, body: dict[str, Any]) -> FindRequest:
    level_name = body.get("Level")
    if not isinstance(level_name, str):
        raise _bad('Field "Level" is missing, or should be a string')
    try:
        level = ResourceType.parse(level_name)
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown resource level: {level_name}") from None
    query = body.get("Query", {})
    if not isinstance(query, dict):
        raise _bad('Field "Query" is missing, or should be a JSON object')
    sensitive = _bool_field(body, "CaseSensitive", ctx.config.bool("CaseSensitivePN"))
    out = FindRequest(FindQuery(level))
    for raw_name, value in query.items():
        if not isinstance(value, str):
            raise _bad(f'Tag "{raw_name}" should be associated with a string')
        *sequences, name = tag_path(raw_name)
        if value == "":
            continue  # universal matching
        if sequences:
            add_constraint(out.in_files, sequences, _parse_value(name, level, value, sensitive))
            continue
        main_level = ctx.main_tags.level_of(name)
        if name == "ModalitiesInStudy" and level is ResourceType.STUDY:
            # DICOM's Modalities in Study key: a study matches when one of its series has a matching Modality
            name, main_level = "Modality", ResourceType.SERIES
            out.query.constraints.append(_parse_value(name, main_level, value, sensitive))
            continue
        constraint = _parse_value(name, main_level or level, value, sensitive)
        if main_level is None:
            out.in_files.append(constraint)
        elif main_level <= level:
            out.query.constraints.append(constraint)
        else:
            out.answers_nothing = True
    labels = _strings_field(body, "Labels")
    constraint_name = body.get("LabelsConstraint", "All")
    try:
        labels_constraint = LabelsConstraint(constraint_name)
    except (ValueError, TypeError):
        raise _bad('Field "LabelsConstraint" must be "All", "Any" or "None"') from None
    limit = _count_field(body, "Limit")
    cap = ctx.config.int("LimitFindInstances" if level is ResourceType.INSTANCE else "LimitFindResults")
    out.query.labels, out.query.labels_constraint = tuple(labels), labels_constraint
    out.query.since = _count_field(body, "Since")
    out.query.limit = min(x for x in (limit, cap) if x) if (limit or cap) else None
    out.expand = _bool_field(body, "Expand", False)
    out.requested = [tag_name(t) for t in _strings_field(body, "RequestedTags")]
    out.fmt = body_format(body)
    out.query.order_by = _order_by(ctx, level, body.get("OrderBy", []))
    return out


async def run_find(ctx: ServerContext, find: FindRequest) -> list[str]:
    """Identifiers of the matching resources, in Orthanc's order, paged by Since and Limit."""
    return [] if find.answers_nothing else await find_resources(ctx, find.query, find.in_files)


async def expand_resources(ctx: ServerContext, level: ResourceType, ids: list[str], find: FindRequest) -> list[Any]:
    """Full objects for the matches, with their RequestedTags, tags in the format the body asked for."""
    resources = await ctx.index.get_resources(level, ids)
    if find.requested:
        known = await relatives_of(ctx, resources, find.requested)
        tags = await asyncio.gather(*(requested_tags(ctx, r, find.requested, find.fmt, known) for r in resources))
    else:
        tags = [None] * len(resources)
    out = []
    for res, requested in zip(resources, tags, strict=True):
        item = resource_json(ctx, res)
        for key in ("MainDicomTags", "PatientMainDicomTags"):
            if key in item:
                item[key] = format_tags(item[key], find.fmt)
        if requested is not None:
            item["RequestedTags"] = requested
        out.append(item)
    return out


@bp.post("/tools/find")
async def find() -> Response:
    """Search a level by DICOM tags (wildcards, ranges, lists) and labels; ``Expand`` for full objects."""
    ctx = context()
    request_ = parse_find(ctx, await json_body())
    ids = await run_find(ctx, request_)
    if not request_.expand:
        return answer(ids)
    return answer(await expand_resources(ctx, request_.query.level, ids, request_))


@bp.post("/tools/count-resources")
async def count_resources() -> Response:
    """How many resources a /tools/find body matches (Limit and Since apply)."""
    ctx = context()
    ids = await run_find(ctx, parse_find(ctx, await json_body()))
    return answer({"Count": len(ids)})


@bp.post("/tools/lookup")
async def lookup() -> Response:
    """Resources whose PatientID, StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID is the body."""
    ctx = context()
    value = (await request.get_data(as_text=True)).strip()
    if not value:
        return answer([])
    if has_wildcard(value):
        tag = format_tag(parse_tag(IDENTIFIER_TAGS[ResourceType.PATIENT]))
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Wildcards are not allowed on tag {tag}")
    out = []
    for level in ResourceType:
        keyword = IDENTIFIER_TAGS[level]
        constraint = TagConstraint(keyword, level, ConstraintKind.EQUAL, (value,), case_sensitive=False)
        for public_id in await ctx.index.find(FindQuery(level, [constraint])):
            out.append({"ID": public_id, "Path": f"/{level.plural}/{public_id}", "Type": level.label})
    return answer(out)


def _parent_tags(ds: Dataset, level: ResourceType) -> dict[str, str]:
    """The string tags of the modules of ``level`` and above in a sibling's header, which a new child inherits."""
    inherited: dict[str, str] = {}
    current: ResourceType | None = level
    while current is not None:
        for keyword in MODULES[current]:
            tag = parse_tag(keyword)
            if tag in ds and vr_of(keyword) != "SQ":  # the dictionary VR: ds[tag] would decode the raw value
                inherited[keyword] = dataset_text(ds, tag) or ""
        current = current.parent
    return inherited


async def _creation_request(ctx: ServerContext, body: dict[str, Any]) -> CreationRequest:
    tags = body["Tags"] if "Tags" in body else {k: v for k, v in body.items() if k != "PixelData"}
    if not isinstance(tags, dict):
        raise _bad('Field "Tags" must be a JSON object')
    charset = tags.get("SpecificCharacterSet")
    if charset is not None and not isinstance(charset, str):
        raise _bad('"SpecificCharacterSet" must be a string')
    default = ENCODINGS.get(ctx.config.str("DefaultEncoding"), ENCODINGS["Latin1"])
    if "Tags" not in body:
        default = ""  # the legacy body (tags at the top level) declares no character set
    request_ = CreationRequest(tags, check_encoding(charset) if charset else default)
    request_.force = _bool_field(body, "Force", False)
    request_.interpret_binary = _bool_field(body, "InterpretBinaryTags", True)
    creator = body.get("PrivateCreator", ctx.config.str("DefaultPrivateCreator"))
    if not isinstance(creator, str):
        raise _bad('Field "PrivateCreator" must be a string')
    request_.private_creator = creator
    if "Parent" in body:
        parent = body["Parent"]
        level = await ctx.index.lookup(parent) if isinstance(parent, str) else None
        if level is None:
            raise OrthancError(ErrorCode.CREATE_DICOM_BAD_PARENT, f"Unknown resource: {parent}")
        if level is ResourceType.INSTANCE:
            raise OrthancError(ErrorCode.CREATE_DICOM_PARENT_IS_INSTANCE)
        sibling = (await ctx.index.instances_of(level, parent))[0]
        ds, _ = await ctx.store.read_header(sibling)
        request_.parent_level = level
        request_.inherited = _parent_tags(ds, level)
        charset = dataset_text(ds, 0x00080005) if "SpecificCharacterSet" in ds else None
        if charset in ENCODINGS.values():
            request_.encoding = charset
    return request_


@bp.post("/tools/create-dicom")
async def create_dicom() -> Response:
    """Create and store a DICOM instance from JSON tags, with a PNG/JPEG image or a PDF as "Content"."""
    ctx = context()
    body = await json_body()
    creation = await _creation_request(ctx, body)
    content = body.get("Content") if "Tags" in body else body.get("PixelData")
    if isinstance(content, list) and content:
        files = await asyncio.to_thread(create_series, creation, content)
        results = [await ctx.store.ingest(data, rest_origin()) for data in files]
        series = results[0].instance.identifiers.public_id(ResourceType.SERIES)
        return answer({"ID": series, "Path": f"/series/{series}", "Status": "Success"})
    if content is not None and not isinstance(content, str | list):
        raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
    data = await asyncio.to_thread(create_instance, creation, content if isinstance(content, str) else None)
    return answer((await ctx.store.ingest(data, rest_origin())).to_json())


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
