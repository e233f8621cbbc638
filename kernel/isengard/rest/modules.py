"""The DICOM modules of a resource (/{level}/{id}/module) and the slices of a series in geometric order.

A module is the set of attributes PS3.3 groups for one information entity; Orthanc answers the attributes of
that set present in one instance of the resource, so a study shows its General Study Module whichever of its
instances is read. The lists below are the tables of PS3.3 (2011 edition, as in Orthanc).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import numpy as np
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.imaging import npy_file, numpy_frames
from ..dicom.json import JsonFormat, dataset_to_json
from ..dicom.tags import format_tag, parse_tag
from ..errors import ErrorCode, OrthancError
from ..model import MetadataType, Resource, ResourceType
from .common import answer, context, flag, get_resource, level_of_collection

bp = Blueprint("modules", __name__)

#: PS3.3 Table C.7-1, Patient Module.
PATIENT_MODULE = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate",
    "PatientSex",
    "QualityControlSubject",
    "ReferencedPatientSequence",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)

#: PS3.3 Table C.7-3, General Study Module.
STUDY_MODULE = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "RequestingServiceCodeSequence",
    "ReferencedStudySequence",
    "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
)

#: PS3.3 Table C.7-5a, General Series Module.
SERIES_MODULE = (
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Laterality",
    "SeriesDate",
    "SeriesTime",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "ProtocolName",
    "SeriesDescription",
    "SeriesDescriptionCodeSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence",
    "BodyPartExamined",
    "PatientPosition",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "RequestAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "PerformedProtocolCodeSequence",
    "CommentsOnThePerformedProcedureStep",
    "AnatomicalOrientationType",
)

#: PS3.3 Table C.12-1, SOP Common Module: what /instances/{id}/module answers.
INSTANCE_MODULE = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SpecificCharacterSet",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstanceCreatorUID",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
    "CodingSchemeIdentificationSequence",
    "TimezoneOffsetFromUTC",
    "ContributingEquipmentSequence",
    "InstanceNumber",
    "SOPInstanceStatus",
    "SOPAuthorizationDateTime",
    "SOPAuthorizationComment",
    "AuthorizationEquipmentCertificationNumber",
    "MACParametersSequence",
    "DigitalSignaturesSequence",
    "EncryptedAttributesSequence",
    "OriginalAttributesSequence",
    "HL7StructuredDocumentReferenceSequence",
)

MODULES: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.PATIENT: PATIENT_MODULE,
    ResourceType.STUDY: STUDY_MODULE,
    ResourceType.SERIES: SERIES_MODULE,
    ResourceType.INSTANCE: INSTANCE_MODULE,
}


async def module_json(level: ResourceType, public_id: str, module: tuple[str, ...]) -> dict[str, Any]:
    """The attributes of ``module`` found in one instance of the resource, in the format of the query string."""
    ctx = context()
    await get_resource(level, public_id)
    instances = await ctx.index.instances_of(level, public_id)
    if not instances:
        return {}
    ds, _ = await ctx.store.read_header(instances[0])
    wanted = {format_tag(parse_tag(k)) for k in module}
    # One conversion only: values are exact when read from a dataset nobody has browsed yet (dicom.parse)
    full = {k: v for k, v in dataset_to_json(ds, JsonFormat.FULL).items() if k in wanted}
    return _from_full(full, JsonFormat.from_args(request.args))


def _from_full(full: dict[str, Any], fmt: JsonFormat) -> dict[str, Any]:
    """Orthanc's full JSON form of tags turned into the simplified or short one."""
    if fmt is JsonFormat.FULL:
        return full
    out: dict[str, Any] = {}
    for tag, entry in full.items():
        value = entry["Value"]
        if entry["Type"] == "Sequence":
            value = [_from_full(item, fmt) for item in value]
        out[entry["Name"] if fmt is JsonFormat.SIMPLIFY else tag] = value
    return out


@bp.get("/<any(patients, studies, series, instances):collection>/<public_id>/module")
async def module(collection: str, public_id: str) -> Response:
    """The tags of the DICOM module of the resource's level (?simplify, ?short), read from one of its instances."""
    level = level_of_collection(collection)
    return answer(await module_json(level, public_id, MODULES[level]))


@bp.get("/studies/<public_id>/module-patient")
@bp.get("/studies/<public_id>/patient-module")
async def study_patient_module(public_id: str) -> Response:
    """The Patient Module of a study, read from one of its instances (?simplify, ?short)."""
    return answer(await module_json(ResourceType.STUDY, public_id, PATIENT_MODULE))


# -- ordered slices ------------------------------------------------------------------------------------------

Vector = tuple[float, float, float]

#: Two slices closer than this along the normal cannot be told apart (Orthanc compares in single precision).
_SAME_POSITION = 10 * 1.1920929e-07


def _floats(text: str | None, count: int) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        return None
    return values if len(values) == count else None


def _normal(orientation: str | None) -> Vector | None:
    """The normal of the image plane: the cross product of the row and column direction cosines."""
    values = _floats(orientation, 6)
    if values is None:
        return None
    (a, b, c), (d, e, f) = values[:3], values[3:]
    return (b * f - c * e, c * d - a * f, a * e - b * d)


def _parallel(u: Vector, v: Vector) -> bool:
    norms = math.hypot(*u) * math.hypot(*v)
    if norms < 1e-12:
        return False
    return abs(abs(sum(x * y for x, y in zip(u, v, strict=True)) / norms) - 1.0) < 1e-6


def _frames(res: Resource) -> int:
    text = res.main_tags.get("NumberOfFrames", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def _index(res: Resource) -> int | None:
    text = res.metadata.get(MetadataType.INDEX_IN_SERIES, "").strip()
    try:
        return int(text)
    except ValueError:
        return None


def _by_position(series: Resource, instances: list[Resource]) -> list[Resource] | None:
    """Instances along the normal of the volume, or ``None`` when their geometry cannot order them."""
    if len(instances) < 2:
        return None
    normal = _normal(series.main_tags.get("ImageOrientationPatient"))
    if normal is None:
        normal = next((n for i in instances if (n := _normal(i.main_tags.get("ImageOrientationPatient")))), None)
    if normal is None:
        return None
    distances: list[tuple[float, Resource]] = []
    for instance in instances:
        position = _floats(instance.main_tags.get("ImagePositionPatient"), 3)
        own_normal = _normal(instance.main_tags.get("ImageOrientationPatient"))
        if position is None or (own_normal is not None and not _parallel(own_normal, normal)):
            return None
        distances.append((sum(p * n for p, n in zip(position, normal, strict=True)), instance))
    distances.sort(key=lambda d: d[0])
    if any(b[0] - a[0] <= _SAME_POSITION for a, b in itertools.pairwise(distances)):
        return None  # two slices at the same place: not a volume
    return [instance for _, instance in distances]


def _by_index(instances: list[Resource]) -> list[Resource] | None:
    if len(instances) < 2:
        return instances
    indexes = [_index(i) for i in instances]
    if any(i is None for i in indexes):
        return None
    return [instance for _, instance in sorted(zip(indexes, instances, strict=True), key=lambda x: x[0])]


async def ordered_instances(public_id: str) -> tuple[str, list[Resource]]:
    """The instances of a series in slice order, and how they were ordered ("Volume" or "Sequence")."""
    series = await get_resource(ResourceType.SERIES, public_id)
    instances = await context().index.get_resources(ResourceType.INSTANCE, series.children)
    ordered = _by_position(series, instances)
    if ordered is not None:
        return "Volume", ordered
    ordered = _by_index(instances)
    if ordered is None:
        raise OrthancError(ErrorCode.CANNOT_ORDER_SLICES, f"Unable to order the slices of series {public_id}")
    return "Sequence", ordered


@bp.get("/series/<public_id>/ordered-slices")
async def ordered_slices(public_id: str) -> Response:
    """The frames of a series in order: along the normal of the slices for a volume, else by instance number."""
    kind, ordered = await ordered_instances(public_id)
    return answer(
        {
            "Dicom": [f"/instances/{i.public_id}/file" for i in ordered],
            "Slices": [f"/instances/{i.public_id}/frames/{f}" for i in ordered for f in range(_frames(i))],
            "SlicesShort": [[i.public_id, 0, _frames(i)] for i in ordered],
            "Type": kind,
        }
    )


@bp.get("/series/<public_id>/numpy")
async def series_numpy(public_id: str) -> Response:
    """The frames of the series as one array (slices, rows, columns, channels), in the order of /ordered-slices.

    Files are decoded one at a time (only the decoded array grows), rescaled to float32 unless ?rescale=0.
    """
    ctx = context()
    rescale = "rescale" not in request.args or flag("rescale")
    _, ordered = await ordered_instances(public_id)
    stacks = []
    for instance in ordered:
        data = await ctx.store.read_dicom(instance.public_id)
        stacks.append(await asyncio.to_thread(numpy_frames, data, None, rescale=rescale))
    try:
        volume = np.concatenate(stacks)
    except ValueError:
        raise OrthancError(
            ErrorCode.INCOMPATIBLE_IMAGE_SIZE, f"The frames of series {public_id} differ in size or format"
        ) from None
    body = await asyncio.to_thread(npy_file, volume, compress=flag("compress"))
    return Response(body, content_type="application/octet-stream")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
