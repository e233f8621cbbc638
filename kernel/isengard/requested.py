"""Requested tags: the values a /tools/find, a C-FIND or a ``?requestedTags=`` asks for beyond MainDicomTags.

Answered from the index when the tag is a main tag of the resource or of an ancestor, or one of the counters
DICOM computes (NumberOfStudyRelatedInstances, ModalitiesInStudy, ...); only other tags make us open a file, and
then a single instance of the resource (as Orthanc does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .dicom.parse import element_text
from .model import MetadataType, Resource, ResourceType

if TYPE_CHECKING:
    from .context import ServerContext

#: Counters and summaries computed from the hierarchy, and the level they are defined at.
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


async def _descendants(ctx: ServerContext, res: Resource, depth: int) -> list[Resource]:
    level = res.level
    current = [res]
    for _ in range(depth):
        child_level = level.child
        assert child_level is not None
        children = [c for r in current for c in r.children]
        current = await ctx.index.get_resources(child_level, children)
        level = child_level
    return current


async def _computed(ctx: ServerContext, res: Resource, keyword: str) -> str:
    level = res.level
    if keyword == "InstanceAvailability":
        return "ONLINE"
    if keyword.startswith("NumberOf") and keyword.endswith("Instances"):
        return str(len(await ctx.index.instances_of(level, res.public_id)))
    if keyword.endswith("RelatedSeries"):
        return str(len(await _descendants(ctx, res, ResourceType.SERIES - level)))
    if keyword.endswith("RelatedStudies"):
        return str(len(res.children))
    if keyword == "ModalitiesInStudy":
        series = await _descendants(ctx, res, ResourceType.SERIES - level)
        return "\\".join(sorted({s.main_tags.get("Modality", "") for s in series} - {""}))
    if keyword == "SOPClassesInStudy":
        instances = await _descendants(ctx, res, ResourceType.INSTANCE - level)
        return "\\".join(sorted({i.metadata.get(MetadataType.SOP_CLASS_UID, "") for i in instances} - {""}))
    return ""


async def requested_tags(ctx: ServerContext, res: Resource, keywords: Sequence[str]) -> dict[str, str | None]:
    """Values of ``keywords`` for one resource, by keyword; tags absent everywhere are left out."""
    out: dict[str, str | None] = {}
    missing: list[str] = []
    ancestors: list[Resource] | None = None
    for keyword in keywords:
        if keyword in res.main_tags:
            out[keyword] = res.main_tags[keyword]
            continue
        computed_level = COMPUTED_TAGS.get(keyword)
        if computed_level is not None:
            if computed_level <= res.level:
                target = res
                if computed_level < res.level:
                    ancestors = ancestors if ancestors is not None else await _ancestors(ctx, res)
                    target = next(a for a in ancestors if a.level is computed_level)
                out[keyword] = await _computed(ctx, target, keyword)
            continue
        tag_level = ctx.main_tags.level_of(keyword)
        if tag_level is not None and tag_level < res.level:
            ancestors = ancestors if ancestors is not None else await _ancestors(ctx, res)
            for a in ancestors:
                if keyword in a.main_tags:
                    out[keyword] = a.main_tags[keyword]
                    break
            continue
        missing.append(keyword)
    if missing:
        out.update(await _from_file(ctx, res, missing))
    return out


async def _ancestors(ctx: ServerContext, res: Resource) -> list[Resource]:
    found: list[Resource] = []
    current = res
    while current.parent is not None and current.level.parent is not None:
        parents = await ctx.index.get_resources(current.level.parent, [current.parent])
        if not parents:
            break
        current = parents[0]
        found.append(current)
    return found


async def _from_file(ctx: ServerContext, res: Resource, keywords: list[str]) -> dict[str, str | None]:
    instance = res.public_id
    if res.level is not ResourceType.INSTANCE:
        instances = await ctx.index.instances_of(res.level, res.public_id)
        if not instances:
            return {}
        instance = instances[0]
    ds, _ = await ctx.store.read_header(instance)
    out: dict[str, str | None] = {}
    for keyword in keywords:
        if keyword in ds:
            out[keyword] = element_text(ds[keyword])
    return out
