"""DICOMDIR: the directory of a DICOM file-set on media (PS3.10 section 8, PS3.3 annex F), written forward only.

Records come one instance at a time, in the order of the archive (patient, study, series, then the instances
of that series), so the writer keeps no dataset in memory: each record is encoded at once into a spool file,
and only the three offsets a record holds (PS3.3 F.3.2.1: next record at the same level, first record of the
level below) are patched in place later, as the following records arrive. The header before the records has a
size known in advance, so offsets are absolute from the start. Memory stays flat whatever the number of files.

The keys of each record are PS3.3 F.5's required ones, as Orthanc fills them (DicomDirWriter): PATIENT
(PatientID, PatientName), STUDY (StudyDate, StudyTime with Orthanc's fall-backs, StudyDescription,
StudyInstanceUID, StudyID, AccessionNumber), SERIES (Modality, SeriesInstanceUID, SeriesNumber; with
``extended``, SeriesDescription as Orthanc's "extended" media adds), and one record per file. Values are copied
as the bytes of the instance, with its SpecificCharacterSet in each record (PS3.3 F.5.2), never re-encoded. The
record of a file is IMAGE for images (as Orthanc writes for every file) and the record type PS3.3 F.5 gives its
SOP class otherwise (SR DOCUMENT, PRESENTATION, RT STRUCTURE SET...), from pydicom's table of those.
"""

from __future__ import annotations

import datetime as dt
import struct
import tempfile
import warnings
from collections.abc import Iterator
from typing import IO

from pydicom import fileset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

#: The File-set ID of the media (CS, 16 characters at most): the one Orthanc writes.
FILE_SET_ID = "ORTHANC_MEDIA"
#: The levels above the files, with the keys of their records.
LEVELS = ("PATIENT", "STUDY", "SERIES")
_KEYS = {
    "PATIENT": ("PatientName", "PatientID"),
    "STUDY": ("StudyDescription", "StudyInstanceUID", "StudyID", "AccessionNumber"),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
}
#: Keys copied only when the instance gives them a value, keys copied when it has them (even empty), the others
#: always (empty when the instance has none): what Orthanc's records hold, sample by sample. One exception:
#: PatientID, the key of a PATIENT record (type 1, PS3.3 F.5.1), is always there, where Orthanc leaves out an
#: empty one and readers such as pydicom's FileSet then refuse the whole DICOMDIR.
_ONLY_WITH_VALUE = {"StudyID", "SeriesNumber", "SpecificCharacterSet"}
_WHEN_PRESENT = {"SeriesDescription"}
#: Where the values of a record's two offsets sit, from the start of its item: the item header (8 bytes), then
#: OffsetOfTheNextDirectoryRecord (UL, 12 bytes), RecordInUseFlag (US, 10), OffsetOfReferencedLower... (UL).
_NEXT_AT = 8 + 8
_LOWER_AT = 8 + 12 + 10 + 8
_ITEM = struct.Struct("<HHI")
_UL = struct.Struct("<I")
_SEQUENCE_END = _ITEM.pack(0xFFFE, 0xE0DD, 0)
_CHUNK = 1 << 20
#: Where a study's date and time are taken from, in order (Orthanc's fall-backs for these type 1 keys).
_DATE_SOURCES = ("Study", "Series", "Acquisition", "Content")


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    with warnings.catch_warnings():  # values are copied as the instance has them, valid or not
        warnings.simplefilter("ignore")
        write_dataset(fp, ds)
    return fp.getvalue()


def _value(source: Dataset, tag: int, *, keep_empty: bool = False) -> DataElement | RawDataElement | None:
    """An element of the instance ready to copy into a record (explicit VR, the bytes of the file when pydicom
    has not decoded it); ``None`` when absent, or empty unless ``keep_empty``."""
    if tag not in source:
        return None
    elem = source.get_item(tag)
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        decoded = source[tag]
        return decoded if keep_empty or decoded.value not in (None, "") else None
    value = elem.value
    if not keep_empty and not value.strip(b" \0"):
        return None
    if len(value) % 2:
        value += b" "
    return RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _copy(record: Dataset, source: Dataset, keyword: str) -> None:
    """Copy one element of the instance into a record (see ``_ONLY_WITH_VALUE``)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None
    elem = _value(source, tag, keep_empty=keyword not in _ONLY_WITH_VALUE)
    if elem is not None:
        record[tag] = elem
    elif keyword not in _ONLY_WITH_VALUE | _WHEN_PRESENT:
        record.add(DataElement(tag, dictionary_VR(tag), ""))


def _study_keys(record: Dataset, source: Dataset) -> None:
    """StudyDate and StudyTime are type 1: from the study, else the series, acquisition or content, else now."""
    now = dt.datetime.now()
    for kind, fallback in (("Date", now.strftime("%Y%m%d")), ("Time", now.strftime("%H%M%S"))):
        tag = tag_for_keyword(f"Study{kind}")
        found = (_value(source, tag_for_keyword(f"{level}{kind}")) for level in _DATE_SOURCES)
        elem = next((e for e in found if e is not None), None)
        if elem is None:
            setattr(record, f"Study{kind}", fallback)
        elif isinstance(elem, RawDataElement):
            record[tag] = elem._replace(tag=tag)
        else:
            record.add(DataElement(tag, elem.VR, elem.value))


class DicomDirWriter:
    """Collects the records of a file-set, then gives the DICOMDIR file in chunks (:meth:`chunks`)."""

    def __init__(self, *, extended: bool = False) -> None:
        self.extended = extended
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._meta = FileMetaDataset()
        self._meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
        self._meta.MediaStorageSOPInstanceUID = generate_uid()
        self._meta.TransferSyntaxUID = ExplicitVRLittleEndian
        self._header_size = len(self._header(0, 0))
        self._keys: list[str | None] = [None, None, None]  # the current patient, study and series
        self._last: list[int | None] = [None, None, None, None]  # last record of each level under its parent
        self._parents: list[int | None] = [None, None, None]  # the current record of each level
        self._root: tuple[int, int] | None = None  # first and last patient records
        self.count = 0

    def _header(self, first: int, last: int) -> bytes:
        """Everything before the first record: preamble, meta header, the root offsets, the sequence's start."""
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, self._meta, enforce_standard=True)
        ds = Dataset()
        ds.FileSetID = FILE_SET_ID
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = last
        ds.FileSetConsistencyFlag = 0
        write_dataset(fp, ds)
        # DirectoryRecordSequence (0004,1220), of undefined length: closed by a sequence delimitation item
        fp.write(struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, 0xFFFFFFFF))
        return fp.getvalue()

    def _patch(self, position: int, value: int) -> None:
        self._spool.seek(position - self._header_size)
        self._spool.write(_UL.pack(value))
        self._spool.seek(0, 2)

    def _append(self, depth: int, record_type: str, record: Dataset, source: Dataset) -> int:
        """Write a record at ``depth`` (0: patient ... 3: file), linked to its previous sibling or its parent."""
        head = Dataset()
        head.OffsetOfTheNextDirectoryRecord = 0
        head.RecordInUseFlag = 0xFFFF
        head.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        head.DirectoryRecordType = record_type
        _copy(head, source, "SpecificCharacterSet")
        for tag, elem in record.items():  # as they are: raw elements keep the bytes of the instance
            head[tag] = elem
        # "as originally encoded": pydicom then writes raw elements as they are instead of decoding them with the
        # record's character set and encoding them again (which loses what a codec cannot round-trip)
        head.set_original_encoding(False, True, head._character_set)
        body = _encode(head)
        offset = self._header_size + self._spool.tell()
        self._spool.write(_ITEM.pack(0xFFFE, 0xE000, len(body)) + body)
        previous = self._last[depth]
        if previous is not None:
            self._patch(previous + _NEXT_AT, offset)
        elif depth > 0:
            parent = self._parents[depth - 1]
            assert parent is not None
            self._patch(parent + _LOWER_AT, offset)
        if depth == 0:
            self._root = (self._root[0] if self._root else offset, offset)
        self._last[depth] = offset
        for below in range(depth + 1, len(self._last)):
            self._last[below] = None
        if depth < len(self._parents):
            self._parents[depth] = offset
        return offset

    def add(self, keys: tuple[str, str, str], source: Dataset, file_id: list[str], syntax: str = "") -> None:
        """Add one file: ``keys`` name its patient, study and series (records are made when they change),
        ``source`` is its header, ``file_id`` its path on the media (ReferencedFileID, ISO 9660 names)."""
        for depth, level in enumerate(LEVELS):
            if self._keys[depth] == keys[depth]:
                continue
            self._keys[depth + 1 :] = [None] * (len(LEVELS) - depth - 1)
            self._keys[depth] = keys[depth]
            record = Dataset()
            if level == "STUDY":
                _study_keys(record, source)
            for keyword in _KEYS[level]:
                _copy(record, source, keyword)
            if level == "SERIES" and self.extended:
                _copy(record, source, "SeriesDescription")
            self._append(depth, level, record, source)
        record_type, record = self._file_record(source)
        meta = getattr(source, "file_meta", None) or FileMetaDataset()
        record.ReferencedFileID = file_id
        record.ReferencedSOPClassUIDInFile = meta.get("MediaStorageSOPClassUID") or source.get("SOPClassUID", "")
        record.ReferencedSOPInstanceUIDInFile = meta.get("MediaStorageSOPInstanceUID") or source.get(
            "SOPInstanceUID", ""
        )
        record.ReferencedTransferSyntaxUIDInFile = meta.get("TransferSyntaxUID") or syntax or ImplicitVRLittleEndian
        self._append(3, record_type, record, source)
        self.count += 1

    @staticmethod
    def _file_record(source: Dataset) -> tuple[str, Dataset]:
        """The record of one file: PS3.3 F.5's type for its SOP class (pydicom's table and record keys), IMAGE
        with its InstanceNumber for images and whenever the instance lacks a key the other type requires."""
        record_type = fileset._four_level_record_type(source)
        if record_type != "IMAGE":
            try:
                return record_type, fileset.DIRECTORY_RECORDERS[record_type](source)
            except (ValueError, AttributeError, KeyError):
                pass
        record = Dataset()
        _copy(record, source, "InstanceNumber")
        return "IMAGE", record

    def chunks(self) -> Iterator[bytes]:
        """The DICOMDIR file. Call once, after the last :meth:`add`."""
        first, last = self._root or (0, 0)
        header = self._header(first, last)
        assert len(header) == self._header_size
        yield header
        self._spool.seek(0)
        while chunk := self._spool.read(_CHUNK):
            yield chunk
        yield _SEQUENCE_END

    def close(self) -> None:
        self._spool.close()
