"""The DICOM XML model (PS3.19 A.1 "Native DICOM Model", PS3.18 F.3): QIDO-RS and metadata answers for clients
that ask for application/dicom+xml.

Written from the DICOM JSON model (dicom_json.py) the same answers are built from, so both models always carry
the same attributes and values: DicomAttribute with tag, vr, keyword (and privateCreator for a private attribute
whose creator is in the dataset), Value elements numbered from 1 (empty for an empty value of a multi-valued
element, none for an empty element), PersonName with its Alphabetic / Ideographic / Phonetic groups split into
FamilyName, GivenName, MiddleName, NamePrefix, NameSuffix, InlineBinary, BulkData and Item for sequence items.
Unlike JSON, an XML answer is multipart/related, one XML document per dataset (PS3.18 8.7.3).

The text is written directly rather than through an element tree: values are escaped, carriage returns kept
(``&#13;``, an XML parser would turn a bare one into a line feed), and the few characters XML 1.0 cannot carry
at all (C0 controls, unpaired surrogates) become U+FFFD.

Differences from Orthanc 1.10.1 with its DICOMweb plugin 1.7 (see tests/test_xml.py):

- BulkData names its URI in an ``uri`` attribute, as PS3.19 spells it (Orthanc writes ``URI``);
- a sequence holds its Items only (Orthanc adds an empty ``<Value number="1"/>`` after them);
- the root declares the NativeDICOM namespace only (no ``xsi:schemaLocation``), and nothing is indented;
- numbers are written as the JSON model holds them: the decimal strings of the file, "5.000" as ``5`` (Orthanc
  goes through single-precision floats and writes 0.949999988 for a DS of 0.95).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pydicom.datadict import keyword_for_tag
from quart import Response

from .multipart import content_type, new_boundary, stream_parts

MEDIA_TYPE = "application/dicom+xml"
NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_NAME_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
#: Characters no XML 1.0 document may hold, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    else:
        text = str(value)
    return escape(_NOT_XML.sub("\ufffd", text), {"\r": "&#13;"})


def _quoted(value: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", value))


def _private_creator(tag: int, data: Mapping[str, Any]) -> str | None:
    """The creator of a private attribute (gggg,xxee is reserved by the value of gggg,00xx), when present."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 0 or element < 0x1000:
        return None
    values = data.get(f"{group:04X}00{element >> 8:02X}", {}).get("Value")
    return values[0] if values and isinstance(values[0], str) else None


def _person_name(out: list[str], number: int, name: Mapping[str, str] | None) -> None:
    out.append(f'<PersonName number="{number}">')
    for group in _NAME_GROUPS:
        text = (name or {}).get(group)
        if not text:
            continue
        out.append(f"<{group}>")
        # components up to the last one that holds something, empty ones included (as Orthanc writes them)
        for component, part in zip(_NAME_COMPONENTS, text.rstrip("^").split("^"), strict=False):
            out.append(f"<{component}>{_text(part)}</{component}>" if part else f"<{component}/>")
        out.append(f"</{group}>")
    out.append("</PersonName>")


def _attribute(out: list[str], key: str, entry: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    tag = int(key, 16)
    vr = entry.get("vr", "UN")
    head = f'<DicomAttribute tag="{key}" vr="{vr}"'
    keyword = keyword_for_tag(tag)
    if keyword:
        head += f' keyword="{keyword}"'
    creator = _private_creator(tag, data)
    if creator is not None:
        head += f" privateCreator={_quoted(creator)}"
    out.append(head + ">")
    start = len(out)
    values = entry.get("Value", [])
    if "BulkDataURI" in entry:
        out.append(f"<BulkData uri={_quoted(entry['BulkDataURI'])}/>")
    elif "InlineBinary" in entry:
        out.append(f"<InlineBinary>{entry['InlineBinary']}</InlineBinary>")  # base64: nothing to escape
    elif vr == "SQ":
        for number, item in enumerate(values, 1):
            out.append(f'<Item number="{number}">')
            _dataset(out, item)
            out.append("</Item>")
    elif vr == "PN":
        for number, name in enumerate(values, 1):
            _person_name(out, number, name)
    else:
        for number, value in enumerate(values, 1):
            if value is None:
                out.append(f'<Value number="{number}"/>')
            else:
                out.append(f'<Value number="{number}">{_text(value)}</Value>')
    if len(out) == start:
        out[-1] = head + "/>"  # an empty element (PS3.18 F.3: no Value)
    else:
        out.append("</DicomAttribute>")


def _dataset(out: list[str], data: Mapping[str, Any]) -> None:
    for key, entry in data.items():
        _attribute(out, key, entry, data)


def native_dicom_model(data: Mapping[str, Any]) -> bytes:
    """One dataset of the DICOM JSON model as a NativeDicomModel XML document, in UTF-8."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<NativeDicomModel xmlns="{NAMESPACE}">']
    _dataset(out, data)
    out.append("</NativeDicomModel>\n")
    return "".join(out).encode("utf-8")


def _documents(batch: Sequence[Mapping[str, Any]]) -> list[bytes]:
    return [native_dicom_model(data) for data in batch]


async def _parts(batches: AsyncIterable[Sequence[Mapping[str, Any]]]) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    async for batch in batches:
        # a millisecond or two per full header: kept off the event loop, as the JSON conversion is
        for document in await asyncio.to_thread(_documents, batch):
            yield document, {"Content-Type": MEDIA_TYPE}


def xml_answer(batches: AsyncIterable[Sequence[Mapping[str, Any]]]) -> Response:
    """A multipart/related answer of application/dicom+xml parts, one per dataset, streamed batch by batch."""
    boundary = new_boundary()
    return Response(stream_parts(_parts(batches), boundary), content_type=content_type(boundary, MEDIA_TYPE))
