"""IIIF Image API 3.0, compliance level 0, over the same pyramids: what OpenSeadragon and Mirador read.

The routes and answers are those of orthanc-wsi 2.x (its IIIF.cpp; Orthanc 1.x's plugin has no IIIF), under
/wsi/iiif/tiles/{series}: ``info.json`` lists the levels as scale factors, and a tile is asked as the region of
the full image it covers (``x,y,w,h``) with its size (``w,`` or ``w,h``), rotation 0, quality default, as JPEG.
Only levels whose size divides the full size evenly are offered (scale factors are integers in IIIF).
"""

from __future__ import annotations

import asyncio

import numpy as np
from quart import Blueprint, Response, current_app, request

from isengard.dicom.imaging import ImageFormat, encode
from isengard.errors import ErrorCode, OrthancError, unknown_resource
from isengard.rest.common import answer

from .pyramid import Level, Pyramid
from .rest import SERIES, cache
from .tiles import background, decode_pixels, is_color, is_jpeg

bp = Blueprint("wsi_iiif", __name__)

#: Configuration section and options, with orthanc-wsi's names.
SECTION = "WholeSlideImaging"
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
    """The image service: full size, tile size, and a scale factor per level whose size divides the full one."""
    pyramid = await _pyramid(series_id)
    first = pyramid.levels[0]
    if any((level.tile_width, level.tile_height) != (first.tile_width,) * 2 for level in pyramid.levels):
        raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "IIIF needs square tiles, the same at every level")
    powers_of_two = current_app.config[SETTINGS_KEY]["ForcePowersOfTwoScaleFactors"]
    sizes, factors, power = [], [], 1
    for level in pyramid.levels:
        if first.width % level.width or first.height % level.height:
            continue
        factor = first.width // level.width
        if powers_of_two and factor != power:
            continue
        sizes.append({"width": level.width, "height": level.height})
        factors.append(factor)
        power *= 2
    return answer(
        {
            "@context": "http://iiif.io/api/image/3/context.json",
            "height": first.height,
            "id": _public_url() + "tiles/" + series_id,
            "profile": "level0",
            "protocol": "http://iiif.io/api/image",
            "sizes": sizes[::-1],  # smallest first, as OpenSeadragon >= 4.1 and Mirador >= 4 want
            "tiles": [{"height": first.tile_height, "scaleFactors": factors, "width": first.tile_width}],
            "type": "ImageService3",
            "width": first.width,
        }
    )


def _numbers(text: str, count: int) -> list[int] | None:
    parts = text.split(",")
    if len(parts) != count or not all(part.isdigit() for part in parts):
        return None
    return [int(part) for part in parts]


def _physical_tile(pyramid: Pyramid, level: Level) -> tuple[int, int]:
    """The size, in full-resolution pixels, that one tile of the level covers."""
    first = pyramid.levels[0]
    return (
        int(np.floor(level.tile_width * first.width / level.width + 0.5)),
        int(np.floor(level.tile_height * first.height / level.height + 0.5)),
    )


@bp.get("/wsi/iiif/tiles/<series_id>/<region>/<size>/<rotation>/<name>")
async def tile(series_id: str, region: str, size: str, rotation: str, name: str) -> Response:
    """A tile by its region of the full image, or the whole image (``full``) from the smallest level."""
    quality, _, extension = name.rpartition(".")
    if rotation != "0":
        raise _not_implemented(f"Unsupported rotation: {rotation}")
    if quality != "default":
        raise _not_implemented(f"Unsupported quality: {quality}")
    if extension != "jpg":
        raise _not_implemented(f"Unsupported format: {extension}")
    pyramid = await _pyramid(series_id)
    if region == "full":
        return await _full(pyramid)
    box = _numbers(region, 4)
    if box is None:
        raise _not_implemented(f"Invalid (x,y,width,height) region, found: {region}")
    crop = _numbers(size, 2) if not size.endswith(",") else _numbers(size[:-1], 1)
    if crop is None:
        raise _not_implemented(f"Invalid (width,height) crop, found: {size}")
    crop_width, crop_height = crop if len(crop) == 2 else (crop[0], crop[0])
    x, y, width, height = box
    first = pyramid.levels[0]
    for level in pyramid.levels:
        tile_width, tile_height = _physical_tile(pyramid, level)
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
    cropped = crop_width < level.tile_width or crop_height < level.tile_height
    source = level.tiles.get((x // tile_width, y // tile_height))
    if source is None:
        shape = (crop_width, crop_height) if cropped else (level.tile_width, level.tile_height)
        return _jpeg(background(*shape, is_color(pyramid, level)))
    frame = await cache().frame(pyramid, source)
    if not cropped and is_jpeg(pyramid, level):
        return Response(frame, content_type="image/jpeg")
    pixels = await asyncio.to_thread(decode_pixels, pyramid.instances[source.instance_id].pixel_module, frame)
    if crop_height > pixels.shape[0]:
        raise OrthancError(ErrorCode.BAD_REQUEST, "IIIF - Asking to crop outside of the tile size")
    return _jpeg(pixels[:crop_height, :crop_width] if cropped else pixels)


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
