"""Orthanc's three JSON forms of a DICOM dataset: full (/tags), simplified (?simplify) and short (?short).

Full:       {"0010,0010": {"Name": "PatientName", "Type": "String", "Value": "DOE^JOHN"}, ...}
Simplified: {"PatientName": "DOE^JOHN", ...}
Short:      {"0010,0010": "DOE^JOHN", ...}

Binary values (pixel data, overlays, OB/OW/UN) are ``null`` with type "Null"; sequences are lists of objects.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydicom.datadict import dictionary_is_retired, get_private_entry, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from .parse import PIXEL_DATA, dataset_text
from .tags import format_tag

#: Longer values are replaced by null with type "TooLong", as Orthanc does, to keep answers small.
MAX_STRING_LENGTH = 256
UNKNOWN = "Unknown Tag & Data"
#: Retired in pydicom's (newer) dictionary but not in the DICOM dictionary Orthanc names tags with.
_NOT_RETIRED_FOR_ORTHANC = frozenset(
    {0x00380004, 0x00701807, 0x00701808, 0x30040010, 0x30040012, 0x30060085, 0x30060088, 0x3008002B, 0x30100090}
)


class JsonFormat(enum.Enum):
    FULL = "full"
    SIMPLIFY = "simplify"
    SHORT = "short"

    @classmethod
    def from_args(cls, args: Any, default: JsonFormat | None = None) -> JsonFormat:
        """Orthanc's query arguments: ``?simplify``, ``?short``, or ``?format=Full|Simplify|Short``."""
        if "simplify" in args:
            return cls.SIMPLIFY
        if "short" in args:
            return cls.SHORT
        fmt = (args.get("format") or "").lower()
        if fmt in ("simplify", "simplified"):
            return cls.SIMPLIFY
        if fmt == "short":
            return cls.SHORT
        if fmt == "full":
            return cls.FULL
        return default or cls.FULL


def element_name(elem: DataElement, creators: dict[int, str]) -> tuple[str, str | None]:
    """(Name, PrivateCreator) as Orthanc shows them; private elements are named from the private dictionary."""
    tag = int(elem.tag)
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 0:
        keyword = keyword_for_tag(tag)
        if not keyword:
            return ("GenericGroupLength" if element == 0 else UNKNOWN), None
        retired = dictionary_is_retired(tag) and tag not in _NOT_RETIRED_FOR_ORTHANC
        return ("RETIRED_" + keyword if retired else keyword), None
    if element == 0:
        return "GenericGroupLength", None
    if element <= 0x00FF:
        return "PrivateCreator", None
    creator = creators.get(group << 16 | element >> 8)
    if creator is None:
        return UNKNOWN, None
    try:
        name = get_private_entry(tag, creator)[2]
    except KeyError:
        return UNKNOWN, creator
    words = re.split(r"[^0-9A-Za-z]+", name)  # "Tube Azimuth [degree]" -> "TubeAzimuthDegree"
    keyword = "".join(w[:1].upper() + w[1:] for w in words)
    return (UNKNOWN if keyword in ("", "Unknown") else keyword), creator


def _private_creators(texts: dict[int, str | None]) -> dict[int, str]:
    creators: dict[int, str] = {}
    for tag, text in texts.items():
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 and 0x0010 <= element <= 0x00FF and text is not None:
            creators[tag] = text.strip()
    return creators


def _text(ds: Dataset, tag: int) -> str | None:
    try:
        return dataset_text(ds, tag)
    except Exception:  # an undecodable value must not make the whole answer fail
        return None


def dataset_to_json(ds: Dataset, fmt: JsonFormat = JsonFormat.FULL, *, with_pixel_data: bool = False) -> dict:
    """Convert a dataset; ``with_pixel_data`` adds the pixel data entry a header-only read leaves out.

    Values are read from the bytes of the file (see :func:`dataset_text`) before pydicom converts them.
    """
    texts = {int(tag): _text(ds, tag) for tag in list(ds.keys())}
    creators = _private_creators(texts)
    out: dict[str, Any] = {}
    for tag, text in texts.items():
        _add(out, ds[tag], text, fmt, creators)
    if with_pixel_data and PIXEL_DATA not in ds:
        _add(out, DataElement(PIXEL_DATA, "OW", None), None, fmt, creators)
    return out


def _add(out: dict[str, Any], elem: DataElement, text: str | None, fmt: JsonFormat, creators: dict[int, str]) -> None:
    tag = int(elem.tag)
    name, creator = element_name(elem, creators)
    if elem.VR == "SQ":
        items = [dataset_to_json(item, fmt) for item in (elem.value or [])]
        kind, value = "Sequence", items
    elif text is None:
        kind, value = "Null", None
    elif len(text) > MAX_STRING_LENGTH:
        kind, value = "TooLong", None
    else:
        kind, value = "String", text
    if fmt is JsonFormat.FULL:
        entry: dict[str, Any] = {"Name": name}
        if creator is not None:
            entry["PrivateCreator"] = creator
        entry["Type"] = kind
        entry["Value"] = value
        out[format_tag(tag)] = entry
    elif fmt is JsonFormat.SHORT:
        out[format_tag(tag)] = value
    else:
        out[name] = value
