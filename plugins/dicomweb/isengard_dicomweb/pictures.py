"""WADO-RS pixel data: frames (PS3.18 10.4.1.1.4), bulk data, rendered pictures and thumbnails (10.4.1.1.3).

- ``/frames/{list}``: 1-based frame numbers, answered as multipart/related parts of the frames' bytes. By default
  (no ``transfer-syntax``, or Explicit VR Little Endian) the frames are uncompressed application/octet-stream, the
  file being decompressed first when stored compressed; ``transfer-syntax=*`` sends them as stored, each part
  typed by its syntax (image/jpeg, image/jp2, application/octet-stream). A frame number out of range is a 400.
- ``/bulk/{path}``: the value of a binary element a BulkDataURI of /metadata names (the path holds sequence
  item numbers: ``00540016/1/00181072``), as one application/octet-stream part.
- ``/rendered`` and ``/thumbnail``: the kernel's rendering (isengard.dicom.imaging, the one of /rendered in the
  REST API): ``window=center,width[,linear]``, ``viewport=width,height``, ``quality``; JPEG unless the Accept
  header prefers PNG. A thumbnail is the rendered first instance of the resource, fit in 128x128 by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from quart import Blueprint, Response, request

from isengard.context import ServerContext
from isengard.dicom.imaging import Extraction, ImageFormat, Rendering, frame_count, open_dataset, raw_frame, render
from isengard.dicom.parse import PIXEL_DATA
from isengard.dicom.tags import parse_tag
from isengard.dicom.transcode import transcode
from isengard.errors import ErrorCode, OrthancError
from isengard.model import MetadataType, Resource, ResourceType
from isengard.rest.common import context
from isengard.rest.frames import negotiate

from .multipart import accepted_part, content_type, new_boundary, not_acceptable, parse_accept, stream_parts
from .resources import at_every_level, instances_of, resolve

bp = Blueprint("dicomweb_pictures", __name__)

OCTET_STREAM = "application/octet-stream"
THUMBNAIL_SIZE = 128


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise _bad(f"Bad list of frame numbers: {text}") from None
    if any(n < 1 for n in numbers):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Frame numbers start at 1: {text}")
    return numbers


def _as_stored(accept: str | None) -> bool:
    """Whether the Accept header takes frames as stored (``transfer-syntax=*``) rather than uncompressed."""
    media = accepted_part(accept, OCTET_STREAM)
    syntax = media.params.get("transfer-syntax", ExplicitVRLittleEndian) if media else ExplicitVRLittleEndian
    if syntax not in ("*", ExplicitVRLittleEndian):
        raise not_acceptable(accept, f'multipart/related; type="{OCTET_STREAM}"; transfer-syntax=*')
    return syntax == "*"


async def _instance(ctx: ServerContext, study: str, series: str, instance: str) -> Resource:
    _, resources = await resolve(ctx, study, series, instance)
    return resources[0]


async def _frame_parts(data: bytes, numbers: list[int], syntax: str) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    for number in numbers:
        body, kind = await asyncio.to_thread(raw_frame, data, number - 1)
        yield body, {"Content-Type": f"{kind}; transfer-syntax={syntax}"}


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frames>")
async def frames(study: str, series: str, instance: str, frames: str) -> Response:
    """WADO-RS: frames of an instance (1-based list), as multipart/related parts."""
    ctx = context()
    numbers = frame_numbers(frames)
    as_stored = _as_stored(request.headers.get("Accept"))
    found = await _instance(ctx, study, series, instance)
    count = frame_count(found.main_tags.get("NumberOfFrames"))
    if max(numbers) > count:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"This instance has {count} frame(s): {frames}")
    public_id = found.public_id
    data = await ctx.store.read_dicom(public_id)
    stored = (await ctx.index.get_metadata(ResourceType.INSTANCE, public_id)).get(MetadataType.TRANSFER_SYNTAX)
    syntax = UID(stored[0]) if stored else ExplicitVRLittleEndian
    if not as_stored and syntax.is_encapsulated:
        data = await asyncio.to_thread(transcode, data, ExplicitVRLittleEndian)
        syntax = ExplicitVRLittleEndian
    elif not syntax.is_encapsulated:
        syntax = ExplicitVRLittleEndian  # native frames are answered little endian whatever the file's syntax
    boundary = new_boundary()
    body = stream_parts(_frame_parts(data, numbers, syntax), boundary)
    return Response(body, content_type=content_type(boundary, OCTET_STREAM))


def _element_at(ds: Dataset, path: str) -> bytes:
    """The bytes of the element a bulk path names ("gggggeeee/item/gggggeeee/..."), items numbered from 1."""
    parts = path.strip("/").split("/")
    current = ds
    try:
        for position in range(0, len(parts) - 1, 2):
            current = current[parse_tag(parts[position])].value[int(parts[position + 1]) - 1]
        value = current[parse_tag(parts[-1])].value
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No bulk data at {path}") from None
    if not isinstance(value, bytes):
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No bulk data at {path}")
    return value


async def _single_part(content: bytes) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    yield content, {"Content-Type": OCTET_STREAM}


@bp.get("/studies/<study>/series/<series>/instances/<instance>/bulk/<path:path>")
async def bulk(study: str, series: str, instance: str, path: str) -> Response:
    """WADO-RS: the value of a binary element that a BulkDataURI names."""
    ctx = context()
    accepted_part(request.headers.get("Accept"), OCTET_STREAM)
    public_id = (await _instance(ctx, study, series, instance)).public_id
    try:
        top = parse_tag(path.strip("/").split("/")[0])
    except KeyError:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No bulk data at {path}") from None
    if top == PIXEL_DATA:
        ds = await asyncio.to_thread(open_dataset, await ctx.store.read_dicom(public_id))
    else:
        ds, _ = await ctx.store.read_header(public_id)
    content = _element_at(ds, path)
    boundary = new_boundary()
    return Response(stream_parts(_single_part(content), boundary), content_type=content_type(boundary, OCTET_STREAM))


# -- rendered pictures ------------------------------------------------------------------------------------------


def _picture_format() -> ImageFormat:
    accept = request.headers.get("Accept")
    ranges = parse_accept(accept)
    if not ranges or all(m.is_any for m in ranges):
        return ImageFormat.JPEG  # PS3.18 8.7.4: JPEG unless asked otherwise
    return negotiate(accept)


def _numbers(name: str, count: int) -> list[float] | None:
    raw = request.args.get(name)
    if not raw:
        return None
    parts = raw.split(",")
    try:
        values = [float(p) for p in parts[:count]]
    except ValueError:
        raise _bad(f"Bad value of {name!r}: {raw}") from None
    if len(values) < count:
        raise _bad(f"Bad value of {name!r}: {raw}")
    if name == "window" and len(parts) > 2 and parts[2].strip().lower() not in ("linear", ""):
        raise _bad(f"Only the linear VOI LUT function is supported: {raw}")
    return values


def _rendering(default_size: int = 0) -> Rendering:
    window = _numbers("window", 2)
    viewport = _numbers("viewport", 2)
    width, height = (int(viewport[0]), int(viewport[1])) if viewport else (default_size, default_size)
    return Rendering(
        window_center=window[0] if window else None,
        window_width=window[1] if window else None,
        width=max(width, 0),
        height=max(height, 0),
    )


def _quality() -> int:
    raw = request.args.get("quality", "90")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise _bad(f"Bad quality (1-100): {raw}")
    return int(raw)


async def _render(ctx: ServerContext, public_id: str, frame: int, rendering: Rendering) -> Response:
    fmt = _picture_format()
    data = await ctx.store.read_dicom(public_id)
    body = await asyncio.to_thread(render, data, frame, Extraction.RENDERED, rendering, fmt, _quality())
    return Response(body, content_type=fmt.value)


# The instance route's default is None, not 1: werkzeug would otherwise redirect .../frames/1/rendered to it.
@bp.get("/studies/<study>/series/<series>/instances/<instance>/rendered", defaults={"frame": None})
@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<int:frame>/rendered")
async def rendered(study: str, series: str, instance: str, frame: int | None) -> Response:
    """WADO-RS: an instance (its first frame) or one of its frames rendered as JPEG or PNG."""
    ctx = context()
    frame = 1 if frame is None else frame
    if frame < 1:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Frame numbers start at 1: {frame}")
    found = await _instance(ctx, study, series, instance)
    return await _render(ctx, found.public_id, frame - 1, _rendering())


@at_every_level(bp, "/thumbnail")
async def thumbnail(study: str, series: str | None = None, instance: str | None = None) -> Response:
    """WADO-RS: a thumbnail of a study, a series (their first instance) or an instance."""
    ctx = context()
    level, resources = await resolve(ctx, study, series, instance)
    first = (await instances_of(ctx, level, resources[:1]))[0]
    return await _render(ctx, first, 0, _rendering(THUMBNAIL_SIZE))
