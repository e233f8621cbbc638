"""One instance's content: the DICOM file, its tags in Orthanc's JSON forms, raw values by path, frames list."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.sequence import Sequence
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.json import JsonFormat, dataset_to_json
from ..dicom.parse import BINARY_VRS, PIXEL_DATA, element_text
from ..dicom.tags import format_tag, parse_tag
from ..dicom.transcode import lossy_quality, quality_of, transcode
from ..errors import ErrorCode, OrthancError
from .common import answer, context

bp = Blueprint("instances", __name__)


@bp.get("/instances/<public_id>/file")
async def file(public_id: str) -> Response:
    """The DICOM file as received, streamed; ``?transcode=UID`` (``&lossy-quality=``) converts it first."""
    ctx = context()
    info = await ctx.store.dicom_attachment(public_id)
    syntax = request.args.get("transcode")
    if syntax:
        quality = quality_of(request.args.get("lossy-quality"), lossy_quality(ctx.config))
        data = await ctx.store.read_attachment(info)
        body = await asyncio.to_thread(transcode, data, syntax, quality=quality)
        return Response(
            body, content_type="application/dicom", headers={"Content-Disposition": f'filename="{public_id}.dcm"'}
        )
    return Response(
        await ctx.store.attachment_body(info),
        content_type="application/dicom",
        headers={
            "Content-Length": str(info.uncompressed_size),
            "Content-Disposition": f'filename="{public_id}.dcm"',
        },
    )


@bp.get("/instances/<public_id>/tags")
async def tags(public_id: str) -> Response:
    """Every tag of the instance (``?simplify``, ``?short``); the pixel data is listed, never read."""
    ds, has_pixels = await context().store.read_header(public_id)
    return answer(dataset_to_json(ds, JsonFormat.from_args(request.args), with_pixel_data=has_pixels))


@bp.get("/instances/<public_id>/simplified-tags")
async def simplified_tags(public_id: str) -> Response:
    """The tags keyed by name, values only."""
    ds, has_pixels = await context().store.read_header(public_id)
    return answer(dataset_to_json(ds, JsonFormat.SIMPLIFY, with_pixel_data=has_pixels))


@bp.get("/instances/<public_id>/pdf")
async def pdf(public_id: str) -> Response:
    """The PDF an Encapsulated PDF instance carries (404 if the instance holds none)."""
    ds, _ = await context().store.read_header(public_id)
    document = ds.get("EncapsulatedDocument")
    if ds.get("MIMETypeOfEncapsulatedDocument", "") != "application/pdf" or not document:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "This instance holds no PDF document")
    data = bytes(document)
    if data.endswith(b"\x00"):
        data = data[:-1]  # the byte DICOM pads odd lengths with
    return Response(data, content_type="application/pdf")


@bp.get("/instances/<public_id>/header")
async def header(public_id: str) -> Response:
    """The file meta information (group 0002), without its binary elements as in Orthanc."""
    ds, _ = await context().store.read_header(public_id)
    meta = Dataset()
    for elem in getattr(ds, "file_meta", None) or []:
        if elem.VR not in BINARY_VRS:
            meta.add(elem)
    return answer(dataset_to_json(meta, JsonFormat.from_args(request.args)))


#: Byte width of the values of the binary VRs, to give little-endian bytes from a big-endian file as Orthanc does.
_WORD_SIZES = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4}
_WORD_SIZES |= {"FD": 8, "OD": 8, "UV": 8, "SV": 8, "OV": 8}


def _raw_value(raw: DataElement | RawDataElement, elem: DataElement) -> bytes:
    """The value as stored in the file, padding included (Orthanc's /content answers raw bytes)."""
    if isinstance(raw, RawDataElement):
        value = raw.value or b""
        size = _WORD_SIZES.get(elem.VR, 1)
        if raw.is_little_endian or size == 1:
            return value
        return b"".join(value[i : i + size][::-1] for i in range(0, len(value), size))
    if isinstance(elem.value, bytes):
        return elem.value
    value = (element_text(elem) or "").encode("utf-8")
    return value + (b"\x00" if elem.VR == "UI" else b" ") * (len(value) % 2)  # values have an even length


@bp.get("/instances/<public_id>/content", defaults={"path": ""})
@bp.get("/instances/<public_id>/content/<path:path>")
async def content(public_id: str, path: str) -> Response:
    """Navigate the dataset: ``/content`` lists tags, ``/content/0008-1140/0/0008-1150`` reads a nested value."""
    ctx = context()
    parts = [p for p in path.split("/") if p]
    needs_pixels = bool(parts) and _is_pixel_data(parts[0])
    if needs_pixels:  # fragments of the pixel data: the whole file is needed
        data = await ctx.store.read_dicom(public_id)
        ds = await asyncio.to_thread(pydicom.dcmread, io.BytesIO(data), force=True)
        has_pixels = True
    else:
        ds, has_pixels = await ctx.store.read_header(public_id)
    node: Any = ds
    for i, part in enumerate(parts):
        if isinstance(node, Dataset):
            try:
                tag = parse_tag(part)
            except KeyError:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"bad tag {part}") from None
            if tag not in node:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no tag {part}")
            raw = node.get_item(tag)  # before pydicom converts it: the bytes of the file
            elem = node[tag]
            if elem.VR == "SQ":
                node = elem.value
            elif tag == PIXEL_DATA:  # a list of fragments; native pixel data is one fragment, as in Orthanc
                encapsulated = getattr(elem, "is_undefined_length", False)
                node = list(generate_fragments(elem.value)) if encapsulated else [_raw_value(raw, elem)]
            else:
                if i != len(parts) - 1:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "cannot go below a value")
                return Response(_raw_value(raw, elem), content_type="application/octet-stream")
        elif isinstance(node, Sequence | list):
            if not part.isdigit() or int(part) >= len(node):
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no item {part}")
            node = node[int(part)]
            if isinstance(node, bytes):
                return Response(node, content_type="application/octet-stream")
    if isinstance(node, Dataset):
        listed = [format_tag(int(e.tag), "-") for e in node]
        if node is ds and has_pixels and PIXEL_DATA not in ds:
            listed.append(format_tag(PIXEL_DATA, "-"))
        return answer(listed)
    return answer([str(i) for i in range(len(node))])


def _is_pixel_data(part: str) -> bool:
    try:
        return parse_tag(part) == PIXEL_DATA
    except KeyError:
        return False


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
