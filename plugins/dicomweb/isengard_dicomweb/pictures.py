"""WADO-RS pixel data: frames (PS3.18 10.4.1.1.4), bulk data, rendered pictures and thumbnails (10.4.1.1.3).

- ``/frames/{list}``: 1-based frame numbers, answered as multipart/related parts of the frames' bytes. By default
  (no ``transfer-syntax``, or Explicit VR Little Endian) the frames are uncompressed application/octet-stream, the
  file being decompressed first when stored compressed; ``transfer-syntax=*`` sends them as stored, each part
  typed by its syntax (image/jpeg, image/jp2, application/octet-stream). A compressed media type is served when
  the file is stored in its syntax (``type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50``, as wsidicom
  asks tiles; no transcoding between compressed syntaxes). A frame number out of range is a 400.
- ``/bulk/{path}``: the value of a binary element a BulkDataURI of /metadata names (the path holds sequence
  item numbers: ``00540016/1/00181072``), as one application/octet-stream part.
- A single frame, and bulk data, also go single part when the Accept header prefers a plain type
  (``application/octet-stream``, or the stored compressed type: ``image/jpeg``), as dicomweb-client's
  ``singlepart`` option and Slim ask them.
- ``/rendered`` and ``/thumbnail``: the kernel's rendering (isengard.dicom.imaging, the one of /rendered in the
  REST API): ``window=center,width[,linear]``, ``viewport=width,height``, ``quality``; JPEG unless the Accept
  header prefers PNG. A study or series rendered is every frame of its instances (PS3.18 10.4.1.1.3), streamed
  as multipart/related parts in instance order; asked for a single image/jpeg or image/png, it is the one picture
  Orthanc's plugin (1.7) answers there, of the instance with the smallest Orthanc id. A thumbnail is one
  representative picture fit in 128x128 by default: the middle instance of a series, of the study's first series.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit
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

from .multipart import (
    accepted_part,
    content_type,
    joined_parts,
    new_boundary,
    not_acceptable,
    parse_accept,
    stream_parts,
)
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


def _frames_answer(accept: str | None, stored: UID, single: bool) -> tuple[bool, str, bool]:
    """Whether frames go as stored (rather than uncompressed), the type of the parts the Accept header takes, and
    whether the answer is that one part alone (a single-part type, PS3.18 8.7.3.3, for a single frame only).

    PS3.18 8.7.3.5: application/octet-stream is Explicit VR Little Endian unless ``transfer-syntax=*``; a compressed
    media type fits when its transfer syntax (image/jpeg's default: JPEG Baseline) is the stored one.
    """
    ranges = parse_accept(accept)
    for media in ranges:
        if media.is_any:
            return False, OCTET_STREAM, False
        if media.is_multipart:
            part = media.params.get("type", OCTET_STREAM).lower()
        elif single:
            part = media.media_type
        else:
            continue
        syntax = media.params.get("transfer-syntax")
        if part in (OCTET_STREAM, "*/*", "*"):
            if syntax in (None, "*", ExplicitVRLittleEndian):
                return syntax == "*", OCTET_STREAM, not media.is_multipart
        elif syntax == stored or (syntax is None and part == "image/jpeg" and stored == JPEGBaseline8Bit):
            return True, part, not media.is_multipart
    if not ranges:
        return False, OCTET_STREAM, False
    raise not_acceptable(accept, f'multipart/related; type="{OCTET_STREAM}"; transfer-syntax=*')


async def _instance(ctx: ServerContext, study: str, series: str, instance: str) -> Resource:
    _, resources = await resolve(ctx, study, series, instance)
    return resources[0]


def _frame_part(data: bytes, number: int, syntax: str) -> tuple[bytes, dict[str, str]]:
    body, kind = raw_frame(data, number - 1)
    return body, {"Content-Type": f"{kind}; transfer-syntax={syntax}"}


async def _frame_parts(data: bytes, numbers: list[int], syntax: str) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    for number in numbers:
        yield await asyncio.to_thread(_frame_part, data, number, syntax)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frames>")
async def frames(study: str, series: str, instance: str, frames: str) -> Response:
    """WADO-RS: frames of an instance (1-based list), as multipart/related parts."""
    ctx = context()
    numbers = frame_numbers(frames)
    found = await _instance(ctx, study, series, instance)
    count = frame_count(found.main_tags.get("NumberOfFrames"))
    if max(numbers) > count:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"This instance has {count} frame(s): {frames}")
    stored = found.metadata.get(MetadataType.TRANSFER_SYNTAX)
    syntax = UID(stored) if stored else ExplicitVRLittleEndian
    as_stored, part_type, single = _frames_answer(request.headers.get("Accept"), syntax, len(numbers) == 1)
    boundary = new_boundary()
    if len(numbers) == 1:  # what viewers ask, frame after frame: the answer is one buffer
        part = await _one_frame(ctx, found, numbers[0], syntax, as_stored)
        if single:
            return Response(part[0], content_type=part[1]["Content-Type"])
        return Response(joined_parts([part], boundary), content_type=content_type(boundary, part_type))
    data, syntax = await _frames_source(ctx, found.public_id, syntax, as_stored)
    body = stream_parts(_frame_parts(data, numbers, syntax), boundary)
    return Response(body, content_type=content_type(boundary, part_type))


async def _frames_source(ctx: ServerContext, public_id: str, syntax: UID, as_stored: bool) -> tuple[bytes, UID]:
    """The file frames are cut from (decompressed unless asked as stored), and the syntax they are answered in."""
    data = await ctx.store.read_dicom(public_id)
    if not as_stored and syntax.is_encapsulated:
        return await asyncio.to_thread(transcode, data, ExplicitVRLittleEndian), ExplicitVRLittleEndian
    # native frames are answered little endian whatever the file's syntax
    return data, syntax if syntax.is_encapsulated else ExplicitVRLittleEndian


async def _one_frame(
    ctx: ServerContext, found: Resource, number: int, syntax: UID, as_stored: bool
) -> tuple[bytes, dict[str, str]]:
    """A single frame: native pixel data read alone from the file, without the rest of it (Store.read_native_frame),
    else cut from the whole file as the frames of a list are."""
    if not syntax.is_encapsulated:
        frame = await ctx.store.read_native_frame(found, number - 1)
        if frame is not None:
            return frame, {"Content-Type": f"{OCTET_STREAM}; transfer-syntax={ExplicitVRLittleEndian}"}
    data, syntax = await _frames_source(ctx, found.public_id, syntax, as_stored)
    return await asyncio.to_thread(_frame_part, data, number, syntax)


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
    accept = request.headers.get("Accept")
    ranges = parse_accept(accept)
    single = bool(ranges) and ranges[0].media_type == OCTET_STREAM  # single part (PS3.18 8.7.3.3)
    if not single:
        accepted_part(accept, OCTET_STREAM)
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
    if single:
        return Response(content, content_type=OCTET_STREAM)
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


async def _render(
    ctx: ServerContext, public_id: str, frame: int, rendering: Rendering, fmt: ImageFormat | None = None
) -> Response:
    fmt = fmt or _picture_format()
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


def _rendered_set_answer() -> tuple[ImageFormat, bool]:
    """The picture format of a rendered study or series, and whether the answer is multipart (all its frames).

    PS3.18 8.7.4: ``multipart/related; type="image/jpeg"`` (or png), ``*/*`` or no Accept header get every frame;
    a bare image/jpeg or image/png gets Orthanc's single picture.
    """
    accept = request.headers.get("Accept")
    pictures = {fmt.value: fmt for fmt in (ImageFormat.JPEG, ImageFormat.PNG)}
    ranges = parse_accept(accept)
    for media in ranges:
        if media.is_any:
            return ImageFormat.JPEG, True
        if media.is_multipart:
            part = media.params.get("type", ImageFormat.JPEG.value).lower()
            if part in ("*", "*/*", "image/*"):
                return ImageFormat.JPEG, True
            if part in pictures:
                return pictures[part], True
        elif media.media_type == "image/*":
            return ImageFormat.JPEG, False
        elif media.media_type in pictures:
            return pictures[media.media_type], False
    if not ranges:
        return ImageFormat.JPEG, True
    raise not_acceptable(accept, 'multipart/related; type="image/jpeg" or type="image/png", image/jpeg or image/png')


def _index_in_series(instance: Resource) -> float:
    """Where an instance goes in its series: IndexInSeries, else InstanceNumber, else after the numbered ones."""
    for text in (instance.metadata.get(MetadataType.INDEX_IN_SERIES), instance.main_tags.get("InstanceNumber")):
        try:
            return int(text or "")
        except ValueError:
            continue
    return float("inf")


async def _instances_in_order(ctx: ServerContext, level: ResourceType, resources: list[Resource]) -> list[Resource]:
    """The instances below the resources, series after series (as the index lists them), each series in order."""
    instances = await ctx.index.get_resources(ResourceType.INSTANCE, await instances_of(ctx, level, resources))
    series = {parent: position for position, parent in enumerate(dict.fromkeys(i.parent for i in instances))}
    # sorted() is stable: instances without a number keep the index's order
    return sorted(instances, key=lambda i: (series[i.parent], _index_in_series(i)))


async def _rendered_parts(
    ctx: ServerContext, instances: list[Resource], rendering: Rendering, fmt: ImageFormat, quality: int
) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    """Every frame of the instances rendered, one file read at a time (the request context is gone by then)."""
    for instance in instances:
        data = await ctx.store.read_dicom(instance.public_id)
        for index in range(frame_count(instance.main_tags.get("NumberOfFrames"))):
            body = await asyncio.to_thread(render, data, index, Extraction.RENDERED, rendering, fmt, quality)
            yield body, {"Content-Type": fmt.value}


@bp.get("/studies/<study>/rendered", defaults={"series": None})
@bp.get("/studies/<study>/series/<series>/rendered")
async def rendered_set(study: str, series: str | None) -> Response:
    """WADO-RS: a study or a series rendered, as multipart/related pictures or as Orthanc's single picture."""
    ctx = context()
    fmt, multipart = _rendered_set_answer()
    rendering, quality = _rendering(), _quality()
    level, resources = await resolve(ctx, study, series)
    if not multipart:
        # Orthanc's plugin: the first instance in the alphanumeric order of Orthanc ids, always the same one
        return await _render(ctx, min(await instances_of(ctx, level, resources)), 0, rendering, fmt)
    instances = await _instances_in_order(ctx, level, resources)
    boundary = new_boundary()
    body = stream_parts(_rendered_parts(ctx, instances, rendering, fmt, quality), boundary)
    return Response(body, content_type=content_type(boundary, fmt.value))


async def _representative(ctx: ServerContext, level: ResourceType, resources: list[Resource]) -> str:
    """The instance a thumbnail shows: the middle one of a series, of the first series for a study."""
    if level is ResourceType.INSTANCE:
        return resources[0].public_id
    instances = await _instances_in_order(ctx, level, resources[:1])
    first_series = [i for i in instances if i.parent == instances[0].parent]
    return first_series[len(first_series) // 2].public_id


@at_every_level(bp, "/thumbnail")
async def thumbnail(study: str, series: str | None = None, instance: str | None = None) -> Response:
    """WADO-RS: a thumbnail of a study, a series (a representative instance) or an instance."""
    ctx = context()
    level, resources = await resolve(ctx, study, series, instance)
    return await _render(ctx, await _representative(ctx, level, resources), 0, _rendering(THUMBNAIL_SIZE))
