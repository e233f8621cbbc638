"""Planes through a volume, sampled into pictures: MPR, oblique planes and thick slabs (MIP, MinIP, mean).

Conventions (patient coordinates are DICOM's LPS: +x towards the patient's left, +y posterior, +z superior):

- axial, coronal and sagittal planes lie on the volume's own axes: the plane normal is the volume axis nearest
  +z (axial), +y (coronal) or +x (sagittal), signed towards it, and ``position`` is measured along that normal
  (for an axial stack, the z coordinate). The picture is shown as radiologists read it: axial and coronal with the
  patient's left on the image's right, axial with anterior at the top, coronal and sagittal with superior at the
  top, sagittal with anterior on the left.
- an oblique plane is given by its ``normal``, an ``up`` direction (superior by default; anterior when the normal
  is mostly along z) and a ``center``; its column direction (image down) is -up made perpendicular to the normal,
  its row direction (image right) column x normal.
- a plane covers the whole volume edge to edge (voxels are the size of their spacing, centred on their position),
  with square pixels of ``spacing`` mm, by default the smallest PixelSpacing; pixel (i, j) is at
  ``origin + i * spacing * row + j * spacing * column``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from isengard.errors import ErrorCode, OrthancError

from .geometry import Geometry
from .volume import Volume, VolumeHeader

#: Window presets (centre, width) in HU, as radiology viewers name them.
PRESETS = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}
#: (normal, image right, image down) of each named plane, as patient axes (0 x, 1 y, 2 z) and signs.
_NAMED = {
    "axial": ((2, 1), (0, 1), (1, 1)),
    "coronal": ((1, 1), (0, 1), (2, -1)),
    "sagittal": ((0, 1), (1, 1), (2, -1)),
}
PLANES = (*_NAMED, "oblique")
#: Largest picture a reslice may have, in pixels.
MAX_PIXELS = 1 << 24
#: A plane parallel to the slices and this close to one (mm along the normal) is that slice: positions sent with
#: three decimals (the browser's) still fall on it.
ON_SLICE = 1e-3


def _out_of_range(details: str) -> OrthancError:
    return OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, details)


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    length = float(np.linalg.norm(vector))
    if length < 1e-9:
        raise _out_of_range(f"argument {name!r} must not be a null vector")
    return vector / length


@dataclass(frozen=True)
class Plane:
    """A grid of pixels in patient space."""

    origin: np.ndarray  # centre of the top-left pixel
    row: np.ndarray  # image right
    column: np.ndarray  # image down
    normal: np.ndarray  # what ``position`` is measured along: row x column, or its opposite (sagittal)
    spacing: float
    width: int
    height: int

    def points(self, shift: float = 0.0) -> np.ndarray:
        """(height * width, 3) pixel centres, moved ``shift`` mm along the normal."""
        i = np.arange(self.width) * self.spacing
        j = np.arange(self.height) * self.spacing
        start = self.origin + shift * self.normal
        grid = start + j[:, None, None] * self.column + i[None, :, None] * self.row
        return grid.reshape(-1, 3)

    def describe(self) -> dict[str, Any]:
        center = self.origin + ((self.width - 1) * self.row + (self.height - 1) * self.column) * self.spacing / 2
        return {
            "Origin": self.origin.tolist(),
            "RowDirection": self.row.tolist(),
            "ColumnDirection": self.column.tolist(),
            "Normal": self.normal.tolist(),
            "PixelSpacing": self.spacing,
            "Size": [self.width, self.height],
            "Center": center.tolist(),
            "Position": float(center @ self.normal),
        }


def _axes(geometry: Geometry) -> np.ndarray:
    return np.array([geometry.row, geometry.column, geometry.normal])


def _volume_axis_of(geometry: Geometry) -> dict[int, int]:
    """For each patient axis, the volume axis nearest it (a one-to-one match maximising the alignment)."""
    alignment = np.abs(_axes(geometry))  # [volume axis, patient axis]
    best = max(itertools.permutations(range(3)), key=lambda p: sum(alignment[p[a], a] for a in range(3)))
    return {patient: best[patient] for patient in range(3)}


def _signed_axis(geometry: Geometry, patient: int, sign: int) -> tuple[int, np.ndarray]:
    axis = _volume_axis_of(geometry)[patient]
    vector = _axes(geometry)[axis]
    return axis, vector if vector[patient] * sign >= 0 else -vector


def _index_corners(size: tuple[int, int, int]) -> np.ndarray:
    """The eight corners of the volume's edges, as continuous voxel indices."""
    return np.array(list(itertools.product(*((-0.5, n - 0.5) for n in size))), dtype=np.float64)


def center_of(volume: VolumeHeader) -> np.ndarray:
    geometry = volume.geometry
    assert geometry is not None
    return geometry.to_patient(np.array([(n - 1) / 2 for n in volume.size]))[0]


def _fit(
    volume: VolumeHeader, through: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray], spacing: float
) -> Plane:
    """The plane through ``through`` along (row, column, normal) axes, large enough for the whole volume."""
    row, column, normal = axes
    geometry = volume.geometry
    assert geometry is not None
    corners = geometry.to_patient(_index_corners(volume.size)) - through
    extents = []
    for direction in (row, column):
        along = corners @ direction
        low, high = float(along.min()), float(along.max())
        count = max(1, math.floor((high - low) / spacing + 0.5))
        extents.append((count, (low + high) / 2 - (count - 1) * spacing / 2))
    (width, start_row), (height, start_column) = extents
    if width * height > MAX_PIXELS:
        raise _out_of_range(f"A reslice of {width}x{height} pixels is too large: choose a larger spacing")
    return Plane(through + start_row * row + start_column * column, row, column, normal, spacing, width, height)


@dataclass(frozen=True)
class PlaneRequest:
    """What the client asked for: a named or oblique plane, where, and how fine."""

    name: str
    position: float | None = None
    index: int | None = None
    spacing: float | None = None
    normal: np.ndarray | None = None
    up: np.ndarray | None = None
    center: np.ndarray | None = None


def no_volume(volume: VolumeHeader, details: str) -> OrthancError:
    return OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_SIZE, f"Series {volume.series_id}: {details}", http_status=409)


def require_geometry(volume: VolumeHeader) -> Geometry:
    """The volume's geometry; a stack without one is a 409 that says why."""
    if volume.geometry is None:
        details = next((p["Details"] for p in volume.stack.problems if p["Type"] == "MissingGeometry"), "")
        raise OrthancError(
            ErrorCode.CANNOT_ORDER_SLICES, f"MissingGeometry: {details}; no patient coordinates", http_status=409
        )
    return volume.geometry


def make_plane(volume: VolumeHeader, request: PlaneRequest) -> Plane:
    """The plane a request describes, checked against what the volume allows; a named plane at a slice index in
    the default spacing (a stack's request) is made once per header and then taken from ``volume.planes``."""
    key = (request.name, request.index) if request.index is not None and request.spacing is None else None
    plane = None if key is None else volume.planes.get(key)
    if plane is None:
        plane = _make_plane(volume, request)
        if key is not None:
            volume.planes[key] = plane
    return plane


def _make_plane(volume: VolumeHeader, request: PlaneRequest) -> Plane:
    geometry = require_geometry(volume)
    spacing = min(geometry.pixel_spacing) if request.spacing is None else request.spacing
    if spacing <= 0:
        raise _out_of_range("argument 'spacing' must be positive")
    center = center_of(volume)
    if request.name == "oblique":
        return _oblique(volume, request, center, spacing)
    (normal_axis, normal_sign), (right_axis, right_sign), (down_axis, down_sign) = _NAMED[request.name]
    axis, normal = _signed_axis(geometry, normal_axis, normal_sign)
    if axis != 2 and volume.size[2] < 2:
        raise no_volume(volume, f"a single slice has no {request.name} plane; only its own plane can be shown")
    _, row = _signed_axis(geometry, right_axis, right_sign)
    _, column = _signed_axis(geometry, down_axis, down_sign)
    if request.index is not None:
        if not 0 <= request.index < volume.size[axis]:
            raise _out_of_range(f"argument 'index' must be below {volume.size[axis]} for the {request.name} plane")
        voxel = np.array([(n - 1) / 2 for n in volume.size])
        voxel[axis] = request.index
        position = float(geometry.to_patient(voxel)[0] @ normal)
    else:
        position = request.position if request.position is not None else float(center @ normal)
    return _fit(volume, center + (position - center @ normal) * normal, (row, column, normal), spacing)


def _oblique(volume: VolumeHeader, request: PlaneRequest, center: np.ndarray, spacing: float) -> Plane:
    if request.normal is None:
        raise _out_of_range("an oblique plane needs the argument 'normal'")
    if volume.size[2] < 2:
        raise no_volume(volume, "a single slice has no oblique plane")
    if request.index is not None:
        raise _out_of_range("argument 'index' has no meaning for an oblique plane: use 'position'")
    normal = _unit(request.normal, "normal")
    up = request.up if request.up is not None else np.array([0.0, -1.0, 0.0] if abs(normal[2]) > 0.7 else [0, 0, 1.0])
    down = -(up - (up @ normal) * normal)
    column = _unit(down, "up")  # "up" parallel to the normal leaves no direction
    row = np.cross(column, normal)
    through = request.center if request.center is not None else center
    if request.position is not None:
        through = through + (request.position - through @ normal) * normal
    return _fit(volume, through, (row, column, normal), spacing)


def _interpolate(voxels: np.ndarray, index: np.ndarray, *, linear: bool) -> np.ndarray:
    """Values of (slices, rows, columns) voxels at (M, 3) continuous indices (x, y, z), clamped to the edges."""
    _, rows, columns = voxels.shape
    size = np.array([columns, rows, len(voxels)], dtype=np.float64)
    index = np.clip(index, 0, size - 1)
    flat = voxels.reshape(-1)
    if not linear:
        x, y, z = (np.floor(index[:, a] + 0.5).astype(np.intp) for a in range(3))
        return flat[(z * rows + y) * columns + x]
    low = np.floor(index).astype(np.intp)
    t = (index - low).astype(np.float32)
    # Offsets to the next voxel along x, y and z in the flat array; none at the last voxel (t is 0 there).
    sx, sy, sz = ((low[:, a] < size[a] - 1) * stride for a, stride in enumerate((1, columns, rows * columns)))
    base = (low[:, 2] * rows + low[:, 1]) * columns + low[:, 0]

    def along_x(start: np.ndarray) -> np.ndarray:
        return flat[start] + (flat[start + sx] - flat[start]) * t[:, 0]

    near, far = along_x(base), along_x(base + sy)
    front = near + (far - near) * t[:, 1]
    near, far = along_x(base + sz), along_x(base + sz + sy)
    back = near + (far - near) * t[:, 1]
    return front + (back - front) * t[:, 2]


def _inside(index: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Whether each continuous index is within the volume's edges (voxels span half a voxel around their centre)."""
    return np.all((index >= -0.5) & (index <= np.array(size, dtype=np.float64) - 0.5), axis=1)


def sample(volume: Volume, points: np.ndarray, *, linear: bool) -> tuple[np.ndarray, np.ndarray]:
    """Values at patient points (trilinear or nearest voxel) and whether each point is inside the volume."""
    index = require_geometry(volume).to_index(points)
    return _interpolate(volume.voxels, index, linear=linear), _inside(index, volume.size)


def on_slice(volume: VolumeHeader, plane: Plane) -> int | None:
    """The slice a plane lies in (parallel to the slices, within ``ON_SLICE`` of one), else None."""
    geometry = require_geometry(volume)
    if abs(abs(float(plane.normal @ geometry.normal)) - 1.0) > 1e-9:
        return None
    gaps = np.abs(geometry.distances - float(plane.origin @ geometry.normal))
    slot = int(np.argmin(gaps))
    return slot if gaps[slot] <= ON_SLICE else None


def reslice_slice(volume: VolumeHeader, pixels: np.ndarray, slot: int, plane: Plane, *, linear: bool) -> np.ndarray:
    """The values of a plane lying in slice ``slot`` (see ``on_slice``), from that slice's (rows, columns) values
    alone: interpolated within the slice, exactly at its depth. A volume's reslice on a slice is this very
    computation, so a slice decoded from its file gives the picture the loaded volume gives.

    Within a slice, voxel indices are an affine function of the picture's pixel, which three points give. When
    its coefficients are whole numbers (within ``1e-6``: a plane on the slice's own grid, the stack's usual axial
    picture), every pixel is a stored value, taken as it is."""
    corners = np.array(
        [plane.origin, plane.origin + plane.spacing * plane.row, plane.origin + plane.spacing * plane.column]
    )
    start, after_row, after_column = require_geometry(volume).to_index(corners)[:, :2]
    affine = np.array([start, after_row - start, after_column - start])  # rows: start, per pixel right, down
    i, j = np.arange(plane.width)[None, :], np.arange(plane.height)[:, None]
    whole = np.round(affine)
    if np.all(np.abs(affine - whole) < 1e-6):
        (x0, y0), (xi, yi), (xj, yj) = whole.astype(np.intp)
        if (yi == 0 and xj == 0) or (xi == 0 and yj == 0):
            return _grid_rows_and_columns(pixels, (x0, y0), (xi, yi), (xj, yj), plane)
        x, y = x0 + xi * i + xj * j, y0 + yi * i + yj * j
        rows, columns = pixels.shape
        inside = (x >= 0) & (x < columns) & (y >= 0) & (y < rows)
        values = pixels[np.clip(y, 0, rows - 1), np.clip(x, 0, columns - 1)]
        return np.where(inside, values, np.float32(np.nan))
    index = np.zeros((plane.height, plane.width, 3))
    for axis in (0, 1):
        index[..., axis] = affine[0, axis] + affine[1, axis] * i + affine[2, axis] * j
    index = index.reshape(-1, 3)
    index[:, 2] = slot
    inside = _inside(index, volume.size)
    index[:, 2] = 0
    values = _interpolate(pixels[None], index, linear=linear)
    return np.where(inside, values, np.nan).astype(np.float32).reshape(plane.height, plane.width)


def _grid_rows_and_columns(
    pixels: np.ndarray, start: tuple[int, int], per_i: tuple[int, int], per_j: tuple[int, int], plane: Plane
) -> np.ndarray:
    """A picture whose rows are the slice's rows or columns (the usual stack picture, possibly mirrored or turned):
    two takes along the axes, 5 times faster than gathering each of its pixels; when it is a block of neighbouring
    pixels wholly inside the slice (the slice itself), a read-only view of them, no copy at all."""
    rows, columns = pixels.shape
    (x0, y0), (xi, yi), (xj, yj) = start, per_i, per_j
    i, j = np.arange(plane.width), np.arange(plane.height)
    across = not (yi == 0 and xj == 0)  # picture rows along the slice's columns
    y, x = (y0 + yi * i, x0 + xj * j) if across else (y0 + yj * j, x0 + xi * i)
    inside_y, inside_x = (y >= 0) & (y < rows), (x >= 0) & (x < columns)
    if inside_y.all() and inside_x.all():
        if abs(int(y[-1] - y[0])) == len(y) - 1 and abs(int(x[-1] - x[0])) == len(x) - 1:  # steps of 1 or -1
            step_y, step_x = (1 if y[-1] >= y[0] else -1), (1 if x[-1] >= x[0] else -1)
            values = pixels[y.min() : y.max() + 1, x.min() : x.max() + 1][::step_y, ::step_x]
            values = values.T if across else values
            values.flags.writeable = False  # a view of the stored slice (the volume's values): never written
            return values
        values = pixels.take(y, 0).take(x, 1)
        return values.T if across else values
    values = pixels.take(np.clip(y, 0, rows - 1), 0).take(np.clip(x, 0, columns - 1), 1)
    inside = inside_y[:, None] & inside_x[None, :]
    return np.where(inside.T if across else inside, values.T if across else values, np.float32(np.nan))


def reslice(volume: Volume, plane: Plane, *, slab: float = 0.0, mode: str = "mip", linear: bool = True) -> np.ndarray:
    """The (height, width) float32 values of a plane, thick slabs combined by ``mode``; outside: NaN."""
    if slab == 0 and volume.geometry is not None and (slot := on_slice(volume, plane)) is not None:
        return reslice_slice(volume, volume.voxels[slot], slot, plane, linear=linear)
    steps = 1
    if slab > 0:
        assert volume.geometry is not None
        steps = max(2, math.ceil(slab / min(volume.geometry.spacing)) + 1)
    shifts = np.linspace(-slab / 2, slab / 2, steps) if steps > 1 else np.zeros(1)
    total: np.ndarray | None = None
    count = np.zeros(plane.width * plane.height, np.int32)
    for shift in shifts:
        values, inside = sample(volume, plane.points(float(shift)), linear=linear)
        count += inside
        if mode == "mean":
            values = np.where(inside, values, 0)
            total = values if total is None else total + values
        else:
            values = np.where(inside, values, -np.inf if mode == "mip" else np.inf)
            combine = np.maximum if mode == "mip" else np.minimum
            total = values if total is None else combine(total, values)
    assert total is not None
    if mode == "mean":
        total = total / np.maximum(count, 1)
    return np.where(count > 0, total, np.nan).astype(np.float32).reshape(plane.height, plane.width)


def windowed(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """8-bit grey levels: the window's range stretched over 0-255; outside the volume (NaN): black.

    In place on one array of the values' own type: 0.16 ms for a 512x512 picture against 0.35 for the same steps
    on new arrays each (``nan_to_num``, ``clip``, ``floor``). NaN is set to 0, the window's low end, once clipped;
    the cast truncates, which for the clipped values plus 0.5 is rounding half up."""
    scaled = values - (center - width / 2)
    scaled *= 255.0 / width
    np.clip(scaled, 0, 255, out=scaled)
    scaled[np.isnan(scaled)] = 0
    scaled += 0.5
    return scaled.astype(np.uint8)
