"""The DICOM JSON model (PS3.18 F.2): what QIDO-RS, WADO-RS metadata and STOW-RS answer.

Keys are upper-case "GGGGEEEE" tags, values ``{"vr": ..., "Value": [...]}``; person names are objects with
Alphabetic / Ideographic / Phonetic groups, IS/DS/US/... values are JSON numbers, binary values are references
(BulkDataURI) rather than inline data, and an empty element has no "Value" (F.2.5). The element encoding itself
is pydicom's (``DataElement.to_json_dict``), so values read from the index and from files come out alike.
Orthanc's own JSON forms (isengard.dicom.json) name tags differently and are not this model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
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


def dataset_json(
    ds: Dataset, bulk_uri: BulkUri | None = None, *, prefix: str = "", only: set[int] | None = None
) -> dict[str, Any]:
    """A dataset (a file header) in the model, without the file meta group (PS3.18 F.2: datasets only).

    ``bulk_uri`` names binary elements (with their path inside sequences); without it they are left out, as a
    QIDO answer has no bulk data. ``only`` keeps the listed top-level tags.
    """
    out: dict[str, Any] = {}
    for tag in list(ds.keys()):
        # no file meta group and no group lengths (PS3.18 F.2: the model holds the attributes of the dataset)
        if tag.group == 0x0002 or tag.element == 0 or (only is not None and int(tag) not in only):
            continue
        key = tag_key(int(tag))
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot even read: left out rather than failing the whole answer
            log.warning("element %s cannot be read, left out of DICOM JSON", key)
            continue
        if elem.VR == "SQ":
            items = [
                dataset_json(item, bulk_uri, prefix=f"{prefix}{key}/{i}/") for i, item in enumerate(elem.value or [], 1)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        entry = _element(elem, bulk_uri, prefix + key)
        if bulk_uri is None and "BulkDataURI" not in entry and elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
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
