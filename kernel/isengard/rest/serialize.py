"""Resources as Orthanc shows them in JSON, built from the index alone (no file is opened here)."""

from __future__ import annotations

from typing import Any

from ..context import ServerContext
from ..dicom.tags import expected_instances
from ..model import MetadataType, Resource, ResourceType


def series_status(expected: int | None, indexes: list[str] | None, count: int) -> str:
    """Orthanc's series status from the IndexInSeries of its instances (those that have one).

    Without the indexes (``None``), the ``count`` of instances gives an approximation.
    """
    if expected is None:
        return "Unknown"
    if indexes is None:
        return "Complete" if count == expected else "Missing" if count < expected else "Inconsistent"
    seen: set[int] = set()
    for text in indexes:
        try:
            index = int(text)
        except ValueError:
            return "Unknown"
        if not 0 < index <= expected or index in seen:
            return "Inconsistent"
        seen.add(index)
    return "Complete" if len(seen) == expected else "Missing"


async def series_indexes(ctx: ServerContext, resources: list[Resource]) -> dict[str, list[str]]:
    """IndexInSeries of the instances of the series among ``resources`` whose status depends on them."""
    wanted = [r for r in resources if r.level is ResourceType.SERIES and expected_instances(r.main_tags) is not None]
    children = [c for r in wanted for c in r.children]
    if not children:
        return {}
    found = {i.public_id: i for i in await ctx.index.get_resources(ResourceType.INSTANCE, children)}
    out: dict[str, list[str]] = {}
    for series in wanted:
        values = (found[c].metadata.get(MetadataType.INDEX_IN_SERIES) for c in series.children if c in found)
        out[series.public_id] = [v for v in values if v is not None]
    return out


async def resources_json(
    ctx: ServerContext, resources: list[Resource], requested: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Several resources as JSON, with the series statuses computed from their instances."""
    indexes = await series_indexes(ctx, resources)
    tags: list[dict[str, Any] | None] = list(requested) if requested is not None else [None] * len(resources)
    return [resource_json(ctx, r, t, indexes.get(r.public_id, [])) for r, t in zip(resources, tags, strict=True)]


def resource_json(
    ctx: ServerContext,
    res: Resource,
    requested: dict[str, Any] | None = None,
    child_indexes: list[str] | None = None,
) -> dict[str, Any]:
    """One resource; a series' Status is exact only with ``child_indexes`` (see :func:`resources_json`)."""
    out: dict[str, Any] = {"ID": res.public_id}
    level = res.level
    stable = ctx.store.stability.is_stable(level, res.public_id)
    if level is ResourceType.PATIENT:
        out.update(
            IsProtected=res.is_protected,
            IsStable=stable,
            Labels=res.labels,
            LastUpdate=res.last_update,
            MainDicomTags=res.main_tags,
            Studies=res.children,
            Type="Patient",
        )
    elif level is ResourceType.STUDY:
        patient_keys = ctx.main_tags.by_level[ResourceType.PATIENT]
        study_keys = ctx.main_tags.by_level[ResourceType.STUDY]
        out.update(
            IsStable=stable,
            Labels=res.labels,
            LastUpdate=res.last_update,
            MainDicomTags={k: v for k, v in res.main_tags.items() if k in study_keys},
            ParentPatient=res.parent,
            PatientMainDicomTags={k: v for k, v in res.main_tags.items() if k in patient_keys},
            Series=res.children,
            Type="Study",
        )
    elif level is ResourceType.SERIES:
        expected = expected_instances(res.main_tags)
        out.update(
            ExpectedNumberOfInstances=expected,
            Instances=res.children,
            IsStable=stable,
            Labels=res.labels,
            LastUpdate=res.last_update,
            MainDicomTags=res.main_tags,
            ParentStudy=res.parent,
            Status=series_status(expected, child_indexes, len(res.children)),
            Type="Series",
        )
    else:
        attachment = res.attachment
        index = res.metadata.get(MetadataType.INDEX_IN_SERIES)
        out.update(
            FileSize=attachment.uncompressed_size if attachment else 0,
            FileUuid=attachment.uuid if attachment else None,
            IndexInSeries=int(index) if index and index.lstrip("-").isdigit() else None,
            Labels=res.labels,
            MainDicomTags=res.main_tags,
            ParentSeries=res.parent,
            Type="Instance",
        )
    if requested is not None:
        out["RequestedTags"] = requested
    return out
