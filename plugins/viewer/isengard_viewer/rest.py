"""/viewer/api: a series as a volume, its reslices as pictures or geometry, and the value at a point; layers
over a reslice (another volume fused, RT structures, RT dose) and an RT Structure Set's contours as JSON.

Errors are Orthanc's JSON bodies: 404 for an unknown series, 400 for a bad argument, 409 when the series cannot do
what is asked (no geometry, a single slice, a layer in another frame of reference), 415 when its pixels are not
grey levels.

A series whose volume is not loaded yet is described from its headers (provisionally from the index and one
header when that is safe), and a plane lying in one of its slices is
answered from that slice's file while the volume loads in the background: the first picture of a long series does
not wait for all its files (docs/viewer.md, "Volume").
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from functools import partial

import numpy as np
from pydicom.dataset import Dataset
from quart import Blueprint, Quart, Response, current_app, request

from isengard.dicom.imaging import ImageFormat, encode, npy_file, open_dataset
from isengard.errors import ErrorCode, OrthancError
from isengard.model import Resource, ResourceType
from isengard.rest.common import answer, context, flag, get_resource, int_arg

from .colormaps import COLORMAPS
from .layers import Dose, Fusion, Layers, Sampling, Structures, render
from .reslice import (
    PLANES,
    PRESETS,
    Plane,
    PlaneRequest,
    make_plane,
    on_slice,
    require_geometry,
    reslice,
    reslice_slice,
    sample,
    windowed,
)
from .rtdose import dose_volume
from .rtstruct import structure_set
from .settings import APP_KEY, ViewerSettings
from .volume import (
    HeaderMismatch,
    Volume,
    VolumeCache,
    VolumeHeader,
    decode_slice,
    prefetch_volume,
    series_exact_header,
    series_header,
    series_volume,
)

bp = Blueprint("viewer", __name__)
MODES = ("mip", "minip", "mean")
FORMATS = ("png", "jpeg", "json", "npy")
LAYERS = ("overlay", "rtstruct", "rtdose")


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


async def _volume(series: Resource | str) -> Volume:
    """The volume of a series (read from the index first when given by id: an unknown one is a 404)."""
    if isinstance(series, str):
        series = await get_resource(ResourceType.SERIES, series)
    settings, cache = current_app.config[APP_KEY]
    return await series_volume(context(), cache, series, settings.threads)


async def _header(series: Resource) -> VolumeHeader:
    """The series' volume if it is loaded, else its headers; the volume when the headers lack what is asked:
    the default window of files that have none is computed from all the values."""
    header = await series_header(context(), current_app.config[APP_KEY][1], series)
    if header.window is None and not isinstance(header, Volume):
        return await _volume(series)
    return header


def _window(volume: VolumeHeader, name: str = "window") -> tuple[float, float]:
    """``window=C,W`` (or another argument's name), else ``preset=NAME``, else the volume's default window."""
    given = _numbers(name, 2)
    if given is not None:
        center, width = (float(v) for v in given)
    elif name == "window" and "preset" in request.args:
        preset = request.args["preset"].lower()
        if preset not in PRESETS:
            raise _bad(f"unknown preset {preset!r}: {', '.join(PRESETS)}")
        center, width = PRESETS[preset]
    else:
        assert volume.window is not None  # see _header
        center, width = volume.window
    if width <= 0:
        raise _bad(f"the width of {name!r} must be positive")
    return center, width


def _fraction(name: str, default: float) -> float:
    value = _number(name)
    if value is None:
        return default
    if not 0 <= value <= 1:
        raise _bad(f"argument {name!r} must be between 0 and 1")
    return value


def _integers(name: str) -> set[int] | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return {int(part) for part in raw.split(",")}
    except ValueError:
        raise _bad(f"argument {name!r} must be comma-separated integers") from None


def _levels(reference: float) -> list[float]:
    """``isodoses=10,20,30`` in Gy, or ``95%`` of the reference dose."""
    levels = []
    for part in filter(None, request.args.get("isodoses", "").split(",")):
        percent = part.strip().endswith("%")
        try:
            value = float(part.strip().rstrip("%"))
        except ValueError:
            raise _bad("argument 'isodoses' must be doses in Gy or percentages (95%)") from None
        if not math.isfinite(value) or value <= 0:
            raise _bad("isodose levels must be positive")
        levels.append(value * reference / 100 if percent else value)
    return levels


def _same_space(volume: Volume, other: str | None, what: str) -> None:
    """A layer in another frame of reference (or without one) cannot be placed on the series: 409."""
    if not volume.frame_of_reference or other != volume.frame_of_reference:
        raise OrthancError(
            ErrorCode.INCOMPATIBLE_IMAGE_FORMAT,
            f"{what} is in the frame of reference {other}, series {volume.series_id} in "
            f"{volume.frame_of_reference}: not the same patient space",
            http_status=409,
        )


async def _dataset(instance_id: str) -> Dataset:
    await get_resource(ResourceType.INSTANCE, instance_id)
    return await asyncio.to_thread(open_dataset, await context().store.read_dicom(instance_id))


async def _dose(instance_id: str) -> Volume:
    """An RT Dose grid as a volume, kept in the volume cache (an instance does not change)."""
    _, cache = current_app.config[APP_KEY]

    async def load() -> Volume:
        return await asyncio.to_thread(dose_volume, await _dataset(instance_id), instance_id)

    return await cache.get((instance_id, "RTDOSE"), load)


async def _layers(volume: Volume, sampling: Sampling) -> Layers:
    """The layers the arguments ask for, each checked to be in the series' frame of reference."""
    width = int_arg("lineWidth", 2) or 2
    if not 1 <= width <= 4:
        raise _bad("argument 'lineWidth' must be between 1 and 4")
    layers = Layers(line_width=width, sampling=sampling)
    if overlay := request.args.get("overlay"):
        other = await _volume(overlay)
        require_geometry(other)
        _same_space(volume, other.frame_of_reference, f"Series {overlay}")
        colormap = _choice("colormap", COLORMAPS, "hot")
        layers.fusion = Fusion(other, _window(other, "overlayWindow"), colormap, _fraction("opacity", 0.5))
    if instance_id := request.args.get("rtstruct"):
        rois = await asyncio.to_thread(structure_set, await _dataset(instance_id), instance_id)
        wanted = _integers("rois")
        if wanted is not None:
            unknown = wanted - {roi.number for roi in rois}
            if unknown:
                raise _bad(f"no ROI numbered {', '.join(map(str, sorted(unknown)))} in {instance_id}")
            rois = [roi for roi in rois if roi.number in wanted]
        for roi in rois:
            if roi.frame_of_reference:
                _same_space(volume, roi.frame_of_reference, f"ROI {roi.number} ({roi.name})")
        layers.structures = Structures(instance_id, rois)
    if instance_id := request.args.get("rtdose"):
        dose = await _dose(instance_id)
        require_geometry(dose)
        _same_space(volume, dose.frame_of_reference, f"RT Dose {instance_id}")
        reference = _number("prescription") or dose.value_range[1]
        if reference <= 0:
            raise _bad("the reference dose (argument 'prescription', else the grid's maximum) must be positive")
        layers.dose = Dose(dose, _levels(reference), reference, flag("dosewash"), _fraction("doseOpacity", 0.4))
    return layers


@bp.get("/viewer/api/series/<series_id>/volume")
async def volume_info(series_id: str) -> Response:
    """Size, spacing, origin and directions of the volume, its units, default window and problems; from the headers
    alone (``Range`` null) while a volume of ``ProgressiveSize`` or more is not loaded."""
    series = await get_resource(ResourceType.SERIES, series_id)
    settings, _ = current_app.config[APP_KEY]
    header = await _header(series)
    if not isinstance(header, Volume) and header.nbytes < settings.progressive_bytes:
        header = await _volume(series)
    return answer(header.describe())


@bp.get("/viewer/api/cache")
async def cache_status() -> Response:
    """The volumes in memory, those being loaded, and how many loads there have been."""
    return answer(current_app.config[APP_KEY][1].describe())


def _body(
    values: np.ndarray,
    image_format: ImageFormat | None,
    window: tuple[float, float],
    quality: int,
    drawn: tuple[Layers, Volume, Plane] | None = None,
) -> bytes:
    """The answer to a plane's values: .npy (no ``image_format``), or the picture windowed, with the layers
    ``drawn`` on it, encoded. Blocking: run in the worker thread that computed the values, one hop per request."""
    if image_format is None:
        return npy_file(values, compress=False)
    picture = windowed(values, *window)
    if drawn is not None:
        picture = render(*drawn, picture)[0]
    return encode(picture, image_format, quality)


async def _from_slice(
    series: Resource, header: VolumeHeader, slot: int, plane: Plane, linear: bool, body: Callable[[np.ndarray], bytes]
) -> bytes:
    """The answer to a plane lying in one slice of a series whose volume is not loaded: that slice decoded from its
    file, sampled and made into the ``body`` in one worker thread; the volume is then loaded in the background,
    once."""
    settings, cache = current_app.config[APP_KEY]
    data = await context().store.read_dicom(header.stack.frames[slot].instance_id)

    def compute() -> bytes:
        return body(reslice_slice(header, decode_slice(header, slot, data), slot, plane, linear=linear))

    answered = await asyncio.to_thread(compute)
    prefetch_volume(context(), cache, series, header, settings.threads)
    return answered


@bp.get("/viewer/api/series/<series_id>/reslice/<plane>")
async def reslice_picture(series_id: str, plane: str) -> Response:
    """One plane through the volume: PNG or JPEG windowed (RGB with layers), JSON geometry (with the layers'
    description), or the float32 values as .npy (the series' only)."""
    series = await get_resource(ResourceType.SERIES, series_id)  # a 404 before any argument is checked
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
    layered = fmt != "npy" and any(request.args.get(name) for name in LAYERS)
    header = await _volume(series) if layered else await _header(series)
    window = _window(header)
    geometry = make_plane(header, wanted)
    if fmt == "json" and not layered:
        return answer({**geometry.describe(), "Plane": plane, "Units": header.units})
    image_format = None if fmt == "npy" else ImageFormat.PNG if fmt == "png" else ImageFormat.JPEG
    content_type = "application/octet-stream" if image_format is None else image_format.value
    slot = None if isinstance(header, Volume) or slab else on_slice(header, geometry)
    if slot is not None:
        body = partial(_body, image_format=image_format, window=window, quality=quality)
        try:
            return Response(await _from_slice(series, header, slot, geometry, linear, body), content_type=content_type)
        except HeaderMismatch:
            # The slice's file is not what the index and one header said: every header is read, replaces the
            # provisional header, and answers this request again.
            await series_exact_header(context(), current_app.config[APP_KEY][1], series)
            return await reslice_picture(series_id, plane)
    volume = header if isinstance(header, Volume) else await _volume(series)
    layers = await _layers(volume, Sampling(slab, mode, linear)) if layered else Layers()
    if fmt == "json":
        described = {**geometry.describe(), "Plane": plane, "Units": volume.units}
        described["Layers"] = (await asyncio.to_thread(render, layers, volume, geometry, None))[1]
        return answer(described)

    def compute() -> bytes:
        values = reslice(volume, geometry, slab=slab, mode=mode, linear=linear)
        return _body(values, image_format, window, quality, (layers, volume, geometry) if layers else None)

    return Response(await asyncio.to_thread(compute), content_type=content_type)


@bp.get("/viewer/api/series/<series_id>/value")
async def value_at(series_id: str) -> Response:
    """The value at a patient point (trilinear), with the nearest voxel's index; 400 outside the volume."""
    series = await get_resource(ResourceType.SERIES, series_id)  # a 404 before any argument is checked
    point = [_number(axis) for axis in "xyz"]
    if any(v is None for v in point):
        raise _bad("arguments 'x', 'y' and 'z' (patient coordinates in mm) are required")
    volume = await _volume(series)
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


@bp.get("/viewer/api/instances/<instance_id>/rtstruct")
async def rtstruct_contours(instance_id: str) -> Response:
    """The ROIs of an RT Structure Set (number, name, colour, frame of reference) and their contours in mm."""
    ds = await _dataset(instance_id)
    rois = await asyncio.to_thread(structure_set, ds, instance_id)
    return answer(
        {
            "ID": instance_id,
            "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
            "StructureSetLabel": str(ds.get("StructureSetLabel", "")),
            "ROIs": [roi.describe(contours=True) for roi in rois],
        }
    )


def install(app: Quart, settings: ViewerSettings) -> None:
    """Register the routes with a fresh cache sized by the settings."""
    app.config[APP_KEY] = (settings, VolumeCache(settings.cache_bytes))
    app.register_blueprint(bp)
