"""Requested tags: the values a /tools/find, a C-FIND or a ``?requestedTags=`` asks for beyond MainDicomTags.

Answered from the index when the tag is a main tag of the resource or of an ancestor, or one of the tags DICOM
computes from the hierarchy (NumberOfStudyRelatedInstances, ModalitiesInStudy, ...); only other tags make us open
a file, and then a single instance of the resource, as Orthanc does. Tags found nowhere are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydicom.datadict import dictionary_VR, keyword_for_tag

from .dicom.json import MAX_STRING_LENGTH, JsonFormat, dataset_to_json
from .dicom.parse import dataset_text
from .dicom.tags import format_tag, parse_tag
from .model import MetadataType, Resource, ResourceType

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .context import ServerContext

#: Tags computed from the hierarchy (PS3.4 C.3.4), and the one level each is defined at: Orthanc computes them
#: for resources of that level only.
COMPUTED_TAGS: dict[str, ResourceType] = {
    "NumberOfPatientRelatedStudies": ResourceType.PATIENT,
    "NumberOfPatientRelatedSeries": ResourceType.PATIENT,
    "NumberOfPatientRelatedInstances": ResourceType.PATIENT,
    "NumberOfStudyRelatedSeries": ResourceType.STUDY,
    "NumberOfStudyRelatedInstances": ResourceType.STUDY,
    "ModalitiesInStudy": ResourceType.STUDY,
    "SOPClassesInStudy": ResourceType.STUDY,
    "NumberOfSeriesRelatedInstances": ResourceType.SERIES,
    "InstanceAvailability": ResourceType.INSTANCE,
}

#: One tag as Orthanc's full format types it: ("String" | "Sequence" | "Null" | "TooLong", value).
Entry = tuple[str, Any]


def format_tags(values: Mapping[str, str], fmt: JsonFormat) -> dict[str, Any]:
    """String tags by keyword (MainDicomTags, RequestedTags) in one of Orthanc's three JSON forms."""
    return _formatted({name: ("String", value) for name, value in values.items()}, fmt)


def _formatted(entries: Mapping[str, Entry], fmt: JsonFormat) -> dict[str, Any]:
    if fmt is JsonFormat.SIMPLIFY:
        return {name: value for name, (_, value) in entries.items()}
    out: dict[str, Any] = {}
    for name, (kind, value) in entries.items():
        tag = parse_tag(name)
        if fmt is JsonFormat.SHORT:
            out[format_tag(tag)] = value
        else:
            out[format_tag(tag)] = {"Name": keyword_for_tag(tag) or name, "Type": kind, "Value": value}
    return dict(sorted(out.items()))


async def _descendants(ctx: ServerContext, res: Resource, depth: int, known: Mapping[str, Resource]) -> list[Resource]:
    level = res.level
    current = [res]
    for _ in range(depth):
        child_level = level.child
        assert child_level is not None
        children = [c for r in current for c in r.children]
        cached = [known[c] for c in children if c in known]
        current = cached if len(cached) == len(children) else await ctx.index.get_resources(child_level, children)
        level = child_level
    return current


async def _computed(ctx: ServerContext, res: Resource, keyword: str, known: Mapping[str, Resource]) -> str:
    level = res.level
    if keyword == "InstanceAvailability":
        return "ONLINE"
    if keyword.endswith("RelatedStudies"):
        return str(len(res.children))
    if keyword == "NumberOfSeriesRelatedInstances":
        return str(len(res.children))
    if keyword == "SOPClassesInStudy":
        instances = await _descendants(ctx, res, ResourceType.INSTANCE - level, known)
        return "\\".join(sorted({i.metadata.get(MetadataType.SOP_CLASS_UID, "") for i in instances} - {""}))
    series = await _descendants(ctx, res, ResourceType.SERIES - level, known)
    if keyword.endswith("RelatedInstances"):
        return str(sum(len(s.children) for s in series))
    if keyword.endswith("RelatedSeries"):
        return str(len(series))
    # ModalitiesInStudy
    return "\\".join(sorted({s.main_tags.get("Modality", "") for s in series} - {""}))


async def requested_tags(
    ctx: ServerContext,
    res: Resource,
    keywords: Sequence[str],
    fmt: JsonFormat = JsonFormat.SIMPLIFY,
    known: Mapping[str, Resource] | None = None,
) -> dict[str, Any]:
    """Values of ``keywords`` (keywords, or "gggg,eeee" for private tags) for one resource, in format ``fmt``.

    ``known`` holds ancestors and descendants already read (:func:`relatives_of`), so that answering many
    resources of one level does not ask the index for the same patient, study or series again and again.
    """
    found: dict[str, Entry] = {}
    missing: list[str] = []
    ancestors: list[Resource] | None = None
    for keyword in keywords:
        if keyword in res.main_tags:
            found[keyword] = ("String", res.main_tags[keyword])
            continue
        computed_level = COMPUTED_TAGS.get(keyword)
        if computed_level is not None:
            if computed_level is res.level:
                found[keyword] = ("String", await _computed(ctx, res, keyword, known or {}))
            continue
        tag_level = ctx.main_tags.level_of(keyword)
        if tag_level is not None and tag_level < res.level:
            ancestors = ancestors if ancestors is not None else await _ancestors(ctx, res, known or {})
            value = next((a.main_tags[keyword] for a in ancestors if keyword in a.main_tags), None)
            if value is not None:
                found[keyword] = ("String", value)
            continue
        missing.append(keyword)
    if missing:
        found.update(await _from_file(ctx, res, missing, fmt))
    return _formatted({k: found[k] for k in keywords if k in found}, fmt)


async def _ancestors(ctx: ServerContext, res: Resource, known: Mapping[str, Resource]) -> list[Resource]:
    found: list[Resource] = []
    current = res
    while current.parent is not None and current.level.parent is not None:
        parent = known.get(current.parent)
        if parent is None:
            parents = await ctx.index.get_resources(current.level.parent, [current.parent])
            if not parents:
                break
            parent = parents[0]
        current = parent
        found.append(current)
    return found


#: The level down to which a computed tag counts the descendants of a resource (counts of children need none).
_COUNTED_DOWN_TO = {
    "NumberOfPatientRelatedSeries": ResourceType.SERIES,
    "NumberOfPatientRelatedInstances": ResourceType.SERIES,  # the series' children
    "NumberOfStudyRelatedSeries": ResourceType.SERIES,
    "NumberOfStudyRelatedInstances": ResourceType.SERIES,
    "ModalitiesInStudy": ResourceType.SERIES,
    "SOPClassesInStudy": ResourceType.INSTANCE,
}


async def relatives_of(
    ctx: ServerContext, resources: Sequence[Resource], keywords: Sequence[str] = ()
) -> dict[str, Resource]:
    """By id, every ancestor of ``resources`` and the descendants that the computed ``keywords`` count, read level
    by level in one index call each: a page of 100 studies with their series counts and modalities costs three
    index calls, not two hundred."""
    found: dict[str, Resource] = {}
    wanted = list(resources)
    while wanted and wanted[0].level.parent is not None:
        ids = list(dict.fromkeys(r.parent for r in wanted if r.parent is not None and r.parent not in found))
        wanted = await ctx.index.get_resources(wanted[0].level.parent, ids) if ids else []
        found.update((r.public_id, r) for r in wanted)
    if not resources:
        return found
    level = resources[0].level
    deepest = max(
        (_COUNTED_DOWN_TO[k] for k in keywords if k in _COUNTED_DOWN_TO and COMPUTED_TAGS[k] is level), default=level
    )
    wanted = list(resources)
    while level < deepest and wanted:
        child_level = level.child
        assert child_level is not None
        wanted = await ctx.index.get_resources(child_level, [c for r in wanted for c in r.children])
        found.update((r.public_id, r) for r in wanted)
        level = child_level
    return found


async def _from_file(ctx: ServerContext, res: Resource, names: list[str], fmt: JsonFormat) -> dict[str, Entry]:
    instance, known = res.public_id, res
    if res.level is not ResourceType.INSTANCE:
        instances = await ctx.index.instances_of(res.level, res.public_id)
        if not instances:
            return {}
        instance, known = instances[0], None
    ds, _ = await ctx.store.read_header(instance, known)
    return {name: entry for name in names if (entry := header_entry(ds, name, fmt)) is not None}


def header_entry(ds: Dataset, name: str, fmt: JsonFormat) -> Entry | None:
    """One tag of a file header typed as in Orthanc's full format (sequences in ``fmt``), ``None`` if absent."""
    tag = parse_tag(name)
    if tag not in ds:
        return None
    if _is_sequence(ds, tag):
        return "Sequence", [dataset_to_json(item, fmt) for item in ds[tag].value or []]
    text = dataset_text(ds, tag)
    if text is None:
        return "Null", None
    if len(text) > MAX_STRING_LENGTH:
        return "TooLong", None
    return "String", text


def _is_sequence(ds: Dataset, tag: int) -> bool:
    """Whether an element is a sequence, read without decoding it (decoding first would make its text inexact)."""
    vr = getattr(ds.get_item(tag), "VR", None)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False
    return vr == "SQ"
