"""The routes of orthanc-wsi's tile server: /wsi/pyramids/{series} and /wsi/tiles/{series}/{level}/{x}/{y}.

Errors are orthanc-wsi 1.1's: an unknown series or one without levels is 404, a negative coordinate or a level
past the last is 400 "Parameter out of range", a tile past the edge of its level 400 "Bad file format".
"""

from __future__ import annotations

import asyncio
import re

from quart import Blueprint, Response, current_app

from isengard.dicom.imaging import ImageFormat, encode
from isengard.errors import ErrorCode, OrthancError, unknown_resource
from isengard.rest.common import answer

from .cache import PyramidCache
from .tiles import background_tile, decode_pixels, is_color, is_jpeg

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
    """One tile: the stored JPEG frame as it is, any other frame decoded and sent as PNG."""
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
    jpeg = is_jpeg(found, chosen)
    source = chosen.tiles.get((column, row))
    if source is None:  # a hole of a TILED_SPARSE level
        body = background_tile(chosen.tile_width, chosen.tile_height, is_color(found, chosen), jpeg)
        return Response(body, content_type="image/jpeg" if jpeg else "image/png")
    frame = await pyramids.frame(found, source)
    if jpeg:
        return Response(frame, content_type="image/jpeg")
    pixel_module = found.instances[source.instance_id].pixel_module
    png = await asyncio.to_thread(lambda: encode(decode_pixels(pixel_module, frame), ImageFormat.PNG))
    return Response(png, content_type="image/png")
