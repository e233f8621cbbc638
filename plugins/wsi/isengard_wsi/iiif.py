"""IIIF Image API 3.0, compliance level 0, over the same pyramids: what OpenSeadragon and Mirador read.

The routes and answers are those of orthanc-wsi 2.x (its IIIF.cpp; Orthanc 1.x's plugin has no IIIF), under
/wsi/iiif/tiles/{series}: ``info.json`` lists the levels as scale factors, and a tile is asked as the region of
the full image it covers (``x,y,w,h``) with its size (``w,`` or ``w,h``), rotation 0, quality default, as JPEG.
Only levels whose size divides the full size evenly are offered (scale factors are integers in IIIF).

IIIF Presentation API 3.0 manifests (orthanc-wsi 2.x's ServeIIIFManifest), what Mirador opens: for a whole-slide
series, one Canvas of the base level's size painted by the series' image service; for any other series, one
Canvas per frame in the order of /ordered-slices (IIIF cookbook "Simple Manifest - Book"), each painted by a
single-tile image service of that frame under /wsi/iiif/frames/{instance}/{frame}, whose picture is /preview's.
orthanc-wsi 3.0 adds /wsi/iiif/frames-pyramids/{instance}/{frame}/: a manifest, info.json and tiles over the
on-the-fly pyramid of one frame (the pyramid of /wsi/frames-pyramids), served here too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from quart import Blueprint, Response, current_app, request

from isengard.dicom.imaging import Extraction, ImageFormat, Rendering, encode, frame_count, render
from isengard.errors import ErrorCode, OrthancError, unknown_resource
from isengard.model import Resource, ResourceType
from isengard.rest.common import answer, context, get_resource
from isengard.rest.modules import ordered_instances

from .pyramid import FRAME_TILE, WSI_SOP_CLASS, Level, Pyramid
from .rest import SERIES, cache
from .tiles import background, decode_pixels, is_color, is_jpeg

bp = Blueprint("wsi_iiif", __name__)

#: Configuration section and options, with orthanc-wsi's names.
SECTION = "WholeSlideImaging"
IMAGE_CONTEXT = "http://iiif.io/api/image/3/context.json"
PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
DEFAULTS = {"EnableIIIF": True, "OrthancPublicURL": "", "ForcePowersOfTwoScaleFactors": False}
SETTINGS_KEY = "isengard_wsi.iiif"


def _not_implemented(details: str) -> OrthancError:
    return OrthancError(ErrorCode.NOT_IMPLEMENTED, f"IIIF - {details}")


def _public_url() -> str:
    """Where clients reach /wsi/iiif/: OrthancPublicURL when set (behind a proxy), else the request's host."""
    base = current_app.config[SETTINGS_KEY]["OrthancPublicURL"] or request.host_url
    return base.rstrip("/") + "/wsi/iiif/"


async def _pyramid(series_id: str) -> Pyramid:
    if not SERIES.fullmatch(series_id):
        raise unknown_resource(series_id)
    return await cache().pyramid(series_id)


@bp.get("/wsi/iiif/tiles/<series_id>/info.json")
async def info(series_id: str) -> Response:
    """The image service of a whole-slide series."""
    return answer(_image_service((await _pyramid(series_id)).levels, _public_url() + "tiles/" + series_id))


def _image_service(levels: list[Level], service_id: str) -> dict[str, Any]:
    """The info.json of a pyramid: full size, tile size, and a scale factor per level whose size divides the full
    one."""
    first = levels[0]
    if any((level.tile_width, level.tile_height) != (first.tile_width,) * 2 for level in levels):
        raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "IIIF needs square tiles, the same at every level")
    powers_of_two = current_app.config[SETTINGS_KEY]["ForcePowersOfTwoScaleFactors"]
    sizes, factors, power = [], [], 1
    for level in levels:
        if first.width % level.width or first.height % level.height:
            continue
        factor = first.width // level.width
        if powers_of_two and factor != power:
            continue
        sizes.append({"width": level.width, "height": level.height})
        factors.append(factor)
        power *= 2
    return {
        "@context": IMAGE_CONTEXT,
        "height": first.height,
        "id": service_id,
        "profile": "level0",
        "protocol": "http://iiif.io/api/image",
        "sizes": sizes[::-1],  # smallest first, as OpenSeadragon >= 4.1 and Mirador >= 4 want
        "tiles": [{"height": first.tile_height, "scaleFactors": factors, "width": first.tile_width}],
        "type": "ImageService3",
        "width": first.width,
    }


def _numbers(text: str, count: int) -> list[int] | None:
    parts = text.split(",")
    if len(parts) != count or not all(part.isdigit() for part in parts):
        return None
    return [int(part) for part in parts]


def _physical_tile(levels: list[Level], level: Level) -> tuple[int, int]:
    """The size, in full-resolution pixels, that one tile of the level covers."""
    first = levels[0]
    return (
        int(np.floor(level.tile_width * first.width / level.width + 0.5)),
        int(np.floor(level.tile_height * first.height / level.height + 0.5)),
    )


def _check_picture(rotation: str, name: str) -> None:
    """Level 0 offers rotation 0, quality default, JPEG only."""
    quality, _, extension = name.rpartition(".")
    if rotation != "0":
        raise _not_implemented(f"Unsupported rotation: {rotation}")
    if quality != "default":
        raise _not_implemented(f"Unsupported quality: {quality}")
    if extension != "jpg":
        raise _not_implemented(f"Unsupported format: {extension}")


def _locate(levels: list[Level], region: str, size: str) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(level index, (tile column, row), (crop width, height)) of a region on a level's tile grid."""
    box = _numbers(region, 4)
    if box is None:
        raise _not_implemented(f"Invalid (x,y,width,height) region, found: {region}")
    crop = _numbers(size, 2) if not size.endswith(",") else _numbers(size[:-1], 1)
    if crop is None:
        raise _not_implemented(f"Invalid (width,height) crop, found: {size}")
    crop_width, crop_height = crop if len(crop) == 2 else (crop[0], crop[0])
    x, y, width, height = box
    first = levels[0]
    for index in range(len(levels)):
        level = levels[index]
        tile_width, tile_height = _physical_tile(levels, level)
        if (
            x % tile_width == 0
            and y % tile_height == 0
            and width <= tile_width
            and height <= tile_height
            and x + width <= first.width
            and y + height <= first.height
        ):
            break
    else:
        raise OrthancError(ErrorCode.BAD_REQUEST, "IIIF - Cannot locate the level of interest")
    if crop_width > level.tile_width:
        raise OrthancError(ErrorCode.BAD_REQUEST, "IIIF - Request for a cropping that is too large for the tile size")
    return index, (x // tile_width, y // tile_height), (crop_width, crop_height)


@bp.get("/wsi/iiif/tiles/<series_id>/<region>/<size>/<rotation>/<name>")
async def tile(series_id: str, region: str, size: str, rotation: str, name: str) -> Response:
    """A tile by its region of the full image, or the whole image (``full``) from the smallest level."""
    _check_picture(rotation, name)
    pyramid = await _pyramid(series_id)
    if region == "full":
        return await _full(pyramid)
    index, position, (crop_width, crop_height) = _locate(pyramid.levels, region, size)
    level = pyramid.levels[index]
    cropped = crop_width < level.tile_width or crop_height < level.tile_height
    source = level.tiles.get(position)
    if source is None:
        shape = (crop_width, crop_height) if cropped else (level.tile_width, level.tile_height)
        return _jpeg(background(*shape, is_color(pyramid, level)))
    frame = await cache().frame(pyramid, source)
    if not cropped and is_jpeg(pyramid, level):
        return Response(frame, content_type="image/jpeg")
    pixels = await asyncio.to_thread(decode_pixels, pyramid.instances[source.instance_id].pixel_module, frame)
    return _jpeg(_crop(pixels, crop_width, crop_height) if cropped else pixels)


def _crop(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    if height > pixels.shape[0]:
        raise OrthancError(ErrorCode.BAD_REQUEST, "IIIF - Asking to crop outside of the tile size")
    return pixels[:height, :width]


async def _full(pyramid: Pyramid) -> Response:
    """The smallest level as one picture, its tiles put together on the background."""
    level = pyramid.levels[-1]
    picture = background(level.width, level.height, True)
    for (column, row), source in level.tiles.items():
        frame = await cache().frame(pyramid, source)
        pixels = await asyncio.to_thread(decode_pixels, pyramid.instances[source.instance_id].pixel_module, frame)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        left, top = column * level.tile_width, row * level.tile_height
        part = pixels[: level.height - top, : level.width - left]
        picture[top : top + part.shape[0], left : left + part.shape[1]] = part
    return _jpeg(picture)


def _jpeg(pixels: np.ndarray) -> Response:
    return Response(encode(np.ascontiguousarray(pixels), ImageFormat.JPEG), content_type="image/jpeg")


def _canvas(resource_base: str, service: str, page: int, width: int, height: int) -> dict[str, Any]:
    """A Canvas painted whole by one image service (IIIF cookbook "Support Deep Viewing with Basic Use of a IIIF
    Image Service"); its ids are orthanc-wsi's, under the public URL + ``resource_base``."""
    base, service_id = _public_url() + resource_base, _public_url() + service
    target = f"{base}/canvas/p{page}"
    annotation = {
        "id": f"{base}/annotation/p{page}-image",
        "type": "Annotation",
        "motivation": "painting",
        "body": {
            "id": service_id + "/full/max/0/default.jpg",
            "type": "Image",
            "format": ImageFormat.JPEG.value,
            "height": height,
            "width": width,
            "service": [{"id": service_id, "profile": "level0", "type": "ImageService3"}],
        },
        "target": target,
    }
    return {
        "id": target,
        "type": "Canvas",
        "width": width,
        "height": height,
        "label": {"en": [""]},  # orthanc-wsi labels its canvases with an empty string
        "items": [{"id": f"{base}/page/p{page}/1", "type": "AnnotationPage", "items": [annotation]}],
    }


def _frame_size(header: Dataset) -> tuple[int, int]:
    """Columns and Rows: an instance without them (no image) has no IIIF picture, a 404 as in orthanc-wsi."""
    if not isinstance(header.get("Columns"), int) or not isinstance(header.get("Rows"), int):
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "IIIF - This instance has no image size")
    return header.Columns, header.Rows


def _manifest(resource_base: str, study: Resource, series: Resource) -> dict[str, Any]:
    """A manifest without its canvases, labelled "StudyDate - Modality - StudyDescription - SeriesDescription"."""
    tags = {**study.main_tags, **series.main_tags}
    label = " - ".join(tags.get(k, "") for k in ("StudyDate", "Modality", "StudyDescription", "SeriesDescription"))
    return {
        "@context": PRESENTATION_CONTEXT,
        "id": f"{_public_url()}{resource_base}/manifest.json",
        "type": "Manifest",
        "label": {"en": [label]},
    }


@bp.get("/wsi/iiif/series/<series_id>/manifest.json")
async def series_manifest(series_id: str) -> Response:
    """The Presentation 3 manifest of a series; whole-slide or not is decided by the SOP class of its first
    instance, as orthanc-wsi does."""
    if not SERIES.fullmatch(series_id):
        raise unknown_resource(series_id)
    series = await get_resource(ResourceType.SERIES, series_id)
    study = await get_resource(ResourceType.STUDY, series.parent or "")
    if not series.children:
        raise unknown_resource(series_id)
    header, _ = await context().store.read_header(series.children[0])
    manifest = _manifest(f"series/{series_id}", study, series)
    if str(header.get("SOPClassUID", "")).strip() == WSI_SOP_CLASS:
        first = (await _pyramid(series_id)).levels[0]
        manifest["items"] = [_canvas(series_id, "tiles/" + series_id, 1, first.width, first.height)]
        return answer(manifest)
    width, height = _frame_size(header)
    _, ordered = await ordered_instances(series_id)
    frames = [
        (instance.public_id, frame)
        for instance in ordered
        for frame in range(frame_count(instance.main_tags.get("NumberOfFrames")))
    ]
    manifest["behavior"] = ["individuals"]
    manifest["items"] = [
        _canvas(instance_id, f"frames/{instance_id}/{frame}", page, width, height)
        for page, (instance_id, frame) in enumerate(frames, start=1)
    ]
    return answer(manifest)


async def _instance(instance_id: str, frame: str) -> tuple[Resource, int]:
    """The instance and the frame number; an unknown instance or a frame number that is not digits is a 404."""
    number = _numbers(frame, 1)
    if not SERIES.fullmatch(instance_id) or number is None:
        raise unknown_resource(instance_id)
    return await get_resource(ResourceType.INSTANCE, instance_id), number[0]


@bp.get("/wsi/iiif/frames/<instance_id>/<frame>/info.json")
async def frame_info(instance_id: str, frame: str) -> Response:
    """The image service of one frame: a single tile the size of the frame, scale factor 1."""
    _, number = await _instance(instance_id, frame)
    header, _ = await context().store.read_header(instance_id)
    width, height = _frame_size(header)
    return answer(
        {
            "@context": IMAGE_CONTEXT,
            "height": height,
            "id": f"{_public_url()}frames/{instance_id}/{number}",
            "profile": "level0",
            "protocol": "http://iiif.io/api/image",
            "tiles": [{"height": height, "scaleFactors": [1], "width": width}],
            "type": "ImageService3",
            "width": width,
        }
    )


@bp.get("/wsi/iiif/frames/<instance_id>/<frame>/full/max/0/default.jpg")
async def frame_image(instance_id: str, frame: str) -> Response:
    """The frame as /instances/{id}/frames/{n}/preview gives it in JPEG (orthanc-wsi asks Orthanc for that)."""
    _, number = await _instance(instance_id, frame)
    data = await context().store.read_dicom(instance_id)
    body = await asyncio.to_thread(render, data, number, Extraction.PREVIEW, Rendering(), ImageFormat.JPEG, 90)
    return Response(body, content_type=ImageFormat.JPEG.value)


@bp.get("/wsi/iiif/frames-pyramids/<instance_id>/<frame>/manifest.json")
async def frame_pyramid_manifest(instance_id: str, frame: str) -> Response:
    """The manifest of one frame as an on-the-fly pyramid (orthanc-wsi 3.0): one Canvas of the frame's size."""
    instance, number = await _instance(instance_id, frame)
    series = await get_resource(ResourceType.SERIES, instance.parent or "")
    study = await get_resource(ResourceType.STUDY, series.parent or "")
    first = (await cache().frame_pyramid(instance_id, number)).levels[0]
    resource_base = f"frames-pyramids/{instance_id}/{number}"
    manifest = _manifest(resource_base, study, series)
    manifest["items"] = [_canvas(resource_base, resource_base, 1, first.width, first.height)]
    return answer(manifest)


@bp.get("/wsi/iiif/frames-pyramids/<instance_id>/<frame>/info.json")
async def frame_pyramid_info(instance_id: str, frame: str) -> Response:
    """The image service of a frame's on-the-fly pyramid (512x512 tiles, as /wsi/frames-pyramids lists them)."""
    _, number = await _instance(instance_id, frame)
    pyramid = await cache().frame_pyramid(instance_id, number)
    return answer(_image_service(pyramid.levels, f"{_public_url()}frames-pyramids/{instance_id}/{number}"))


@bp.get("/wsi/iiif/frames-pyramids/<instance_id>/<frame>/<region>/<size>/<rotation>/<name>")
async def frame_pyramid_tile(
    instance_id: str, frame: str, region: str, size: str, rotation: str, name: str
) -> Response:
    """A tile of a frame's pyramid by its region, as for a series (the part past the edge is white); ``full``
    is the smallest level."""
    _check_picture(rotation, name)
    _, number = await _instance(instance_id, frame)
    pyramid = await cache().frame_pyramid(instance_id, number)
    if region == "full":
        return _jpeg(pyramid.images[-1])
    index, (column, row), (crop_width, crop_height) = _locate(pyramid.levels, region, size)
    pixels = pyramid.tile(index, column, row)
    return _jpeg(_crop(pixels, crop_width, crop_height) if min(crop_width, crop_height) < FRAME_TILE else pixels)
