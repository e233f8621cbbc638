"""RT Dose grids as volumes in patient space, and isodose lines on a plane (marching squares).

An RT-DOSE (PS3.3 C.8.8.3) is one multi-frame image: ImagePositionPatient is the first frame's first voxel,
ImageOrientationPatient and PixelSpacing as for any image, and GridFrameOffsetVector the frames' distances along
the normal. The standard allows the offsets relative to the first frame (first value 0) or, for axial grids,
absolute z (first value = the z of ImagePositionPatient): both are the offsets minus the first one. Stored values
times DoseGridScaling are the dose in DoseUnits (GY, or RELATIVE).

The grid becomes a ``Volume`` like a series does, so sampling it on a plane is the same code as reslicing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from isengard.dicom.imaging import decode_frame, frame_count
from isengard.dicom.imaging import first_number as number
from isengard.errors import ErrorCode, OrthancError

from .geometry import Geometry, Stack, floats
from .volume import Volume

RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"


def _geometry(ds: Dataset, frames: int) -> tuple[Geometry | None, str]:
    """The grid's geometry, or None and what is missing."""
    position = floats(ds.get("ImagePositionPatient"), 3)
    orientation = floats(ds.get("ImageOrientationPatient"), 6)
    spacing = floats(ds.get("PixelSpacing"), 2)
    offsets = floats(ds.get("GridFrameOffsetVector"), frames) if frames > 1 else np.zeros(1)
    missing = [
        name
        for name, value in (
            ("ImagePositionPatient", position),
            ("ImageOrientationPatient", orientation),
            ("PixelSpacing", spacing),
            ("GridFrameOffsetVector", offsets),
        )
        if value is None
    ]
    if missing:
        return None, f"no valid {', '.join(missing)}"
    assert position is not None and orientation is not None and spacing is not None and offsets is not None
    row, column = orientation[:3] / np.linalg.norm(orientation[:3]), orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row, column)
    relative = offsets - offsets[0]
    if frames > 1 and np.any(np.diff(relative) <= 0):
        return None, "GridFrameOffsetVector is not increasing"
    geometry = Geometry(
        row=row,
        column=column,
        normal=normal / np.linalg.norm(normal),
        pixel_spacing=(float(spacing[1]), float(spacing[0])),
        origins=position + relative[:, None] * normal,
        depth=number(ds.get("SliceThickness")) or 1.0,
    )
    return geometry, ""


def dose_volume(ds: Dataset, instance_id: str) -> Volume:
    """The dose grid in DoseUnits (Gy for physical dose), as a volume; no geometry is a 409 when sampled."""
    if str(ds.get("Modality", "")).upper() != "RTDOSE" and str(ds.get("SOPClassUID", "")) != RT_DOSE:
        raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Instance {instance_id} is not an RT Dose (RTDOSE)")
    frames = frame_count(ds.get("NumberOfFrames"))
    geometry, missing = _geometry(ds, frames)
    scaling = number(ds.get("DoseGridScaling")) or 1.0
    voxels = np.stack([decode_frame(ds, k).pixels.astype(np.float32) for k in range(frames)])
    voxels *= np.float32(scaling)
    problems = [] if geometry else [{"Type": "MissingGeometry", "Details": missing}]
    high = float(voxels.max())
    return Volume(
        series_id=instance_id,
        voxels=voxels,
        stack=Stack([], geometry, problems),
        units=str(ds.get("DoseUnits", "") or "GY").upper(),
        window=(high / 2, max(high, 1e-6)),
        window_source="Computed",
        modality="RTDOSE",
        frame_of_reference=str(ds.get("FrameOfReferenceUID", "")) or None,
        value_range=(float(voxels.min()), high),
    )


def isolines(values: np.ndarray, level: float) -> np.ndarray:
    """(M, 2, 2) segments (x, y in pixels, centres at integers) where a (rows, columns) field equals ``level``.

    Marching squares: each cell of four neighbouring pixels is crossed on the edges whose ends lie on either side
    of the level, at the linearly interpolated point. Two crossings make a segment; four (a saddle) make two,
    paired so that the corners on the same side as the cell's mean value stay connected. Cells touching NaN
    (outside the grid) have no line.
    """
    above, finite = values >= level, np.isfinite(values)
    corner = lambda grid: (grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1])  # noqa: E731 tl tr br bl
    a, b, c, d = corner(above)
    fa, fb, fc, fd = corner(finite)
    rows, columns = np.nonzero(fa & fb & fc & fd & ~(a & b & c & d) & (a | b | c | d))  # only the crossed cells
    x, y = columns.astype(np.float64), rows.astype(np.float64)
    v = [values[rows, columns], values[rows, columns + 1], values[rows + 1, columns + 1], values[rows + 1, columns]]
    corners = [(v[0], x, y), (v[1], x + 1, y), (v[2], x + 1, y + 1), (v[3], x, y + 1)]
    flags, points = [], []
    for (v0, x0, y0), (v1, x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):  # top, right, ...
        crossed = (v0 >= level) != (v1 >= level)
        t = np.where(crossed, (level - v0) / np.where(crossed, v1 - v0, 1.0), 0.0)
        flags.append(crossed)
        points.append(np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], axis=-1))
    crossed = np.stack(flags)  # (4 edges, cells)
    ends = np.stack(points)  # (4 edges, cells, 2)
    count = crossed.sum(axis=0)
    pairs = np.flatnonzero(count == 2)
    first = np.argmax(crossed[:, pairs], axis=0)
    second = 3 - np.argmax(crossed[::-1, pairs], axis=0)
    segments = [np.stack([ends[first, pairs], ends[second, pairs]], axis=1)]
    saddles = np.flatnonzero(count == 4)
    if len(saddles):
        mean = sum(corner_values[saddles] for corner_values in v) / 4
        joined = (v[0][saddles] >= level) == (mean >= level)  # top-left and bottom-right corners connected
        for edges_if_joined, edges_if_not in (((0, 1), (3, 0)), ((2, 3), (1, 2))):
            e0 = np.where(joined, edges_if_joined[0], edges_if_not[0])
            e1 = np.where(joined, edges_if_joined[1], edges_if_not[1])
            segments.append(np.stack([ends[e0, saddles], ends[e1, saddles]], axis=1))
    return np.concatenate(segments).reshape(-1, 2, 2)


def describe_grid(volume: Volume) -> dict[str, Any]:
    """What format=json tells about a dose grid."""
    return {"ID": volume.series_id, "Units": volume.units, "Max": volume.value_range[1], "Size": list(volume.size)}
