"""New DICOM instances from JSON, as /tools/create-dicom makes them (Orthanc Book: "Attaching PDF file as DICOM
series", "Creating DICOM instance with private tags").

An instance starts with fresh identifiers (a PatientID, then Study, Series and SOP Instance UIDs), takes the
module tags of its parent when it has one, gets the current UTC date and time, then the tags of the request; a
PNG or JPEG becomes its pixel data, a PDF an Encapsulated PDF document. Tags the instance already has (its
identifiers, what the parent gave) are refused unless the request forces them, so that a new instance cannot
silently land in a foreign study.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import io
import math
import struct
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydicom.datadict import RepeatersDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .parse import BINARY_VRS, ENCODINGS, PIXEL_DATA
from .tags import format_tag, parse_tag

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
#: What the meta header declares when the request gives no SOPClassUID (the value DCMTK, hence Orthanc, writes).
UNSPECIFIED_SOP_CLASS = "1.2.276.0.7230010.3.1.0.1"
#: Tags a request may set although the new instance already has them.
OVERRIDABLE = frozenset(
    {
        "PatientID",
        "AcquisitionDate",
        "AcquisitionTime",
        "ContentDate",
        "ContentTime",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "SeriesDate",
        "SeriesTime",
        "StudyDate",
        "StudyTime",
    }
)
_NUMBERS = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}
#: The values binary integer VRs can hold.
_BOUNDS = {"US": (0, 2**16 - 1), "SS": (-(2**15), 2**15 - 1), "UL": (0, 2**32 - 1), "SL": (-(2**31), 2**31 - 1),
           "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}  # fmt: skip


def bad_file(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


@dataclass
class CreationRequest:
    """The checked body of /tools/create-dicom, and what the parent resource hands down."""

    tags: dict[str, Any]
    encoding: str  # a SpecificCharacterSet defined term; empty: none (ASCII), as the legacy body gets
    parent_level: ResourceType | None = None
    inherited: dict[str, str] = field(default_factory=dict)  # keyword -> value, from the parent's modules
    force: bool = False
    interpret_binary: bool = True
    private_creator: str = ""


def check_encoding(term: str) -> str:
    if term not in ENCODINGS.values():
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific character set: {term}")
    return term


def data_uri(text: str) -> tuple[str, bytes]:
    """(MIME type, payload) of a base64 data URI ("data:image/png;base64,...")."""
    header, sep, payload = text.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise bad_file("The content must be given as a base64 data URI (data:<type>;base64,...)")
    try:
        return header[5:-7].strip().lower(), base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_file("The base64 payload of the data URI is malformed") from None


def _vr(tag: int) -> str:
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        return "LO" if 0x0010 <= element <= 0x00FF else "UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if vr == "OB or OW":
        return "OW"  # as DCMTK writes pixel and overlay data
    return vr if vr == "US or SS" else vr.split(" or ")[0]  # the value decides between US and SS


def _out_of_range(tag: int, value: Any) -> OrthancError:
    return bad_file(f'While creating a DICOM instance, tag ({format_tag(tag)}) has out-of-range value: "{value}"')


def new_element(tag: int, value: Any, request: CreationRequest) -> DataElement:
    """One element from its JSON value: a string (binary tags may be data URIs), null, or a list of objects."""
    vr = _vr(tag)
    if vr == "SQ":
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise _out_of_range(tag, value)
        items = []
        for item in value:
            child = Dataset()
            for name, child_value in item.items():
                child_tag = resolve_tag(name)
                child[child_tag] = new_element(child_tag, child_value, request)
            items.append(child)
        return DataElement(tag, "SQ", Sequence(items))
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {format_tag(tag)}")
    if vr == "US or SS":
        vr = "SS" if value.lstrip().startswith("-") else "US"
    if vr in BINARY_VRS:
        data = data_uri(value)[1] if request.interpret_binary and value.startswith("data:") else value.encode()
        return DataElement(tag, vr, data + b"\0" * (len(data) % 2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DCMTK stores what it is given; so do we
            if vr in _NUMBERS:
                numbers = [_NUMBERS[vr](v) for v in value.split("\\") if v.strip()]
                if not numbers:
                    return DataElement(tag, vr, None)  # an empty value, as a query key or a type 2 attribute
                low, high = _BOUNDS.get(vr, (-math.inf, math.inf))
                if not all(low <= n <= high for n in numbers):
                    raise ValueError(value)
                return DataElement(tag, vr, numbers[0] if len(numbers) == 1 else numbers)
            return DataElement(tag, vr, value)
    except (ValueError, TypeError, OverflowError):
        raise _out_of_range(tag, value) from None


def resolve_tag(name: str) -> int:
    """A tag named by keyword (repeating groups included: "OverlayData" is 6000,3000) or "gggg,eeee"."""
    try:
        tag = parse_tag(name)
    except KeyError:
        mask = next((m for m, entry in RepeatersDictionary.items() if entry[4] == name), None)
        if mask is None:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400) from None
        tag = int(mask.replace("x", "0"), 16)
    if tag >> 16 == 0x0002:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"The meta header tag {name} cannot be set")
    return tag


def _now_dicom() -> tuple[str, str]:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S") + ".000000"


def new_dataset(request: CreationRequest, *, series: tuple[str, str, str] | None = None) -> Dataset:
    """The dataset of a new instance without its content.

    ``series`` (PatientID, StudyInstanceUID, SeriesInstanceUID) places it in a series being created.
    """
    ds = Dataset()
    if request.encoding:
        ds.SpecificCharacterSet = request.encoding
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = series or (
        str(uuid.uuid4()),
        generate_uid(),
        generate_uid(),
    )
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in request.inherited.items():
        tag = parse_tag(keyword)
        ds[tag] = new_element(tag, value, request)
    date, time = _now_dicom()
    stamps = ["Acquisition", "Content", "InstanceCreation"]
    if request.parent_level in (None, ResourceType.PATIENT, ResourceType.STUDY):
        stamps.append("Series")
    if request.parent_level in (None, ResourceType.PATIENT):
        stamps.append("Study")
    for prefix in stamps:
        setattr(ds, prefix + "Date", date)
        setattr(ds, prefix + "Time", time)
    inject_tags(ds, request.tags, request)
    return ds


def inject_tags(ds: Dataset, tags: dict[str, Any], request: CreationRequest) -> None:
    """The tags of the request, refusing to change what the instance already holds unless forced."""
    for name, value in tags.items():
        tag = resolve_tag(name)
        keyword = keyword_for_tag(tag) or format_tag(tag)
        if keyword == "SpecificCharacterSet":
            continue
        if tag == PIXEL_DATA:
            raise OrthancError(ErrorCode.CREATE_DICOM_USE_CONTENT)
        if not request.force and keyword not in OVERRIDABLE and tag in ds:
            raise OrthancError(ErrorCode.CREATE_DICOM_OVERRIDE_TAG, keyword)
        ds[tag] = new_element(tag, value, request)
        reserve_private_block(ds, tag, request.private_creator)


def reserve_private_block(ds: Dataset, tag: int, creator: str) -> None:
    """A private element needs its creator (gggg,00xx): added from PrivateCreator when the tags lack it."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 0 or element < 0x1000 or not creator:
        return
    creator_tag = group << 16 | element >> 8
    if creator_tag not in ds:
        ds[creator_tag] = DataElement(creator_tag, "LO", creator)


def embed_content(ds: Dataset, content: str) -> None:
    """Pixel data from a PNG or JPEG image, or an Encapsulated PDF document."""
    mime, data = data_uri(content)
    if mime in ("image/png", "image/jpeg"):
        embed_image(ds, data)
    elif mime == "application/pdf":
        embed_pdf(ds, data)
    else:
        raise OrthancError(
            ErrorCode.NOT_IMPLEMENTED,
            f"Unsupported MIME type for the content of a new DICOM file: {mime}",
            http_status=400,
        )


def embed_image(ds: Dataset, data: bytes) -> None:
    """8-bit or 16-bit greyscale (MONOCHROME2) or 8-bit RGB pixel data; alpha and palettes are flattened."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = _pixels(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise bad_file(f"Cannot decode the image: {e}") from None
    rows, columns = pixels.shape[:2]
    color = pixels.ndim == 3
    bits = pixels.dtype.itemsize * 8
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    raw = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, "OW", raw + b"\0" * (len(raw) % 2))


def _pixels(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image)
        return np.clip(values, 0, 65535).astype(np.uint16)
    if image.mode in ("L", "1", "LA"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def embed_pdf(ds: Dataset, data: bytes) -> None:
    if not data.startswith(b"%PDF"):
        raise bad_file("Not a PDF file")
    ds.SOPClassUID = ENCAPSULATED_PDF
    if "Modality" not in ds:
        ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = data + b"\0" * (len(data) % 2)


def encode(ds: Dataset) -> bytes:
    """The dataset as a DICOM file in Explicit VR Little Endian (also a worklist, which has no SOP UIDs: its meta
    header then names no SOP class and a UID of its own, as dcmtk's ``dump2dcm`` writes them)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or UNSPECIFIED_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # characters outside the character set are replaced, as DCMTK does
        try:
            ds.save_as(out, enforce_file_format=True)
        except (ValueError, TypeError, OverflowError, struct.error, OSError) as e:
            raise bad_file(f"Cannot write the DICOM file: {e}") from None
    return out.getvalue()


def create_instance(request: CreationRequest, content: str | None) -> bytes:
    ds = new_dataset(request)
    if content is not None:
        embed_content(ds, content)
    return encode(ds)


def create_series(request: CreationRequest, items: list[Any]) -> list[bytes]:
    """One instance per item of a "Content" array (a data URI, or {"Content": ..., "Tags": {...}}), one series.

    Every item is built before any is stored, so a bad item stores nothing.
    """
    first = new_dataset(request)
    series = (first.PatientID, first.StudyInstanceUID, first.SeriesInstanceUID)
    files = []
    for index, item in enumerate(items, start=1):
        content, tags = item, {}
        if isinstance(item, dict):
            content, tags = item.get("Content"), item.get("Tags", {})
            if not isinstance(tags, dict):
                raise OrthancError(ErrorCode.BAD_REQUEST, 'The "Tags" of an item of "Content" must be an object')
            if content is None:
                raise OrthancError(ErrorCode.CREATE_DICOM_NO_PAYLOAD)
        if not isinstance(content, str):
            raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
        ds = first if index == 1 else new_dataset(request, series=series)
        inject_tags(ds, tags, request)
        ds.InstanceNumber = ds.ImageIndex = index
        ds.ImagesInAcquisition = len(items)
        ds.NumberOfTemporalPositions = 1
        embed_content(ds, content)
        files.append(encode(ds))
    return files
