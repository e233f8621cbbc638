"""What a reslice can show over the grey picture: a fused volume (PET on CT), RT structures and an RT dose.

Every layer is placed in patient space: the other volume and the dose grid are sampled at the plane's own pixel
centres (the same slab and interpolation as the picture), structures are cut by the plane. Layers are applied
bottom to top: fused colours blended at ``opacity``, the dose wash blended at its own opacity, isodose lines,
then contours, drawn with Pillow's ImageDraw on the RGB picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .colormaps import colorize
from .reslice import Plane, reslice
from .rtdose import describe_grid, isolines
from .rtstruct import Cut, Roi, cut
from .volume import Volume

#: Isodose line colours, the highest level first.
ISODOSE_COLORS = (
    (255, 0, 0),
    (255, 128, 0),
    (255, 255, 0),
    (0, 255, 0),
    (0, 255, 255),
    (0, 128, 255),
    (0, 0, 255),
    (255, 0, 255),
    (128, 0, 255),
    (255, 255, 255),
)
#: Without isodose levels, the dose wash starts at this fraction of the reference dose.
WASH_FLOOR = 0.1


@dataclass(frozen=True)
class Fusion:
    volume: Volume
    window: tuple[float, float]  # centre, width in the volume's units
    colormap: str
    opacity: float


@dataclass(frozen=True)
class Structures:
    instance_id: str
    rois: list[Roi]


@dataclass(frozen=True)
class Dose:
    volume: Volume
    levels: list[float]  # Gy (DoseUnits), as asked
    reference: float  # what a percentage is of: the prescription, else the grid's maximum
    wash: bool
    opacity: float
    colormap: str = "jet"


@dataclass(frozen=True)
class Sampling:
    """How the picture itself was sampled, which the layers repeat."""

    slab: float = 0.0
    mode: str = "mip"
    linear: bool = True


@dataclass
class Layers:
    fusion: Fusion | None = None
    structures: Structures | None = None
    dose: Dose | None = None
    line_width: int = 2
    sampling: Sampling = field(default_factory=Sampling)

    def __bool__(self) -> bool:
        return any((self.fusion, self.structures, self.dose))


def _blend(rgb: np.ndarray, colors: np.ndarray, where: np.ndarray, opacity: float) -> None:
    """``colors`` over ``rgb`` at ``opacity`` where asked, in place (arithmetic on whole arrays: fastest)."""
    rgb += (colors - rgb) * (where * np.float32(opacity))[..., None]


def thickness(base: Volume, plane: Plane, slab: float) -> float:
    """How deep a plane is (mm): a voxel's extent along its normal, or the slab when thicker."""
    geometry = base.geometry
    assert geometry is not None
    axes = np.array([geometry.row, geometry.column, geometry.normal])
    return max(float(np.abs(axes @ plane.normal) @ np.array(geometry.spacing)), slab)


def render(layers: Layers, base: Volume, plane: Plane, grey: np.ndarray | None) -> tuple[np.ndarray | None, dict]:
    """The RGB picture with the layers over ``grey`` (None: only the layers' description), and that description."""
    rgb = None if grey is None else np.repeat(grey[..., None].astype(np.float32), 3, axis=2)
    described: dict[str, Any] = {}
    sampling = layers.sampling
    if (fusion := layers.fusion) is not None:
        center, width = fusion.window
        described["Overlay"] = {
            "ID": fusion.volume.series_id,
            "Modality": fusion.volume.modality,
            "Units": fusion.volume.units,
            "Window": {"Center": center, "Width": width},
            "Colormap": fusion.colormap,
            "Opacity": fusion.opacity,
        }
        if rgb is not None:
            values = reslice(fusion.volume, plane, slab=sampling.slab, mode=sampling.mode, linear=sampling.linear)
            floor = center - width / 2
            colors = colorize((values - floor) / width, fusion.colormap)
            with np.errstate(invalid="ignore"):  # NaN outside the overlay's volume: not drawn either
                _blend(rgb, colors, values > floor, fusion.opacity)  # below the window: the picture shows through
    lines: list[tuple[tuple[int, int, int], list[np.ndarray], list[bool], list[np.ndarray]]] = []
    if (dose := layers.dose) is not None:
        values = reslice(dose.volume, plane, slab=sampling.slab, mode=sampling.mode, linear=sampling.linear)
        floor = min(dose.levels) if dose.levels else WASH_FLOOR * dose.reference
        if rgb is not None and dose.wash:
            span = max(dose.reference - floor, 1e-9)
            _blend(rgb, colorize((values - floor) / span, dose.colormap), values >= floor, dose.opacity)
        isodoses = []
        for rank, level in enumerate(sorted(dose.levels, reverse=True)):
            color = ISODOSE_COLORS[rank % len(ISODOSE_COLORS)]
            segments = isolines(values, level)
            lines.append((color, list(segments), [False] * len(segments), []))
            isodoses.append(
                {
                    "Level": level,
                    "Percent": round(100 * level / dose.reference, 3) if dose.reference > 0 else None,
                    "Color": list(color),
                    "Segments": len(segments),
                }
            )
        described["RtDose"] = {
            **describe_grid(dose.volume),
            "Reference": dose.reference,
            "Wash": dose.wash,
            "Opacity": dose.opacity,
            "Isodoses": isodoses,
        }
    if (structures := layers.structures) is not None:
        depth = thickness(base, plane, sampling.slab)
        rois = []
        for roi in structures.rois:
            found: Cut = cut(roi, plane, depth)
            lines.append((roi.color, found.polygons, found.closed, found.points))
            rois.append(
                {
                    "Number": roi.number,
                    "Name": roi.name,
                    "Color": list(roi.color),
                    "Polygons": [np.round(p, 2).tolist() for p in found.polygons],
                    "Points": [np.round(p, 2).tolist() for p in found.points],
                    "Segments": [np.round(s, 2).tolist() for s in found.segments],
                }
            )
        described["RtStruct"] = {"ID": structures.instance_id, "ROIs": rois}
    if rgb is None:
        return None, described
    picture = Image.fromarray(np.floor(np.clip(rgb, 0, 255) + 0.5).astype(np.uint8), "RGB")
    _draw(picture, lines, layers.line_width)
    return np.asarray(picture), described


def _draw(
    picture: Image.Image,
    lines: list[tuple[tuple[int, int, int], list[np.ndarray], list[bool], list[np.ndarray]]],
    width: int,
) -> None:
    """Polylines (closed ones closed) and dots, rounded to the pixel whose centre is nearest."""
    draw = ImageDraw.Draw(picture)
    for color, polylines, closed, points in lines:
        for polyline, close in zip(polylines, closed, strict=True):
            xy = [tuple(p) for p in np.floor(polyline + 0.5).astype(int).tolist()]
            if close and len(xy) > 2:
                xy.append(xy[0])
            if len(xy) == 1:
                draw.point(xy, fill=color)
            else:
                draw.line(xy, fill=color, width=width)
        radius = max(1, width // 2)
        for x, y in np.floor(np.array(points).reshape(-1, 2) + 0.5).astype(int).tolist():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
