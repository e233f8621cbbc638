"""Orthanc's modification and anonymization of one dataset: the rules of a request body, then their application.

The body is Orthanc's (Orthanc Book, "Anonymization and modification"): ``Replace``, ``Remove``, ``Keep``,
``Force``, ``RemovePrivateTags`` (modification), ``KeepPrivateTags`` and ``DicomVersion`` (anonymization),
``PrivateCreator``, ``Transcode`` and ``LossyQuality``. The fields are read in Orthanc's order (anonymization
profile first, then Remove, Replace, Keep), each one undoing what the earlier ones said of the same tag, and the
same safety rules hold: the four identifiers (PatientID and the Study, Series and SOP Instance UIDs) are only
touched with ``Force``, never removed, and a modification may not move a resource out of its parent (a study
modification cannot change the PatientID; a patient modification must give a new PatientID).

A modification renews the UIDs of the level it works at and of the levels below: a study gets a new
StudyInstanceUID, each of its series a new SeriesInstanceUID, each instance a new SOPInstanceUID. An
anonymization works at the patient level and renews every UID its profile marks "U" (PS3.15 E.1-1), wherever it
appears. One :class:`UidMap` serves a whole request, so what was one study stays one study and references between
instances of the request (in sequences too) point at the new UIDs. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

from .. import ORTHANC_VERSION
from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .create import CreationRequest, new_element, reserve_private_block, resolve_tag
from .profiles import DEFAULT_VERSION, PROFILES, Profile
from .tags import format_tag
from .transcode import DEFAULT_QUALITY, quality_of, transcode_dataset

PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
STUDY_UID, SERIES_UID, SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
#: The tag that identifies each level (Orthanc's "DICOM identifiers", hashed into its public ids).
IDENTIFIERS = {
    ResourceType.PATIENT: PATIENT_ID,
    ResourceType.STUDY: STUDY_UID,
    ResourceType.SERIES: SERIES_UID,
    ResourceType.INSTANCE: SOP_UID,
}
PATIENT_IDENTITY_REMOVED, DEIDENTIFICATION_METHOD = 0x00120062, 0x00120063
#: UIDs that point at instances, series or studies (PS3.3 C.12.1.1.5 "Referenced SOP Instance UID", the
#: hierarchical references of PS3.3 C.17.2): a modification renews them when they point into the request.
REFERENCES = frozenset({0x00081155, 0x00041511, STUDY_UID, SERIES_UID, SOP_UID})

#: The tags of the Patient Module and of the General Study Module (PS3.3 C.7.1.1 and C.7.2.1, the 2011 tables
#: Orthanc cites): what a split may change, and what a merge copies from the target study.
PATIENT_STUDY_MODULES = frozenset(
    {
        0x00100010, 0x00100020, 0x00100021, 0x00100024, 0x00100030, 0x00100032, 0x00100040, 0x00101000,
        0x00101001, 0x00101002, 0x00081120, 0x00102160, 0x00104000, 0x00100200, 0x00102201, 0x00102202,
        0x00102292, 0x00102293, 0x00102294, 0x00102297, 0x00102298, 0x00102299, 0x00120062, 0x00120063,
        0x00120064, STUDY_UID, 0x00080020, 0x00080030, 0x00080090, 0x00080096, 0x00200010, 0x00080050,
        0x00080051, 0x00081030, 0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00321034, 0x00081110,
        0x00081032, 0x00401012,
    }
)  # fmt: skip


def bad_request(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def bad_format(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


class UidMap:
    """Old UID -> new UID, the same for every instance of one request.

    The new UID is derived from the old one and a random secret of the request (HMAC-SHA-256, shaped as a
    version 4 UUID under the 2.25 root of PS3.5 B.2): instances handled in any order, by any server, before
    and after a restart of the job, agree without sharing anything but the secret, and the old UID cannot be
    found again without it. ``renewable`` limits which references a modification renews (None: all).
    """

    def __init__(self, secret: str, renewable: frozenset[str] | None = None) -> None:
        self._key = secret.encode()
        self.renewable = renewable

    @staticmethod
    def new_secret() -> str:
        return uuid.uuid4().hex

    def new(self, old: str) -> str:
        digest = hmac.new(self._key, old.strip().encode(), hashlib.sha256).digest()
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def reference(self, old: str) -> str:
        """A referenced UID: renewed if it points at something the request renews."""
        if self.renewable is None or old.strip() in self.renewable:
            return self.new(old)
        return old


@dataclass
class Modification:
    """The checked rules of one request. ``replace`` holds ready elements (copied into each dataset)."""

    level: ResourceType
    profile: Profile | None = None
    replace: dict[int, DataElement] = field(default_factory=dict)
    removals: set[int] = field(default_factory=set)
    clearings: set[int] = field(default_factory=set)
    uids: set[int] = field(default_factory=set)
    keep: set[int] = field(default_factory=set)
    remove_private: bool = False
    private_creator: str = ""
    method: str | None = None  # DeidentificationMethod to write; None once the user changed the profile
    transcode: UID | None = None
    quality: int = DEFAULT_QUALITY

    # -- the operations of a body, in Orthanc's order: each undoes the earlier ones on its tag --------------
    def do_remove(self, tag: int) -> None:
        self.removals.add(tag)
        self.clearings.discard(tag)
        self.uids.discard(tag)
        self.replace.pop(tag, None)
        self.method = None

    def do_replace(self, tag: int, elem: DataElement, *, internal: bool = False) -> None:
        self.removals.discard(tag)
        self.clearings.discard(tag)
        self.keep.discard(tag)
        self.replace[tag] = elem
        if not internal:
            self.method = None

    def do_keep(self, tag: int) -> None:
        self.removals.discard(tag)
        self.clearings.discard(tag)
        self.uids.discard(tag)
        self.replace.pop(tag, None)
        self.keep.add(tag)
        self.method = None

    def check(self) -> None:
        """Orthanc's safety rules between the level and the identifiers the request changes (the identifiers of
        lower levels may be replaced by hand, as Orthanc's REST API allows)."""
        if any(tag in self.removals for tag in IDENTIFIERS.values()):
            raise bad_request()
        replaced = {level for level, tag in IDENTIFIERS.items() if tag in self.replace}
        if self.level is ResourceType.PATIENT and ResourceType.PATIENT not in replaced:
            raise bad_request("When modifying a patient, her PatientID is required to be modified")
        for level in sorted(replaced):
            if level < self.level:
                name = keyword_for_tag(IDENTIFIERS[level])
                raise bad_request(
                    f"When modifying {_article(self.level)}, the parent {name} cannot be manually modified"
                )


def _article(level: ResourceType) -> str:
    return {ResourceType.INSTANCE: "an instance"}.get(level, f"a {level.label.lower()}")


# -- reading a body --------------------------------------------------------------------------------------------
def _bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_format(f"Boolean value expected in field: {name}")
    return value


def make_element(tag: int, value: Any, private_creator: str = "") -> DataElement:
    """An element from its JSON value as Orthanc takes it: a string, null, or a list of objects (a sequence);
    binary values as data URIs."""
    return new_element(tag, value, CreationRequest({}, "", private_creator=private_creator))


def _tag_list(body: dict[str, Any], name: str, force: bool, verb: str) -> list[int]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request()
    tags = []
    for text in value:
        tag = resolve_tag(text)
        if tag in IDENTIFIERS.values() and not force:
            raise bad_request(f'Marking tag "{text}" as to be {verb} requires the "Force" option to be set to true')
        tags.append(tag)
    return tags


def _replacements(body: dict[str, Any], force: bool, creator: str) -> dict[int, DataElement]:
    value = body.get("Replace", {})
    if not isinstance(value, dict):
        raise bad_request()
    out = {}
    for text, new in value.items():
        tag = resolve_tag(text)
        if tag in IDENTIFIERS.values() and not force:
            raise bad_request(f'Marking tag "{text}" as to be replaced requires the "Force" option to be set to true')
        out[tag] = make_element(tag, new, creator)
    return out


def parse_transcode(body: dict[str, Any], default_quality: int) -> tuple[UID | None, int]:
    """``Transcode`` (a transfer syntax UID) and ``LossyQuality`` (1-100)."""
    quality = quality_of(body.get("LossyQuality"), default_quality)
    if "Transcode" not in body:
        return None, quality
    text = body["Transcode"]
    if not isinstance(text, str):
        raise bad_format("String value expected in field: Transcode")
    syntax = UID(text.strip())
    if not syntax.is_valid or not syntax.is_transfer_syntax:
        raise bad_format(f"Unknown transfer syntax UID: {text}")
    return syntax, quality


def infer_level(body: dict[str, Any]) -> ResourceType:
    """The level of a single-instance modification: the highest identifier it replaces, as Orthanc decides."""
    replaced = body.get("Replace")
    if isinstance(replaced, dict):
        tags = set()
        for name in replaced:
            try:
                tags.add(resolve_tag(name))
            except OrthancError:
                continue  # reported when the body is read
        for level in ResourceType:
            if IDENTIFIERS[level] in tags:
                return level
    return ResourceType.INSTANCE


def parse_modification(body: Any, level: ResourceType, *, default_quality: int = DEFAULT_QUALITY) -> Modification:
    """A /modify body (Orthanc's ParseModifyRequest), checked against the level it runs at."""
    if not isinstance(body, dict):
        raise bad_format()
    force = _bool(body, "Force")
    creator = _creator(body)
    mod = Modification(level, remove_private=_bool(body, "RemovePrivateTags"), private_creator=creator)
    return _with_user_changes(mod, body, force, creator, default_quality)


def parse_version(body: dict[str, Any]) -> Profile:
    version = body.get("DicomVersion", DEFAULT_VERSION)
    if not isinstance(version, str):
        raise bad_format()
    if version not in PROFILES:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific version of the DICOM standard: {version}"
        )
    return PROFILES[version]


def parse_anonymization(
    body: Any, *, patient_id: str, patient_name: str, default_quality: int = DEFAULT_QUALITY
) -> Modification:
    """An /anonymize body (Orthanc's ParseAnonymizationRequest): the profile, then the user's changes.

    ``patient_id`` and ``patient_name`` are the request's new identity (one per request, whatever the number of
    instances), used unless the body replaces them.
    """
    if not isinstance(body, dict):
        raise bad_format()
    profile = parse_version(body)
    force = _bool(body, "Force")
    creator = _creator(body)
    mod = Modification(
        ResourceType.PATIENT,
        profile=profile,
        removals=set(profile.removals),
        clearings=set(profile.clearings),
        uids=set(profile.uids) | {STUDY_UID, SERIES_UID, SOP_UID},
        remove_private=True,
        private_creator=creator,
    )
    mod.do_replace(PATIENT_IDENTITY_REMOVED, make_element(PATIENT_IDENTITY_REMOVED, "YES"), internal=True)
    mod.do_replace(PATIENT_ID, make_element(PATIENT_ID, patient_id), internal=True)
    mod.do_replace(PATIENT_NAME, make_element(PATIENT_NAME, patient_name), internal=True)
    mod.method = f"Orthanc {ORTHANC_VERSION} - {profile.method}"
    if _bool(body, "KeepPrivateTags"):
        mod.remove_private = False
        mod.method = None
    return _with_user_changes(mod, body, force, creator, default_quality)


def _with_user_changes(
    mod: Modification, body: dict[str, Any], force: bool, creator: str, default_quality: int
) -> Modification:
    """The body's Remove, Replace, Keep and Transcode applied after what the route itself decided, then checked
    (Orthanc reads them in this order for /modify and /anonymize alike)."""
    for tag in _tag_list(body, "Remove", force, "removed"):
        mod.do_remove(tag)
    for tag, elem in _replacements(body, force, creator).items():
        mod.do_replace(tag, elem)
    for tag in _tag_list(body, "Keep", force, "kept"):
        mod.do_keep(tag)
    mod.transcode, mod.quality = parse_transcode(body, default_quality)
    mod.check()
    return mod


def _creator(body: dict[str, Any]) -> str:
    creator = body.get("PrivateCreator", "")
    if not isinstance(creator, str):
        raise bad_format("String value expected in field: PrivateCreator")
    return creator


def module_changes(body: dict[str, Any], operation: str) -> tuple[dict[int, DataElement], list[int]]:
    """``Replace`` and ``Remove`` of a split: tags of the patient and study modules only (StudyInstanceUID is
    the split's own)."""
    replace = body.get("Replace", {})
    remove = body.get("Remove", [])
    if not isinstance(replace, dict) or not isinstance(remove, list) or not all(isinstance(r, str) for r in remove):
        raise bad_request()
    tags = [(resolve_tag(name), name) for name in [*replace, *remove]]
    for tag, _ in tags:
        if tag not in PATIENT_STUDY_MODULES or tag == STUDY_UID:
            name = keyword_for_tag(tag) or format_tag(tag)
            raise OrthancError(
                ErrorCode.PARAMETER_OUT_OF_RANGE,
                f"Cannot modify the following tag while {operation} a study (not in the patient/study modules): "
                f"{name} ({format_tag(tag)})",
            )
    return {resolve_tag(k): make_element(resolve_tag(k), v) for k, v in replace.items()}, [
        resolve_tag(r) for r in remove
    ]


# -- applying the rules ----------------------------------------------------------------------------------------
def renewed_identifiers(level: ResourceType) -> list[int]:
    """The identifiers a modification at ``level`` renews: its own and those of the levels below."""
    return [IDENTIFIERS[lv] for lv in ResourceType if lv >= level and lv is not ResourceType.PATIENT]


def apply(ds: Dataset, mod: Modification, uids: UidMap) -> Dataset:
    """Modify ``ds`` in place (meta header and transfer syntax included); returns it."""
    top_renewed = {tag for tag in renewed_identifiers(mod.level) if tag not in mod.keep and tag not in mod.replace}
    _walk(ds, mod, uids, top_renewed, top=True)
    for tag in mod.removals:
        if tag in ds:
            del ds[tag]
    for tag, elem in mod.replace.items():
        ds[tag] = copy.deepcopy(elem)
        reserve_private_block(ds, tag, mod.private_creator)
    if mod.method is not None:
        ds[DEIDENTIFICATION_METHOD] = make_element(DEIDENTIFICATION_METHOD, mod.method)
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if mod.transcode is not None:
        transcode_dataset(ds, mod.transcode, quality=mod.quality)
    return ds


def _walk(ds: Dataset, mod: Modification, uids: UidMap, top_renewed: set[int], *, top: bool) -> None:
    """Private tags, the profile's removals and clearings, and UIDs, at every depth (PS3.15 E.1: an attribute
    is de-identified wherever it appears, sequences included). User replacements are top-level: left alone."""
    kept_creators = {_creator_of(tag) for tag in mod.keep if tag >> 16 & 1}
    for tag in list(ds.keys()):
        tag = int(tag)
        if tag in mod.keep or (top and tag in mod.replace):
            continue
        private = bool(tag >> 16 & 1)
        if (mod.remove_private and private and tag not in kept_creators) or (
            mod.profile is not None and (tag in mod.removals or mod.profile.in_removed_range(tag))
        ):
            del ds[tag]
            continue
        elem = ds[tag]
        if tag in mod.clearings:
            elem.value = Sequence([]) if elem.VR == "SQ" else None
        elif elem.VR == "SQ":
            for item in elem.value:
                _walk(item, mod, uids, top_renewed, top=False)
        elif elem.VR == "UI" and elem.value:
            if (top and tag in top_renewed) or tag in mod.uids:
                elem.value = _mapped(elem.value, uids.new)
            elif tag in REFERENCES:
                elem.value = _mapped(elem.value, uids.reference)


def _creator_of(tag: int) -> int:
    """The private creator element (gggg,00xx) that reserves the block of a private tag (gggg,xxyy)."""
    return (tag >> 16) << 16 | (tag & 0xFFFF) >> 8


def _mapped(value: Any, renew: Any) -> Any:
    if isinstance(value, MultiValue | list):
        return [renew(str(v)) for v in value]
    return renew(str(value))
