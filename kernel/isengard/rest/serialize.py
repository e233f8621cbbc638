"""Resources as Orthanc shows them in JSON, built from the index alone (no file is opened here)."""

from __future__ import annotations

from typing import Any

from ..context import ServerContext
from ..model import MetadataType, Resource, ResourceType

#: Main tags that announce how many instances a series should hold, in Orthanc's order of preference.
_EXPECTED_COUNT_TAGS = ("ImagesInAcquisition", "CardiacNumberOfImages", "NumberOfSlices")


def expected_instances(res: Resource) -> int | None:
    for keyword in _EXPECTED_COUNT_TAGS:
        value = res.main_tags.get(keyword, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def series_status(res: Resource, expected: int | None) -> str:
    if expected is None:
        return "Unknown"
    count = len(res.children)
    if count == expected:
        return "Complete"
    return "Missing" if count < expected else "Inconsistent"


def resource_json(ctx: ServerContext, res: Resource, requested: dict[str, Any] | None = None) -> dict[str, Any]:
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
        out.update(
            IsStable=stable,
            Labels=res.labels,
            LastUpdate=res.last_update,
            MainDicomTags=res.main_tags,
            ParentPatient=res.parent,
            PatientMainDicomTags=res.parent_main_tags,
            Series=res.children,
            Type="Study",
        )
    elif level is ResourceType.SERIES:
        expected = expected_instances(res)
        out.update(
            ExpectedNumberOfInstances=expected,
            Instances=res.children,
            IsStable=stable,
            Labels=res.labels,
            LastUpdate=res.last_update,
            MainDicomTags=res.main_tags,
            ParentStudy=res.parent,
            Status=series_status(res, expected),
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
