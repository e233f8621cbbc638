"""/viewer/api: a series as a volume, its reslices as pictures or geometry, and the value at a point.

Errors are Orthanc's JSON bodies: 404 for an unknown series, 400 for a bad argument, 409 when the series cannot do
what is asked (no geometry, a single slice), 415 when its pixels are not grey levels.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
from quart import Blueprint, Quart, Response, current_app, request

from isengard.dicom.imaging import ImageFormat, encode, npy_file
from isengard.errors import ErrorCode, OrthancError, unknown_resource
from isengard.model import ResourceType
from isengard.rest.common import answer, context, int_arg

from .reslice import PLANES, PRESETS, PlaneRequest, make_plane, require_geometry, reslice, sample, windowed
from .settings import APP_KEY, ViewerSettings
from .volume import Volume, VolumeCache, series_volume

bp = Blueprint("viewer", __name__)
MODES = ("mip", "minip", "mean")
FORMATS = ("png", "jpeg", "json", "npy")


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, details)


def _numbers(name: str, count: int) -> np.ndarray | None:
    """``count`` comma-separated finite numbers, or None when the argument is absent."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        values = np.array([float(part) for part in raw.split(",")], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if len(values) != count or not np.all(np.isfinite(values)):
        raise _bad(f"argument {name!r} must be {count} comma-separated number(s)")
    return values


def _number(name: str) -> float | None:
    values = _numbers(name, 1)
    return None if values is None else float(values[0])


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.args.get(name, default).lower()
    if value not in choices:
        raise _bad(f"argument {name!r} must be one of {', '.join(choices)}")
    return value


async def _require_series(series_id: str) -> None:
    """An unknown series is a 404 before any argument is checked, as on every route of the REST API."""
    if not await context().index.get_resources(ResourceType.SERIES, [series_id]):
        raise unknown_resource(series_id)


async def _volume(series_id: str) -> Volume:
    settings, cache = current_app.config[APP_KEY]
    return await series_volume(context(), cache, series_id, settings.threads)


def _window(volume: Volume) -> tuple[float, float]:
    """``window=C,W``, else ``preset=NAME``, else the volume's default window."""
    given = _numbers("window", 2)
    if given is not None:
        center, width = (float(v) for v in given)
    elif "preset" in request.args:
        name = request.args["preset"].lower()
        if name not in PRESETS:
            raise _bad(f"unknown preset {name!r}: {', '.join(PRESETS)}")
        center, width = PRESETS[name]
    else:
        center, width = volume.window
    if width <= 0:
        raise _bad("the width of the window must be positive")
    return center, width


@bp.get("/viewer/api/series/<series_id>/volume")
async def volume_info(series_id: str) -> Response:
    """Size, spacing, origin and directions of the volume, its units, default window and problems."""
    return answer((await _volume(series_id)).describe())


@bp.get("/viewer/api/series/<series_id>/reslice/<plane>")
async def reslice_picture(series_id: str, plane: str) -> Response:
    """One plane through the volume: PNG or JPEG windowed, JSON geometry, or the float32 values as .npy."""
    await _require_series(series_id)
    if plane not in PLANES:
        raise _bad(f"unknown plane {plane!r}: {', '.join(PLANES)}")
    fmt = _choice("format", FORMATS, "png")
    mode = _choice("mode", MODES, "mip")
    linear = _choice("interpolation", ("linear", "nearest"), "linear") == "linear"
    slab = _number("slab") or 0.0
    if slab < 0:
        raise _bad("argument 'slab' must not be negative")
    quality = int_arg("quality", 90) or 90
    if not 1 <= quality <= 100:
        raise _bad("argument 'quality' must be between 1 and 100")
    wanted = PlaneRequest(
        name=plane,
        position=_number("position"),
        index=int_arg("index"),
        spacing=_number("spacing"),
        normal=_numbers("normal", 3),
        up=_numbers("up", 3),
        center=_numbers("center", 3),
    )
    volume = await _volume(series_id)
    window = _window(volume)
    geometry = make_plane(volume, wanted)
    if fmt == "json":
        return answer({**geometry.describe(), "Plane": plane, "Units": volume.units})
    values = await asyncio.to_thread(reslice, volume, geometry, slab=slab, mode=mode, linear=linear)
    if fmt == "npy":
        return Response(
            await asyncio.to_thread(npy_file, values, compress=False), content_type="application/octet-stream"
        )
    picture = windowed(values, *window)
    image_format = ImageFormat.PNG if fmt == "png" else ImageFormat.JPEG
    body = await asyncio.to_thread(encode, picture, image_format, quality)
    return Response(body, content_type=image_format.value)


@bp.get("/viewer/api/series/<series_id>/value")
async def value_at(series_id: str) -> Response:
    """The value at a patient point (trilinear), with the nearest voxel's index; 400 outside the volume."""
    await _require_series(series_id)
    point = [_number(axis) for axis in "xyz"]
    if any(v is None for v in point):
        raise _bad("arguments 'x', 'y' and 'z' (patient coordinates in mm) are required")
    volume = await _volume(series_id)
    geometry = require_geometry(volume)
    points = np.array([point], dtype=np.float64)
    values, inside = sample(volume, points, linear=True)
    if not inside[0]:
        raise _bad(f"the point {point} is outside the volume")
    continuous = geometry.to_index(points)[0]
    return answer(
        {
            "Value": float(values[0]),
            "Units": volume.units,
            "Index": [math.floor(v + 0.5) for v in continuous],
            "ContinuousIndex": continuous.tolist(),
            "Point": point,
        }
    )


def install(app: Quart, settings: ViewerSettings) -> None:
    """Register the routes with a fresh cache sized by the settings."""
    app.config[APP_KEY] = (settings, VolumeCache(settings.cache_bytes))
    app.register_blueprint(bp)
