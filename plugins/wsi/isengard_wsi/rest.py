"""The routes of orthanc-wsi's tile server: /wsi/pyramids/{series} and /wsi/tiles/{series}/{level}/{x}/{y}.

Errors are orthanc-wsi 1.1's: an unknown series or one without levels is 404, a negative coordinate or a level
past the last is 400 "Parameter out of range", a tile past the edge of its level 400 "Bad file format". A tile
whose Accept header names no image type Isengard encodes is a 406 (orthanc-wsi 2.x answers it without a body;
Isengard sends Orthanc's JSON error, as its other routes do).
"""

from __future__ import annotations

import asyncio
import re

from quart import Blueprint, Response, current_app, request

from isengard.errors import ErrorCode, OrthancError, unknown_resource
from isengard.rest.common import answer

from .cache import PyramidCache
from .tiles import JPEG, PNG, background_tile, decode_pixels, encode_tile, is_color, is_jpeg, negotiate

bp = Blueprint("wsi", __name__)

APP_KEY = "isengard_wsi.cache"

#: orthanc-wsi's route patterns: anything else under /wsi/tiles is a 404 "Unknown resource".
SERIES = re.compile(r"[0-9a-f-]+")
_COORDINATE = re.compile(r"-?[0-9]+")


def cache() -> PyramidCache:
    return current_app.config[APP_KEY]


@bp.get("/wsi/pyramids/<series_id>")
async def pyramid(series_id: str) -> Response:
    """The levels of the series: sizes, tile sizes and tile counts, the largest level first."""
    if not SERIES.fullmatch(series_id):
        raise unknown_resource(series_id)
    return answer((await cache().pyramid(series_id)).to_json())


@bp.get("/wsi/tiles/<series_id>/<level>/<x>/<y>")
async def tile(series_id: str, level: str, x: str, y: str) -> Response:
    """One tile: by default the stored JPEG frame as it is, any other frame decoded and sent as PNG; the Accept
    header can ask for JPEG, PNG or JPEG 2000 instead (orthanc-wsi 2.x), the frame then decoded and encoded."""
    if not SERIES.fullmatch(series_id) or not all(_COORDINATE.fullmatch(v) for v in (level, x, y)):
        raise unknown_resource(series_id)
    index, column, row = int(level), int(x), int(y)
    if min(index, column, row) < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Negative level or tile coordinate")
    pyramids = cache()
    found = await pyramids.pyramid(series_id)
    chosen = found.level(index)
    columns, rows = chosen.tiles_count
    if column >= columns or row >= rows:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Level {index} has {columns}x{rows} tiles")
    stored = JPEG if is_jpeg(found, chosen) else PNG
    mime = negotiate(request.headers.get("Accept"), stored)
    source = chosen.tiles.get((column, row))
    if source is None:  # a hole of a TILED_SPARSE level
        body = background_tile(chosen.tile_width, chosen.tile_height, is_color(found, chosen), mime)
        return Response(body, content_type=mime)
    frame = await pyramids.frame(found, source)
    if mime == stored == JPEG:
        return Response(frame, content_type=mime)
    pixel_module = found.instances[source.instance_id].pixel_module
    body = await asyncio.to_thread(lambda: encode_tile(decode_pixels(pixel_module, frame), mime))
    return Response(body, content_type=mime)


def _numbers(*values: str) -> list[int]:
    """Path numbers as orthanc-wsi's routes take them: digits and "-" (else 404); negative ones are a 400."""
    if not all(_COORDINATE.fullmatch(v) for v in values):
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "Unknown resource")
    numbers = [int(v) for v in values]
    if min(numbers) < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Negative frame, level or tile coordinate")
    return numbers


@bp.get("/wsi/frames-pyramids/<instance_id>/<frame>")
async def frame_pyramid(instance_id: str, frame: str) -> Response:
    """The on-the-fly pyramid of one frame of any instance (orthanc-wsi 2.x): its levels, as for a series."""
    if not SERIES.fullmatch(instance_id):
        raise unknown_resource(instance_id)
    (number,) = _numbers(frame)
    return answer((await cache().frame_pyramid(instance_id, number)).to_json())


@bp.get("/wsi/frames-tiles/<instance_id>/<frame>/<level>/<x>/<y>")
async def frame_tile(instance_id: str, frame: str, level: str, x: str, y: str) -> Response:
    """A 512x512 tile of a frame's pyramid, PNG unless the Accept header asks for JPEG or JPEG 2000; past the
    edge of the level, the background."""
    if not SERIES.fullmatch(instance_id):
        raise unknown_resource(instance_id)
    number, index, column, row = _numbers(frame, level, x, y)
    pixels = (await cache().frame_pyramid(instance_id, number)).tile(index, column, row)
    mime = negotiate(request.headers.get("Accept"), PNG)
    body = await asyncio.to_thread(encode_tile, pixels, mime)
    return Response(body, content_type=mime)
