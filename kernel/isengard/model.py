"""The vocabulary shared by the kernel and its plugins: resource levels, identifiers, change and metadata types,
and the records that cross the index and storage hooks.

Enum values are Orthanc's, so that numbers stored by one backend mean the same to every other.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any


class ResourceType(enum.IntEnum):
    PATIENT = 1
    STUDY = 2
    SERIES = 3
    INSTANCE = 4

    @property
    def label(self) -> str:
        """The name Orthanc shows in JSON ("Patient", "Study", ...)."""
        return self.name.capitalize()

    @property
    def plural(self) -> str:
        """The REST collection ("patients", "studies", ...)."""
        return _PLURALS[self]

    @property
    def parent(self) -> ResourceType | None:
        return None if self is ResourceType.PATIENT else ResourceType(self - 1)

    @property
    def child(self) -> ResourceType | None:
        return None if self is ResourceType.INSTANCE else ResourceType(self + 1)

    @classmethod
    def parse(cls, text: str) -> ResourceType:
        """Accept the spellings Orthanc accepts: "Study", "study", "studies", "Instance", "image", ..."""
        key = text.strip().lower()
        for level, names in _SPELLINGS.items():
            if key in names:
                return level
        raise ValueError(f"Unknown resource level: {text}")


_PLURALS = {
    ResourceType.PATIENT: "patients",
    ResourceType.STUDY: "studies",
    ResourceType.SERIES: "series",
    ResourceType.INSTANCE: "instances",
}
_SPELLINGS = {
    ResourceType.PATIENT: {"patient", "patients"},
    ResourceType.STUDY: {"study", "studies"},
    ResourceType.SERIES: {"series"},
    ResourceType.INSTANCE: {"instance", "instances", "image", "images"},
}


class ChangeType(enum.IntEnum):
    COMPLETED_SERIES = 1
    DELETED = 2
    NEW_CHILD_INSTANCE = 3
    NEW_INSTANCE = 4
    NEW_PATIENT = 5
    NEW_SERIES = 6
    NEW_STUDY = 7
    ANONYMIZED_STUDY = 8
    ANONYMIZED_SERIES = 9
    MODIFIED_STUDY = 10
    MODIFIED_SERIES = 11
    ANONYMIZED_PATIENT = 12
    MODIFIED_PATIENT = 13
    STABLE_PATIENT = 14
    STABLE_STUDY = 15
    STABLE_SERIES = 16
    UPDATED_ATTACHMENT = 17
    UPDATED_METADATA = 18
    UPDATED_MODALITY = 19
    UPDATED_PEER = 20

    @property
    def label(self) -> str:
        """Orthanc's CamelCase name, as in /changes ("NewInstance", "StableStudy", ...)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @classmethod
    def from_label(cls, text: str) -> ChangeType:
        for member in cls:
            if member.label == text:
                return member
        raise ValueError(text)


NEW_RESOURCE_CHANGE = {
    ResourceType.PATIENT: ChangeType.NEW_PATIENT,
    ResourceType.STUDY: ChangeType.NEW_STUDY,
    ResourceType.SERIES: ChangeType.NEW_SERIES,
    ResourceType.INSTANCE: ChangeType.NEW_INSTANCE,
}
STABLE_RESOURCE_CHANGE = {
    ResourceType.PATIENT: ChangeType.STABLE_PATIENT,
    ResourceType.STUDY: ChangeType.STABLE_STUDY,
    ResourceType.SERIES: ChangeType.STABLE_SERIES,
}


class MetadataType(enum.IntEnum):
    """Built-in metadata; numbers from 1024 to 65535 belong to users (the UserMetadata option)."""

    INDEX_IN_SERIES = 1
    RECEPTION_DATE = 2
    REMOTE_AET = 3
    EXPECTED_NUMBER_OF_INSTANCES = 4
    MODIFIED_FROM = 5
    ANONYMIZED_FROM = 6
    LAST_UPDATE = 7
    ORIGIN = 8
    TRANSFER_SYNTAX = 9
    SOP_CLASS_UID = 10
    REMOTE_IP = 11
    CALLED_AET = 12
    HTTP_USERNAME = 13
    PIXEL_DATA_OFFSET = 14
    MAIN_DICOM_TAGS_SIGNATURE = 15
    MAIN_DICOM_SEQUENCES = 16
    PIXEL_DATA_VR = 17


METADATA_NAMES = {
    MetadataType.INDEX_IN_SERIES: "IndexInSeries",
    MetadataType.RECEPTION_DATE: "ReceptionDate",
    MetadataType.REMOTE_AET: "RemoteAET",
    MetadataType.EXPECTED_NUMBER_OF_INSTANCES: "ExpectedNumberOfInstances",
    MetadataType.MODIFIED_FROM: "ModifiedFrom",
    MetadataType.ANONYMIZED_FROM: "AnonymizedFrom",
    MetadataType.LAST_UPDATE: "LastUpdate",
    MetadataType.ORIGIN: "Origin",
    MetadataType.TRANSFER_SYNTAX: "TransferSyntax",
    MetadataType.SOP_CLASS_UID: "SopClassUid",
    MetadataType.REMOTE_IP: "RemoteIP",
    MetadataType.CALLED_AET: "CalledAET",
    MetadataType.HTTP_USERNAME: "HttpUsername",
    MetadataType.PIXEL_DATA_OFFSET: "PixelDataOffset",
    MetadataType.MAIN_DICOM_TAGS_SIGNATURE: "MainDicomTagsSignature",
    MetadataType.MAIN_DICOM_SEQUENCES: "MainDicomSequences",
    MetadataType.PIXEL_DATA_VR: "PixelDataVR",
}
USER_METADATA_RANGE = range(1024, 65536)


class FileContentType(enum.IntEnum):
    """Attachment kinds; numbers from 1024 to 65535 belong to users (the UserContentType option)."""

    DICOM = 1
    DICOM_AS_JSON = 2
    DICOM_UNTIL_PIXEL_DATA = 3


ATTACHMENT_NAMES = {
    FileContentType.DICOM: "dicom",
    FileContentType.DICOM_AS_JSON: "dicom-as-json",
    FileContentType.DICOM_UNTIL_PIXEL_DATA: "dicom-until-pixel-data",
}
USER_CONTENT_TYPE_RANGE = range(1024, 65536)


class CompressionType(enum.IntEnum):
    NONE = 1
    ZLIB_WITH_SIZE = 2


def hash_identifier(*parts: str) -> str:
    """Orthanc's public identifier: SHA-1 of the joined DICOM identifiers, as five dash-separated groups."""
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


@dataclass(frozen=True)
class DicomIdentifiers:
    """The four DICOM identifiers that place an instance in the hierarchy."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str

    def public_id(self, level: ResourceType) -> str:
        return self._ids[level]

    def public_ids(self) -> dict[ResourceType, str]:
        return dict(self._ids)

    @functools.cached_property
    def _ids(self) -> dict[ResourceType, str]:
        parts = (self.patient_id, self.study_uid, self.series_uid, self.sop_uid)
        return {level: hash_identifier(*parts[: int(level)]) for level in ResourceType}


@dataclass(frozen=True)
class FileInfo:
    """One attachment as the index records it: where the storage keeps it, and how to check it."""

    uuid: str
    content_type: int
    uncompressed_size: int
    uncompressed_md5: str
    compression: CompressionType = CompressionType.NONE
    compressed_size: int | None = None
    compressed_md5: str | None = None
    revision: int = 0

    @property
    def stored_size(self) -> int:
        return self.uncompressed_size if self.compressed_size is None else self.compressed_size

    @property
    def stored_md5(self) -> str:
        return self.compressed_md5 or self.uncompressed_md5


@dataclass
class InstanceRecord:
    """Everything the index stores when an instance arrives, computed once by the kernel from the header.

    ``main_tags`` and ``metadata`` are per level. Those of the instance are always stored; those of the patient,
    study and series only when the resource is created by this instance (the first instance describes them).
    The study's main tags also carry a copy of the patient's, as received with that study.
    """

    identifiers: DicomIdentifiers
    main_tags: dict[ResourceType, dict[str, str]]
    metadata: dict[ResourceType, dict[int, str]]
    attachments: list[FileInfo]
    when: str = field(default_factory=lambda: now_iso())


@dataclass(frozen=True)
class Change:
    seq: int
    change_type: ChangeType
    level: ResourceType
    public_id: str
    date: str

    def to_json(self) -> dict[str, object]:
        return {
            "ChangeType": self.change_type.label,
            "Date": self.date,
            "ID": self.public_id,
            "Path": f"/{self.level.plural}/{self.public_id}",
            "ResourceType": self.level.label,
            "Seq": self.seq,
        }


@dataclass
class StoreOutcome:
    """What happened when the index stored an instance."""

    status: str  # "Success" or "AlreadyStored"
    changes: list[Change] = field(default_factory=list)
    replaced: list[FileInfo] = field(default_factory=list)  # attachments of an overwritten instance


@dataclass
class Resource:
    """One resource as the REST layer shows it; the index fills it from its tables alone."""

    level: ResourceType
    public_id: str
    parent: str | None
    children: list[str]
    main_tags: dict[str, str]
    last_update: str | None = None
    labels: list[str] = field(default_factory=list)
    is_protected: bool = False
    metadata: dict[int, str] = field(default_factory=dict)
    attachment: FileInfo | None = None  # the DICOM file, instances only


@dataclass
class DeleteOutcome:
    """What a deletion removed: files the storage must drop, and the closest ancestor still alive."""

    files: list[FileInfo]
    changes: list[Change]
    remaining_ancestor: tuple[ResourceType, str] | None


@dataclass
class Statistics:
    count_patients: int = 0
    count_studies: int = 0
    count_series: int = 0
    count_instances: int = 0
    disk_size: int = 0
    uncompressed_size: int = 0
    dicom_disk_size: int = 0
    dicom_uncompressed_size: int = 0


@dataclass(frozen=True)
class ExportedResource:
    seq: int
    level: ResourceType
    public_id: str
    remote_modality: str
    date: str
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""


def now_iso() -> str:
    """Orthanc's timestamp format, in UTC: 20240131T235959."""
    return _format_second(int(time.time()))


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y%m%dT%H%M%S")


def precise_time(epoch: float | None = None) -> str:
    """Orthanc's timestamp of jobs, in UTC to the microsecond: 20240131T235959.123456."""
    moment = time.time() if epoch is None else epoch
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y%m%dT%H%M%S.%f")


class JobState(enum.StrEnum):
    """Orthanc's job states, as /jobs shows them."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    PAUSED = "Paused"
    RETRY = "Retry"


@dataclass
class JobOutput:
    """A file a job produced (an archive...), kept in the storage area until the job leaves the history."""

    info: FileInfo
    mime_type: str
    filename: str = ""

    def to_json(self) -> dict[str, object]:
        return {"File": dataclasses.asdict(self.info), "MimeType": self.mime_type, "Filename": self.filename}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobOutput:
        info = dict(data["File"])
        info["compression"] = CompressionType(info["compression"])
        return cls(FileInfo(**info), data["MimeType"], data.get("Filename", ""))


@dataclass
class JobRecord:
    """One job as the index keeps it: enough for any server on the index to show it, run it or resume it.

    ``parameters`` say what to do (fixed at submission), ``checkpoint`` how far a run got (what a resumed run
    starts from; emptied by a resubmission), ``content`` is Orthanc's public "Content". ``owner`` is the server
    process running it, which renews ``heartbeat`` (epoch seconds) while it does; ``request`` is a pause or a
    cancellation asked while it runs, which the owner obeys between two steps. ``revision`` grows at every
    write, for compare-and-set updates.
    """

    id: str
    type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    state: JobState = JobState.PENDING
    checkpoint: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0  # 0..1
    error_code: int = 0  # an Orthanc status number, 0 for success
    error_details: str = ""
    creation_time: str = field(default_factory=lambda: precise_time())
    completion_time: str | None = None
    runtime: float = 0.0  # seconds spent running, previous runs included
    started_at: float | None = None  # epoch seconds, while running
    retry_at: float | None = None  # epoch seconds, in the Retry state
    request: str | None = None  # "pause" or "cancel", asked while running
    owner: str | None = None
    heartbeat: float = 0.0
    outputs: dict[str, JobOutput] = field(default_factory=dict)
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["state"] = self.state.value
        data["outputs"] = {key: output.to_json() for key, output in self.outputs.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        values = dict(data)
        values["state"] = JobState(values["state"])
        values["outputs"] = {key: JobOutput.from_json(o) for key, o in values.get("outputs", {}).items()}
        return cls(**values)
