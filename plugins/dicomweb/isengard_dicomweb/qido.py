"""QIDO-RS (PS3.18 10.6): searches for studies, series and instances, answered in the DICOM JSON or XML model.

A search is a /tools/find in disguise, as in Orthanc's plugin: the query parameters become the body that
``isengard.rest.tools.parse_find`` reads, so matching (single values, ``*``/``?`` wildcards, UID lists, date and
time ranges), the split between index and files, ModalitiesInStudy and the LimitFindResults caps are exactly those
of /tools/find and C-FIND. Specific to QIDO:

- ``QidoCaseSensitive`` (default true) decides the case sensitivity of every attribute;
- a lone ``*`` is universal matching (PS3.4 C.2.2.2.4) and UID lists may be separated by commas (PS3.18 8.3.4.1);
- attributes inside sequences are dotted paths of keywords or tags (``RequestAttributesSequence.
  ScheduledProcedureStepID=X``, ``00400275.00400009=X``, PS3.18 8.3.4.1): matched in the header of one
  instance, an item matching when all its keys do (isengard.lookup); the answer holds the whole sequence, and so
  does an ``includefield`` of such a path. Orthanc's plugin 1.7 ignores these keys (and matches everything);
- ``fuzzymatching`` is accepted and ignored (no fuzzy matching is done), ``limit``/``offset`` page the answers;
- answers hold the default attributes of PS3.18 table 6.7.1-2 as Orthanc 1.10 answers them (the study's
  attributes at series and instance level too), the matching keys, and ``includefield`` ones (``all``: every
  attribute of the header of one instance of the resource); as in Orthanc, a StudyInstanceUID (SeriesInstanceUID)
  query parameter leaves out the study's (series') attributes at lower levels. Main tags and computed ones
  (NumberOf*Related*, ModalitiesInStudy) come from the index; other attributes from the header of one instance,
  as Orthanc does (ExtraMainDicomTags moves them to the index). A study search reads no file unless asked
  for other attributes: TimezoneOffsetFromUTC, which Orthanc adds when the files have it, is therefore only
  in series and instance answers;
- SpecificCharacterSet is "ISO_IR 192": JSON text is Unicode (Orthanc names DefaultEncoding there and drops
  the characters that encoding lacks);
- an Accept header asking for application/dicom+xml gets multipart/related parts of NativeDicomModel XML, one
  per match (dicom_xml.py), built from the same JSON model; Orthanc's plugin 1.7 answers JSON to
  ``multipart/related; type="application/dicom+xml"``, XML to a bare application/dicom+xml only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from quart import Blueprint, Response, request

from isengard.context import ServerContext
from isengard.dicom.tags import IDENTIFIER_TAGS, parse_tag
from isengard.errors import ErrorCode, OrthancError
from isengard.lookup import FILE_CHECKS_AT_ONCE
from isengard.model import MetadataType, Resource, ResourceType
from isengard.requested import COMPUTED_TAGS, relatives_of, requested_tags
from isengard.rest.common import context
from isengard.rest.tools import parse_find, run_find, tag_path

from .dicom_json import answer_model, dataset_json, json_answer, tag_key, text_element
from .dicom_xml import MEDIA_TYPE as XML_MEDIA_TYPE
from .dicom_xml import xml_answer
from .resources import resource_path
from .settings import public_root, settings

bp = Blueprint("dicomweb_qido", __name__)

_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_URL = 0x00081190
_SOP_CLASS_UID = 0x00080016
UTF8 = "ISO_IR 192"

_STUDY_KEYS = (
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
)
_SERIES_KEYS = (
    *_STUDY_KEYS,
    "Modality",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "TimezoneOffsetFromUTC",
)
_STUDY_ATTRIBUTES = frozenset(_STUDY_KEYS) - {"SpecificCharacterSet", "RetrieveURL", "StudyInstanceUID"}
_SERIES_ATTRIBUTES = frozenset(
    (
        "Modality",
        "SeriesDescription",
        "SeriesNumber",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
    )
)
#: PS3.18 table 6.7.1-2 (and -2a for instances), as Orthanc 1.10's plugin answers it.
DEFAULT_KEYS: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.STUDY: (
        *_STUDY_KEYS,
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    ResourceType.SERIES: (*_SERIES_KEYS, "NumberOfSeriesRelatedInstances"),
    ResourceType.INSTANCE: (
        *_SERIES_KEYS,
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def _count(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise _bad(f"QIDO-RS parameter {name!r} must be a non-negative integer, not {raw!r}")
    return int(raw)


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


class QidoRequest:
    """The query parameters of a search, read once: the /tools/find body, and which attributes to answer."""

    def __init__(self, level: ResourceType, path_uids: dict[ResourceType, str]) -> None:
        self.level = level
        self.query: dict[str, str] = {}
        self.asked: list[str] = []  # matching keys and includefield attributes, in request order
        self.all_fields = False
        self.limit = self.offset = 0
        for name, value in request.args.items(multi=True):
            self._read(name, value)
        defaults = [k for k in DEFAULT_KEYS[level] if k not in self._known_by_query()]
        self.keys = list(dict.fromkeys([*defaults, *self.asked]))
        for lvl, uid in path_uids.items():
            self.query[IDENTIFIER_TAGS[lvl]] = uid

    def _known_by_query(self) -> frozenset[str]:
        """Default attributes left out because a query parameter names their study or series, as Orthanc does
        (a UID in the path does not: /studies/{uid}/series answers the study's attributes)."""
        known: frozenset[str] = frozenset()
        if "StudyInstanceUID" in self.query and self.level > ResourceType.STUDY:
            known |= _STUDY_ATTRIBUTES
        if "SeriesInstanceUID" in self.query and self.level > ResourceType.SERIES:
            known |= _SERIES_ATTRIBUTES
        return known

    def _read(self, name: str, value: str) -> None:
        if name == "limit":
            self.limit = _count(name, value)
        elif name == "offset":
            self.offset = _count(name, value)
        elif name == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise _bad(f"QIDO-RS parameter 'fuzzymatching' must be true or false, not {value!r}")
        elif name == "includefield":
            for field in filter(None, (f.strip() for f in value.split(","))):
                if field == "all":
                    self.all_fields = True
                else:
                    self.asked.append(tag_path(field)[0])  # a path inside a sequence answers the sequence
        else:
            path = tag_path(name)
            self.asked.append(path[0])
            if value == "*":
                return  # universal matching, whereas /tools/find would require the attribute to be present
            if _vr(parse_tag(path[-1])) == "UI":
                value = value.replace(",", "\\")
            self.query[".".join(path)] = value

    def find_body(self, case_sensitive: bool) -> dict[str, Any]:
        return {
            "Level": self.level.label,
            "Query": self.query,
            "CaseSensitive": case_sensitive,
            "Limit": self.limit,
            "Since": self.offset,
        }


def _from_index(ctx: ServerContext, keyword: str, level: ResourceType) -> bool:
    """Whether the index answers an attribute of a resource of ``level`` (a main tag of it or an ancestor)."""
    main_level = ctx.main_tags.level_of(keyword)
    return (main_level is not None and main_level <= level) or COMPUTED_TAGS.get(keyword) is level


async def _header(ctx: ServerContext, res: Resource) -> Dataset:
    if res.level is ResourceType.INSTANCE:
        ds, _ = await ctx.store.read_header(res.public_id, res)
    else:
        ds, _ = await ctx.store.read_header((await ctx.index.instances_of(res.level, res.public_id))[0])
    return ds


async def answer_resource(
    ctx: ServerContext, res: Resource, qido: QidoRequest, root: str, known: Mapping[str, Resource]
) -> dict[str, Any]:
    """One match in the DICOM JSON model: index values first, one instance's header for the rest."""
    level = res.level
    identifiers = [IDENTIFIER_TAGS[lvl] for lvl in (ResourceType.STUDY, ResourceType.SERIES, level) if lvl <= level]
    wanted = [k for k in qido.keys if k not in ("SpecificCharacterSet", "RetrieveURL")]
    in_index = [k for k in dict.fromkeys([*identifiers, *wanted]) if _from_index(ctx, k, level)]
    values = await requested_tags(ctx, res, in_index, known=known)
    out: dict[str, Any] = {}
    # an instance's SOP class is in the index's metadata, not among the main tags
    from_metadata = level is ResourceType.INSTANCE and "SOPClassUID" in wanted
    in_files = {parse_tag(k) for k in wanted if k not in in_index and not (from_metadata and k == "SOPClassUID")}
    if qido.all_fields or in_files:
        header = await _header(ctx, res)
        out.update(await asyncio.to_thread(dataset_json, header, only=None if qido.all_fields else in_files))
    for keyword in in_index:
        if keyword in values and (keyword in wanted or qido.all_fields):
            tag = parse_tag(keyword)
            out[tag_key(tag)] = text_element(tag, _vr(tag), values[keyword])
    if from_metadata:
        out[tag_key(_SOP_CLASS_UID)] = text_element(
            _SOP_CLASS_UID, "UI", res.metadata.get(MetadataType.SOP_CLASS_UID, "")
        )
    out[tag_key(_SPECIFIC_CHARACTER_SET)] = {"vr": "CS", "Value": [UTF8]}
    uids = {lvl: values.get(IDENTIFIER_TAGS[lvl], "") for lvl in ResourceType if lvl >= ResourceType.STUDY}
    out[tag_key(_RETRIEVE_URL)] = {"vr": "UR", "Value": [root + resource_path(uids, level)]}
    return dict(sorted(out.items()))


async def _answers(
    ctx: ServerContext, resources: list[Resource], qido: QidoRequest, root: str, known: Mapping[str, Resource]
) -> AsyncIterator[list[Any]]:
    """The matches in the DICOM JSON model, a few at a time (each may read a file); outside the app context when
    the answer streams them, hence ``root`` read before."""
    for start in range(0, len(resources), FILE_CHECKS_AT_ONCE):
        batch = resources[start : start + FILE_CHECKS_AT_ONCE]
        yield await asyncio.gather(*(answer_resource(ctx, r, qido, root, known) for r in batch))


async def search(level: ResourceType, path_uids: dict[ResourceType, str]) -> Response:
    ctx = context()
    model = answer_model()
    qido = QidoRequest(level, path_uids)
    find = parse_find(ctx, qido.find_body(settings().qido_case_sensitive))
    ids = await run_find(ctx, find)
    resources = await ctx.index.get_resources(level, ids)
    if model == XML_MEDIA_TYPE and not resources:
        # PS3.18 10.6.3: no match is an empty payload (a multipart body needs a part, RFC 2046 5.1.1)
        return Response(b"", content_type=XML_MEDIA_TYPE)
    answers = _answers(ctx, resources, qido, public_root(), await relatives_of(ctx, resources, qido.keys))
    if model == XML_MEDIA_TYPE:
        return xml_answer(answers)  # streamed, as metadata is
    return json_answer([answer async for batch in answers for answer in batch])


@bp.get("/studies")
async def studies() -> Response:
    """QIDO-RS: search for studies (PS3.18 10.6)."""
    return await search(ResourceType.STUDY, {})


@bp.get("/series")
async def all_series() -> Response:
    """QIDO-RS: search for series of every study."""
    return await search(ResourceType.SERIES, {})


@bp.get("/instances")
async def all_instances() -> Response:
    """QIDO-RS: search for instances of every study."""
    return await search(ResourceType.INSTANCE, {})


@bp.get("/studies/<study>/series")
async def study_series(study: str) -> Response:
    """QIDO-RS: search for the series of a study."""
    return await search(ResourceType.SERIES, {ResourceType.STUDY: study})


@bp.get("/studies/<study>/instances")
async def study_instances(study: str) -> Response:
    """QIDO-RS: search for the instances of a study."""
    return await search(ResourceType.INSTANCE, {ResourceType.STUDY: study})


@bp.get("/studies/<study>/series/<series>/instances")
async def series_instances(study: str, series: str) -> Response:
    """QIDO-RS: search for the instances of a series."""
    return await search(ResourceType.INSTANCE, {ResourceType.STUDY: study, ResourceType.SERIES: series})
