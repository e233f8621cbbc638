"""Reading an incoming DICOM file once: identifiers, main tags and reception metadata, never the pixels.

Everything the index stores about an instance is computed here, from the header alone; the pixel data is only
checked for completeness, so a truncated upload is refused instead of stored.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import pydicom
from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from ..errors import ErrorCode, OrthancError
from ..model import DicomIdentifiers, ResourceType
from .tags import IDENTIFIER_TAGS, MainTags

#: Orthanc's names of encodings (DefaultEncoding) -> DICOM SpecificCharacterSet terms.
ENCODINGS: dict[str, str] = {
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "Korean": "ISO 2022 IR 149",
    "JapaneseKanji": "ISO 2022 IR 87",
    "SimplifiedChinese": "ISO 2022 IR 58",
}

BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW", "US or SS or OW"})
#: VRs whose bytes are text in the character set of the dataset; the other string VRs are plain ASCII.
TEXT_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
STRING_VRS = TEXT_VRS | {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
#: Bytes at which ISO 2022 escape sequences reset: value and component separators.
_TEXT_DELIMS = {
    "PN": {0x5C, 0x5E, 0x3D},
    "ST": TEXT_VR_DELIMS,
    "LT": TEXT_VR_DELIMS,
    "UT": TEXT_VR_DELIMS,
}
PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF


@dataclass
class ParsedInstance:
    """An incoming instance, read once: what the index, the events and the filters need."""

    dataset: Dataset  # the header: every element before the pixel data
    identifiers: DicomIdentifiers
    main_tags: dict[ResourceType, dict[str, str]]
    transfer_syntax: str
    sop_class_uid: str
    pixel_data_offset: int | None
    pixel_data_vr: str | None
    size: int

    def tag(self, keyword: str) -> str | None:
        """The text of a header element, as it would appear in Orthanc's JSON (``None`` if absent/binary)."""
        return dataset_text(self.dataset, tag_for_keyword(keyword)) if keyword in self.dataset else None


def bad_file(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def read_header(data: bytes, *, default_encoding: str = "Latin1") -> tuple[Dataset, int | None]:
    """Parse up to the pixel data; return the dataset and the offset of the pixel data element, if any."""
    if not data:
        raise bad_file("Received an empty DICOM file")
    fp = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                # Files without the 128-byte preamble and "DICM" are still DICOM when a dataset follows.
                fp.seek(0)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                if len(ds) == 0 or ("SOPInstanceUID" not in ds and "StudyInstanceUID" not in ds):
                    raise
    except Exception as e:  # pydicom raises many types on garbage; all mean the same here
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)") from e
    offset = fp.tell() if fp.tell() < len(data) else None
    end = _check_lengths(ds)
    deflated = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian
    if offset is None and end is not None and not deflated and data[end:].strip(b"\0"):
        raise bad_file("The file is truncated inside the header of an element")
    if "SpecificCharacterSet" not in ds:
        ds._parent_encoding = convert_encodings(ENCODINGS.get(default_encoding, "ISO_IR 100"))
    return ds, offset


def _check_lengths(ds: Dataset) -> int | None:
    """Refuse values shorter than their declared length; return where the last top-level element ends.

    pydicom reads a short value, and skips a partial element header at the end of the file, without complaint:
    both mean a truncated file (or a forged huge length). ``None`` when the last element has an undefined length.
    """
    end = None
    tags = list(ds.keys())  # iterating the dataset itself would convert every element
    for tag in tags:
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED:
            end = None
            continue
        if isinstance(raw.value, bytes) and len(raw.value) < raw.length:
            raise bad_file(
                f"The file is truncated: element {tag} declares {raw.length} bytes, {len(raw.value)} are present"
            )
        end = raw.value_tell + raw.length
    return end


def dataset_text(ds: Dataset, tag: int, encodings: str | list[str] | None = None) -> str | None:
    """The text of an element of ``ds`` exactly as Orthanc shows it: decoded from the bytes of the file.

    Values are kept as written, spaces inside multiple values and empty trailing name groups included
    ("Wang^XiaoDong=王^小東="); only the padding at the end goes. Elements pydicom has already converted fall
    back to :func:`element_text`, so read from a dataset nobody has browsed yet for exact answers.
    ``encodings``: ``ds._character_set`` when the caller already has it (pydicom works it out on every call).
    """
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        vr = raw.VR or _dictionary_vr(tag)
        if vr in STRING_VRS:
            if not raw.value:
                return ""
            return decode_text(raw.value, vr, ds._character_set if encodings is None else encodings)
    return element_text(ds[tag])


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:  # private or unknown: pydicom's conversion decides
        return None


def decode_text(value: bytes, vr: str, encodings: str | list[str]) -> str:
    """Bytes of a string element as text, in the dataset's character set when the VR is a text VR."""
    if vr in TEXT_VRS:
        codecs = [encodings] if isinstance(encodings, str) else list(encodings)
        text = decode_bytes(value, codecs, _TEXT_DELIMS.get(vr, TEXT_VR_DELIMS | {0x5C}))
    else:
        text = value.decode("latin-1")
    return text.rstrip(" \x00")


def element_text(elem: DataElement) -> str | None:
    """An element's value as Orthanc writes it in JSON: a string, multiple values joined by ``\\``.

    ``None`` for binary and sequence elements. An attribute tag (AT) shows its first value only, as Orthanc does.
    """
    vr = elem.VR
    if vr == "SQ" or vr in BINARY_VRS:
        return None
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if vr == "AT":
        items = items[:1]
    return "\\".join(_scalar_text(v, vr) for v in items)


def _scalar_text(value: object, vr: str) -> str:
    if vr in ("FD", "FL"):
        return "%.17g" % value  # noqa: UP031 - DCMTK's precision: values round-trip exactly
    if vr == "AT":
        tag = int(value)  # type: ignore[call-overload]
        return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"
    return str(value).strip(" \x00") if vr not in ("LT", "ST", "UT") else str(value).rstrip(" \x00")


def parse_instance(data: bytes, main_tags: MainTags, *, default_encoding: str = "Latin1") -> ParsedInstance:
    """Read and validate an incoming file; raise OrthancError(BAD_FILE_FORMAT) with a reason otherwise."""
    ds, offset = read_header(data, default_encoding=default_encoding)
    values: dict[ResourceType, dict[str, str]] = {}
    try:
        encodings = ds._character_set
        for level, tagged in main_tags.tagged.items():
            level_values: dict[str, str] = {}
            for keyword, tag in tagged:
                if tag in ds:
                    text = dataset_text(ds, tag, encodings)
                    if text is not None:
                        level_values[keyword] = text
            values[level] = level_values
    except Exception as e:
        raise bad_file(f"Cannot decode the main DICOM tags: {e}") from e
    ids = []
    for level in ResourceType:
        keyword = IDENTIFIER_TAGS[level]
        value = values[level].get(keyword, "")
        if not value and level is not ResourceType.PATIENT:
            raise bad_file(f"The file has no {keyword}: it is not a DICOM instance")
        ids.append(value)
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or ImplicitVRLittleEndian)
    sop_class = str(ds.get("SOPClassUID", "") and ds.SOPClassUID) or str(getattr(meta, "MediaStorageSOPClassUID", ""))
    pixel_vr = None
    if offset is not None and ts != DeflatedExplicitVRLittleEndian:
        pixel_vr = check_pixel_data(data, offset, ts)
    else:
        offset = None
    return ParsedInstance(
        dataset=ds,
        identifiers=DicomIdentifiers(*ids),
        main_tags=values,
        transfer_syntax=ts,
        sop_class_uid=sop_class,
        pixel_data_offset=offset,
        pixel_data_vr=pixel_vr,
        size=len(data),
    )


def check_pixel_data(data: bytes, offset: int, transfer_syntax: str) -> str | None:
    """Walk the pixel data element without decoding it: a truncated file is refused here.

    Returns the VR of the pixel data ("OB" or "OW"), or ``None`` when the element at ``offset`` is not pixel data.
    """
    big = transfer_syntax == ExplicitVRBigEndian
    implicit = transfer_syntax == ImplicitVRLittleEndian
    end = "<" if not big else ">"
    if len(data) < offset + 8:
        raise bad_file("The file is truncated inside its pixel data")
    group, element = struct.unpack_from(end + "HH", data, offset)
    if (group << 16 | element) != PIXEL_DATA:
        return None
    if implicit:
        vr = "OW"
        (length,) = struct.unpack_from("<I", data, offset + 4)
        pos = offset + 8
    else:
        vr = data[offset + 4 : offset + 6].decode("ascii", "replace")
        if len(data) < offset + 12:
            raise bad_file("The file is truncated inside its pixel data")
        (length,) = struct.unpack_from(end + "I", data, offset + 8)
        pos = offset + 12
    if length != _UNDEFINED:
        if pos + length > len(data):
            raise bad_file(
                f"The file is truncated: its pixel data declares {length} bytes, {len(data) - pos} are present"
            )
        return vr
    # Encapsulated: a sequence of items ending with a sequence delimiter.
    while True:
        if pos + 8 > len(data):
            raise bad_file("The file is truncated inside its encapsulated pixel data")
        g, e, item_length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (g, e) == (0xFFFE, 0xE0DD):
            return vr
        if (g, e) != (0xFFFE, 0xE000) or item_length == _UNDEFINED:
            raise bad_file("The encapsulated pixel data is malformed")
        if pos + item_length > len(data):
            raise bad_file("The file is truncated inside its encapsulated pixel data")
        pos += item_length
