"""The DICOM JSON model (PS3.18 F.2): what QIDO-RS, WADO-RS metadata and STOW-RS answer.

Keys are upper-case "GGGGEEEE" tags, values ``{"vr": ..., "Value": [...]}``; person names are objects with
Alphabetic / Ideographic / Phonetic groups, IS/DS/US/... values are JSON numbers, binary values are references
(BulkDataURI) rather than inline data, and an empty element has no "Value" (F.2.5). The element encoding itself
is pydicom's (``DataElement.to_json_dict``), so values read from the index and from files come out alike.
For a file's dataset in the default repertoire, ISO_IR 100 or ISO_IR 192, a fast path writes each element
straight from the bytes pydicom read, as pydicom would convert it, about seven times faster than building pydicom's
elements (the bulk of a series /metadata answer); anything it cannot mirror for certain (escape sequences,
undecodable bytes, implicit VRs the dictionary leaves open, odd numbers, sequences' own parsing) goes through
pydicom, and tests/test_dicom_json.py holds the two paths equal on every sample file.
Orthanc's own JSON forms (isengard.dicom.json) name tags differently and are not this model.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import struct
from collections.abc import Callable
from typing import Any

from pydicom import config
from pydicom.datadict import DicomDictionary, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from quart import Response, request

from isengard.dicom.tags import parse_tag

from .dicom_xml import MEDIA_TYPE as XML_MEDIA_TYPE
from .multipart import not_acceptable, parse_accept

log = logging.getLogger("isengard.dicomweb")

MEDIA_TYPE = "application/dicom+json"
#: VRs whose values the index keeps as text but DICOM JSON writes as numbers pydicom wants typed.
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})

#: (path of a binary element, "" at top level, e.g. "00540016/1/00181072") -> its BulkDataURI.
BulkUri = Callable[[str], str]


def tag_key(tag: int) -> str:
    return f"{tag:08X}"


def _typed(vr: str, text: str) -> Any:
    parts = text.split("\\")
    if vr in _INT_VRS:
        return [int(p) for p in parts]
    if vr in _FLOAT_VRS:
        return [float(p) for p in parts]
    if vr == "AT":
        return [parse_tag(p) for p in parts]
    return text


def text_element(tag: int, vr: str, text: str) -> dict[str, Any]:
    """One element from its text (as the index keeps main tags: multiple values joined by backslashes)."""
    if not text:
        return {"vr": vr}
    try:
        return DataElement(tag, vr, _typed(vr, text)).to_json_dict(None, 0)
    except (ValueError, TypeError, KeyError, OverflowError):
        # a value its VR forbids (an IS of "abc"): kept as text rather than dropped, as Orthanc does
        return {"vr": vr, "Value": text.split("\\")}


def _element(elem: DataElement, bulk_uri: BulkUri | None, path: str) -> dict[str, Any]:
    try:
        entry = elem.to_json_dict(None if bulk_uri is None else (lambda _: bulk_uri(path)), 0)
    except (ValueError, TypeError, OverflowError):
        entry = {"vr": elem.VR, "Value": [str(elem.value)]}
    if "InlineBinary" in entry and bulk_uri is None:
        del entry["InlineBinary"]  # QIDO answers carry no binary data
    values = entry.get("Value")
    if values == []:
        del entry["Value"]
    elif values is not None and len(values) > 1:
        entry["Value"] = [None if v == "" else v for v in values]  # F.2.5: empty values of a multi-valued element
    return entry


# -- the fast path: values straight from the bytes pydicom read, as pydicom's converters would make them -----------
# Each converter returns the "Value" list (empty: no "Value"), or None when it cannot be sure of giving what
# pydicom gives (escape sequences, bytes invalid in the character set, numbers pydicom reads its own way):
# that element then goes through pydicom.

#: pydicom's default repertoire codec, which it also uses for the VRs limited to it (AE, CS, DA, UI, IS, ...).
_DEFAULT_CODEC = "iso8859"
#: The character sets (pydicom's codec names) of a dataset the fast path reads: ASCII, ISO_IR 100, ISO_IR 192.
_FAST_CODECS = frozenset({_DEFAULT_CODEC, "latin_1", "UTF8"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Tags whose VR the dictionary leaves open ("US or SS"...): pydicom resolves them from other elements, and
#: adjusts the first value of LUT descriptors.
_AMBIGUOUS_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if " or " in entry[0])
_IS = re.compile(r" *[+-]?[0-9]+ *")
_DS = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")
_ESC = b"\x1b"

_Converter = Callable[[bytes, str, bool], "list[Any] | None"]


def _values(parts: list[Any]) -> list[Any]:
    """The JSON values of split text: none for one empty value, null for the empty ones of several (F.2.5)."""
    if len(parts) == 1:
        return parts if parts[0] else []
    return [p or None for p in parts]


def _decoded(raw: bytes, codec: str) -> str | None:
    """Text in the dataset's character set as pydicom decodes it when no escape sequence switches sets."""
    if _ESC in raw:
        return None
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:  # pydicom warns and substitutes
        return None


def _texts(raw: bytes, codec: str, _: bool) -> list[Any] | None:  # LO SH UC
    text = _decoded(raw, codec)
    return None if text is None else _values([p.rstrip("\0 ") for p in text.split("\\")])


def _single_text(raw: bytes, codec: str, _: bool) -> list[Any] | None:  # LT ST UT: backslashes are text
    text = _decoded(raw, codec)
    return None if text is None else _values([text.rstrip("\0 ")])


def _strings(raw: bytes, _codec: str, _: bool) -> list[Any] | None:  # AS CS DA DT TM
    return _values(raw.decode(_DEFAULT_CODEC).rstrip(" \0").split("\\"))


def _application_entities(raw: bytes, _codec: str, _: bool) -> list[Any] | None:
    return _values([p.strip() for p in raw.decode(_DEFAULT_CODEC).split("\\")])


def _uids(raw: bytes, _codec: str, _: bool) -> list[Any] | None:
    return _values([p.strip() for p in raw.decode(_DEFAULT_CODEC).rstrip("\0 ").split("\\")])


def _uri(raw: bytes, _codec: str, _: bool) -> list[Any] | None:
    return _values([raw.decode(_DEFAULT_CODEC).rstrip()])


def _person_names(raw: bytes, codec: str, _: bool) -> list[Any] | None:
    text = _decoded(raw.rstrip(b"\0 "), codec)
    if text is None:
        return None
    if not text:
        return []
    names = []
    for name in text.split("\\"):
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups:  # an empty name among several: pydicom fails on it, let it say so
            return None
        names.append(dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)))
    return names


def _integer_strings(raw: bytes, _codec: str, _: bool) -> list[Any] | None:
    parts = raw.decode(_DEFAULT_CODEC).rstrip(" \0").split("\\")
    if parts == [""]:
        return []
    return [int(p) for p in parts] if all(_IS.fullmatch(p) for p in parts) else None


def _decimal_strings(raw: bytes, _codec: str, _: bool) -> list[Any] | None:
    parts = raw.decode(_DEFAULT_CODEC).strip().rstrip(" \0").split("\\")
    if parts == [""]:
        return []
    return [float(p) for p in parts] if all(_DS.fullmatch(p) for p in parts) else None


def _numbers(code: str) -> _Converter:
    size = struct.calcsize("<" + code)  # standard sizes, not the platform's

    def convert(raw: bytes, _codec: str, little: bool) -> list[Any] | None:
        if len(raw) % size:  # pydicom refuses the element
            return None
        return list(struct.unpack(f"{'<' if little else '>'}{len(raw) // size}{code}", raw))

    return convert


def _tags(raw: bytes, _codec: str, little: bool) -> list[Any] | None:
    if len(raw) % 4:
        return None
    words = struct.unpack(f"{'<' if little else '>'}{len(raw) // 2}H", raw)
    return [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]


#: The binary numeric VRs and their struct codes.
_STRUCT_CODES = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_CONVERTERS: dict[str, _Converter] = {
    **dict.fromkeys(("LO", "SH", "UC"), _texts),
    **dict.fromkeys(("LT", "ST", "UT"), _single_text),
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM"), _strings),
    "AE": _application_entities,
    "UI": _uids,
    "UR": _uri,
    "PN": _person_names,
    "IS": _integer_strings,
    "DS": _decimal_strings,
    **{vr: _numbers(code) for vr, code in _STRUCT_CODES.items()},
    "AT": _tags,
}


@functools.lru_cache(maxsize=8192)  # bounded: private tags of implicit VR files are many
def _dictionary_vr(tag: int) -> str | None:
    """The VR of a tag in an implicit VR file, when pydicom's dictionary alone settles it."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:  # private or unknown: pydicom looks further
        return None
    return vr if vr in _CONVERTERS or vr in _BINARY_VRS else None


def _pydicom_as_usual() -> bool:
    """Whether pydicom converts values the default way the fast path mirrors (no hooks, no typed dates...)."""
    return (
        hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
        and config.data_element_callback is None
        and not (config.datetime_conversion or config.use_DS_numpy or config.use_IS_numpy)
    )


def _fast_codec(ds: Dataset) -> str | None:
    """The codec of the dataset's text, the one pydicom would use, when the fast path knows it."""
    codecs = ds.original_character_set or ds._character_set
    if isinstance(codecs, str):
        codecs = [codecs]
    return codecs[0] if len(codecs) == 1 and codecs[0] in _FAST_CODECS else None


_SLOW = object()  # the element needs pydicom


def _raw_entry(raw: Any, codec: str, bulk_uri: BulkUri | None, path: str) -> Any:
    """The element in the model from its bytes, ``None`` to leave it out, or ``_SLOW``."""
    if not isinstance(raw, RawDataElement) or raw.value is None or raw.tag in _AMBIGUOUS_TAGS:
        return _SLOW
    vr = raw.VR or _dictionary_vr(raw.tag)
    if vr is None or vr == "UN" or raw.length == 0xFFFFFFFF:
        return _SLOW
    if vr in _BINARY_VRS:
        if bulk_uri is None:
            return None  # QIDO answers carry no binary data
        return {"vr": vr, "BulkDataURI": bulk_uri(path)} if raw.length else {"vr": vr}
    convert = _CONVERTERS.get(vr)
    if convert is None:
        return _SLOW
    if not raw.length:
        return {"vr": vr}
    values = convert(raw.value, codec, raw.is_little_endian)
    if values is None:
        return _SLOW
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def dataset_json(
    ds: Dataset, bulk_uri: BulkUri | None = None, *, prefix: str = "", only: set[int] | None = None, fast: bool = True
) -> dict[str, Any]:
    """A dataset (a file header) in the model, without the file meta group (PS3.18 F.2: datasets only).

    ``bulk_uri`` names binary elements (with their path inside sequences); without it they are left out, as a
    QIDO answer has no bulk data. ``only`` keeps the listed top-level tags. ``fast=False`` has pydicom convert
    every element: the reference the fast path is tested against.
    """
    codec = _fast_codec(ds) if fast and _pydicom_as_usual() else None
    out: dict[str, Any] = {}
    for tag, raw in list(ds._dict.items()):
        # no file meta group and no group lengths (PS3.18 F.2: the model holds the attributes of the dataset)
        if tag >> 16 == 0x0002 or not tag & 0xFFFF or (only is not None and tag not in only):
            continue
        key = tag_key(int(tag))
        if codec is not None:
            entry = _raw_entry(raw, codec, bulk_uri, prefix + key)
            if entry is not _SLOW:
                if entry is not None:
                    out[key] = entry
                continue
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot even read: left out rather than failing the whole answer
            log.warning("element %s cannot be read, left out of DICOM JSON", key)
            continue
        if elem.VR == "SQ":
            items = [
                dataset_json(item, bulk_uri, prefix=f"{prefix}{key}/{i}/", fast=fast)
                for i, item in enumerate(elem.value or [], 1)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        entry = _element(elem, bulk_uri, prefix + key)
        if bulk_uri is None and "BulkDataURI" not in entry and elem.VR in _BINARY_VRS:
            continue
        out[key] = entry
    return out


def answer_model() -> str:
    """The media type a QIDO-RS or metadata answer takes (PS3.18 8.7.3): DICOM JSON, or DICOM XML (PS3.18 F.3)
    when the Accept header prefers application/dicom+xml, alone or as the type of multipart/related parts.

    JSON when the header is absent or accepts anything; a 406 when it names neither model.
    """
    accept = request.headers.get("Accept")
    ranges = parse_accept(accept)
    if not ranges:
        return MEDIA_TYPE
    for media in ranges:  # most preferred first
        if media.is_any or media.media_type in (MEDIA_TYPE, "application/json", "application/*"):
            return MEDIA_TYPE
        if media.media_type == XML_MEDIA_TYPE or (
            media.is_multipart and media.params.get("type", "").lower() == XML_MEDIA_TYPE
        ):
            return XML_MEDIA_TYPE
    raise not_acceptable(accept, f'{MEDIA_TYPE} or multipart/related; type="{XML_MEDIA_TYPE}"')


def json_answer(data: Any, status: int = 200) -> Response:
    """An answer in the DICOM JSON media type (dicomweb-client compares the Content-Type without parameters)."""
    return Response(json.dumps(data, ensure_ascii=False), status=status, content_type=MEDIA_TYPE)
