"""The main DICOM tags: what the index keeps per level, so that listing and finding never open a file.

The lists are Orthanc's defaults (ExtraMainDicomTags adds to them), so that MainDicomTags in JSON answers hold
the same keys as Orthanc's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from ..model import ResourceType

MAIN_TAGS: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.PATIENT: (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "OtherPatientIDs",
    ),
    ResourceType.STUDY: (
        "StudyDate",
        "StudyTime",
        "StudyID",
        "StudyDescription",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureDescription",
        "InstitutionName",
        "RequestingPhysician",
        "ReferringPhysicianName",
    ),
    ResourceType.SERIES: (
        "SeriesDate",
        "SeriesTime",
        "Modality",
        "Manufacturer",
        "StationName",
        "SeriesDescription",
        "BodyPartExamined",
        "SequenceName",
        "ProtocolName",
        "SeriesNumber",
        "CardiacNumberOfImages",
        "ImagesInAcquisition",
        "NumberOfTemporalPositions",
        "NumberOfSlices",
        "NumberOfTimeSlices",
        "SeriesInstanceUID",
        "ImageOrientationPatient",
        "SeriesType",
        "OperatorsName",
        "PerformedProcedureStepDescription",
        "AcquisitionDeviceProcessingDescription",
        "ContrastBolusAgent",
    ),
    ResourceType.INSTANCE: (
        "InstanceCreationDate",
        "InstanceCreationTime",
        "AcquisitionNumber",
        "ImageIndex",
        "InstanceNumber",
        "NumberOfFrames",
        "TemporalPositionIdentifier",
        "SOPInstanceUID",
        "ImagePositionPatient",
        "ImageComments",
        "ImageOrientationPatient",
    ),
}

#: The tag that identifies each level (hashed into Orthanc's public id).
IDENTIFIER_TAGS: dict[ResourceType, str] = {
    ResourceType.PATIENT: "PatientID",
    ResourceType.STUDY: "StudyInstanceUID",
    ResourceType.SERIES: "SeriesInstanceUID",
    ResourceType.INSTANCE: "SOPInstanceUID",
}


class MainTags:
    """The effective main tags per level: Orthanc's defaults plus the ExtraMainDicomTags option."""

    def __init__(self, extra: Mapping[str, Sequence[str]] | None = None) -> None:
        self.by_level: dict[ResourceType, tuple[str, ...]] = dict(MAIN_TAGS)
        for level_name, names in (extra or {}).items():
            level = ResourceType.parse(level_name)
            known = self.by_level[level]
            added = tuple(keyword_of(n) for n in names if keyword_of(n) not in known)
            self.by_level[level] = known + added
        self._signatures = {
            level: ";".join(format_tag(parse_tag(k)) for k in keywords) for level, keywords in self.by_level.items()
        }
        #: (keyword, tag number) per level: every ingest reads these, and a keyword costs a dictionary search.
        self.tagged: dict[ResourceType, tuple[tuple[str, int], ...]] = {
            level: tuple((k, parse_tag(k)) for k in keywords) for level, keywords in self.by_level.items()
        }
        self._level_of: dict[str, ResourceType] = {}
        for level in ResourceType:
            for keyword in self.by_level[level]:
                self._level_of.setdefault(keyword, level)

    def level_of(self, keyword: str) -> ResourceType | None:
        """The level that indexes a tag (the highest one when several do), or ``None``."""
        return self._level_of.get(keyword)

    def signature(self, level: ResourceType) -> str:
        """The tags a resource was indexed with ("0010,0010;0010,0020;..."), so that a later change of the lists
        can be detected (Orthanc's MainDicomTagsSignature metadata)."""
        return self._signatures[level]


_EXPECTED_COUNT_PAIRS = (("ImagesInAcquisition", "NumberOfTemporalPositions"), ("NumberOfSlices", "NumberOfTimeSlices"))


def expected_instances(tags: Mapping[str, str]) -> int | None:
    """How many instances a series announces, by Orthanc's rule, from the main tags of its first instance.

    ImagesInAcquisition counts only with NumberOfTemporalPositions, NumberOfSlices only with NumberOfTimeSlices
    (cardiac PET): their products; otherwise CardiacNumberOfImages. The first rule whose tags are present decides,
    so an unreadable or null count means "unknown".
    """
    try:
        for first, second in _EXPECTED_COUNT_PAIRS:
            if first in tags and second in tags:
                count = int(tags[first]) * int(tags[second])
                break
        else:
            if "CardiacNumberOfImages" not in tags:
                return None
            count = int(tags["CardiacNumberOfImages"])
    except ValueError:
        return None
    return count if count > 0 else None


def keyword_of(name: str) -> str:
    """A tag given as keyword ("PatientName"), "0010,0010", "0010-0010" or "00100010" -> its keyword."""
    text = name.strip()
    if tag_for_keyword(text) is not None:
        return text
    tag = parse_tag(text)
    keyword = keyword_for_tag(tag)
    if not keyword:
        raise KeyError(name)
    return keyword


def parse_tag(text: str) -> int:
    """ "0010,0010", "0010-0010", "(0010,0010)", "00100010" or a keyword -> the tag number."""
    t = text.strip().strip("()")
    tag = tag_for_keyword(t)
    if tag is not None:
        return tag
    hexa = t.replace(",", "").replace("-", "").replace("|", "")
    if len(hexa) != 8:
        raise KeyError(text)
    try:
        return int(hexa, 16)
    except ValueError:
        raise KeyError(text) from None


def format_tag(tag: int, sep: str = ",") -> str:
    """Orthanc's spelling of a tag: "0010,0010" (lower-case hexadecimal)."""
    return f"{tag >> 16:04x}{sep}{tag & 0xFFFF:04x}"


def vr_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return "UN"
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
