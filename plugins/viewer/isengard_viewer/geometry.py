"""Where each frame of a series lies in patient space, and the stack of frames that makes a volume.

The frame geometry is PS3.3 C.7.6.2 (Image Plane Module): ImagePositionPatient is the centre of the first
transmitted voxel, ImageOrientationPatient the row and column direction cosines, PixelSpacing the distance between
rows, then between columns. Enhanced multi-frame objects carry the same attributes per frame in the Plane Position,
Plane Orientation, Pixel Measures and Pixel Value Transformation functional groups (PS3.3 C.7.6.16), a per-frame
item overriding the shared one.

A volume's slices are the frames sorted along the normal of their common orientation. Real series are rarely
perfect, so the stack keeps what it can and lists what it left out or had to tolerate in ``problems``; mapping
patient points to voxel indices goes through the slices' true positions (piecewise linear between slices), so
uneven gaps and gantry tilt do not displace anything in the reslices.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from isengard.dicom.imaging import first_number as number

#: Two slices closer than this along the normal (mm) are at the same position.
SAME_POSITION = 0.01
#: Gaps differing from the typical one by more than this fraction make the spacing non-uniform.
GAP_TOLERANCE = 0.01
#: Below this angle (degrees) between the slice normal and the line of slice positions, there is no tilt.
TILT_TOLERANCE = 0.05


def transform(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(M, 3) vectors times a (K, 3) matrix's rows: (M, K), or (M,) for a single (3,) vector.

    ``einsum`` rather than ``@``: a product with 3 columns is no work for BLAS, whose threads (OpenBLAS starts one
    per core) made a 512x512 plane's mapping 10 to 50 times slower on a busy machine (100-480 ms instead of 10).
    """
    return np.einsum("ij,kj->ik" if matrix.ndim == 2 else "ij,j->i", vectors, matrix)


def floats(value: Any, count: int) -> np.ndarray | None:
    """``count`` numbers of a multi-valued attribute, or None when absent, short or not numeric."""
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and np.all(np.isfinite(numbers)) else None


@dataclass(frozen=True)
class FrameHeader:
    """One frame of one instance, with what placing and rescaling it needs."""

    instance_id: str
    frame: int
    rows: int
    columns: int
    position: np.ndarray | None = field(compare=False)
    orientation: np.ndarray | None = field(compare=False)
    pixel_spacing: np.ndarray | None = field(compare=False)  # (between rows, between columns), as PixelSpacing
    slice_spacing: float | None  # SpacingBetweenSlices, else SliceThickness: the depth of a single slice
    slope: float
    intercept: float
    window: tuple[float, float] | None
    localizer: bool
    order: tuple[int, int]  # (InstanceNumber, frame): the order of a stack that has no geometry

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        length = np.linalg.norm(normal)
        return normal / length if length > 1e-6 else None


#: A functional group an object does not have (only read, never written): one for all, as making a Dataset and
#: asking it for attributes was a third of the time ``frames_of`` took on a classic single-frame CT.
_NO_GROUP = Dataset()


def _item(sequence: Any) -> Dataset:
    return sequence[0] if sequence else _NO_GROUP


def _macro(groups: list[Dataset], sequence: str, keyword: str) -> Any:
    """An attribute of a functional group macro, from the first of ``groups`` that has it (per-frame first)."""
    for group in groups:
        if group is _NO_GROUP:
            continue
        value = _item(group.get(sequence)).get(keyword)
        if value not in (None, ""):
            return value
    return None


def frames_of(ds: Dataset, instance_id: str) -> list[FrameHeader]:
    """The frames of an instance's header (read without pixel data), each with its own geometry."""
    count = max(1, int(number(ds.get("NumberOfFrames")) or 1))
    shared = _item(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    instance_number = int(number(ds.get("InstanceNumber")) or 0)
    frames = []
    for index in range(count):
        groups = [per_frame[index] if index < len(per_frame) else _NO_GROUP, shared, ds]

        def value(sequence: str, keyword: str, groups: list[Dataset] = groups) -> Any:
            found = _macro(groups[:2], sequence, keyword)
            return ds.get(keyword) if found is None else found

        # Classic multi-frame objects without functional groups give one position for all frames: no geometry.
        position = floats(value("PlanePositionSequence", "ImagePositionPatient"), 3)
        if count > 1 and not per_frame:
            position = None
        center, width = (
            number(value("FrameVOILUTSequence", "WindowCenter")),
            number(value("FrameVOILUTSequence", "WindowWidth")),
        )
        frames.append(
            FrameHeader(
                instance_id=instance_id,
                frame=index,
                rows=int(number(ds.get("Rows")) or 0),
                columns=int(number(ds.get("Columns")) or 0),
                position=position,
                orientation=floats(value("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                pixel_spacing=floats(value("PixelMeasuresSequence", "PixelSpacing"), 2),
                slice_spacing=number(value("PixelMeasuresSequence", "SpacingBetweenSlices"))
                or number(value("PixelMeasuresSequence", "SliceThickness")),
                slope=number(value("PixelValueTransformationSequence", "RescaleSlope")) or 1.0,
                intercept=number(value("PixelValueTransformationSequence", "RescaleIntercept")) or 0.0,
                window=(center, width) if center is not None and width and width > 0 else None,
                localizer="LOCALIZER" in image_type,
                order=(instance_number, index),
            )
        )
    return frames


@dataclass(frozen=True)
class Geometry:
    """Voxel indices (x along a row, y down the columns, z across slices) to patient mm and back.

    ``origins`` are the true positions of the slices; between and beyond them the mapping is linear, which is
    exact for a regular grid and follows the acquisition when gaps vary or the gantry was tilted.
    """

    row: np.ndarray  # direction of increasing x
    column: np.ndarray  # direction of increasing y
    normal: np.ndarray  # row x column: the direction of increasing z
    pixel_spacing: tuple[float, float]  # (x, y) in mm
    origins: np.ndarray  # (slices, 3)
    depth: float  # a single slice's thickness, for a one-slice volume

    @property
    def distances(self) -> np.ndarray:
        return self.origins @ self.normal

    @property
    def slice_spacing(self) -> float:
        """The mean gap between slices (the slice depth for a single slice)."""
        distances = self.distances
        return float((distances[-1] - distances[0]) / (len(distances) - 1)) if len(distances) > 1 else self.depth

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (*self.pixel_spacing, self.slice_spacing)

    @functools.cached_property
    def affine(self) -> np.ndarray | None:
        """The (3, 3) matrix from voxel index to offset from the first voxel (columns: a step along x, y, z)
        when the slices lie on a line at equal intervals (a tilt is a shear, still linear), else None."""
        count = len(self.origins)
        step = self.depth * self.normal if count == 1 else (self.origins[-1] - self.origins[0]) / (count - 1)
        expected = self.origins[0] + np.arange(count)[:, None] * step
        if np.abs(self.origins - expected).max() > 1e-3:
            return None
        dx, dy = self.pixel_spacing
        return np.column_stack([self.row * dx, self.column * dy, step])

    def _slice_origin(self, k: np.ndarray) -> np.ndarray:
        """The position of (0, 0, k) for fractional k, linear between slices and beyond the end ones."""
        if len(self.origins) == 1:
            return self.origins[0] + (k * self.depth)[:, None] * self.normal
        below = np.clip(np.floor(k).astype(np.int64), 0, len(self.origins) - 2)
        t = (k - below)[:, None]
        return self.origins[below] * (1 - t) + self.origins[below + 1] * t

    def to_patient(self, indices: np.ndarray) -> np.ndarray:
        """(M, 3) continuous voxel indices (x, y, z) to (M, 3) patient positions in mm."""
        indices = np.asarray(indices, dtype=np.float64).reshape(-1, 3)
        if self.affine is not None:
            return self.origins[0] + transform(indices, self.affine)
        dx, dy = self.pixel_spacing
        return (
            self._slice_origin(indices[:, 2])
            + (indices[:, 0] * dx)[:, None] * self.row
            + (indices[:, 1] * dy)[:, None] * self.column
        )

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) patient positions to (M, 3) continuous voxel indices (x, y, z)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self.affine is not None:
            return transform(points - self.origins[0], np.linalg.inv(self.affine))
        along = transform(points, self.normal)
        distances = self.distances
        if len(distances) == 1:
            k = (along - distances[0]) / self.depth
        else:
            k = np.interp(along, distances, np.arange(len(distances), dtype=np.float64))
            first, last = distances[1] - distances[0], distances[-1] - distances[-2]
            k = np.where(along < distances[0], (along - distances[0]) / first, k)
            k = np.where(along > distances[-1], len(distances) - 1 + (along - distances[-1]) / last, k)
        relative = points - self._slice_origin(k)
        dx, dy = self.pixel_spacing
        return np.stack([transform(relative, self.row) / dx, transform(relative, self.column) / dy, k], axis=1)


@dataclass
class Stack:
    """The frames that make the volume, in order, and what was wrong with the series."""

    frames: list[FrameHeader]
    geometry: Geometry | None
    problems: list[dict[str, Any]]


def _orientation_key(frame: FrameHeader) -> tuple[Any, ...]:
    spacing = None if frame.pixel_spacing is None else tuple(np.round(frame.pixel_spacing, 4))
    return (tuple(np.round(frame.orientation, 4)), frame.rows, frame.columns, spacing)


def assemble(frames: list[FrameHeader]) -> Stack:
    """Sort the frames along their normal, leaving out localizers, other orientations and duplicates."""
    problems: list[dict[str, Any]] = []
    localizers = [f for f in frames if f.localizer]
    if localizers and len(localizers) < len(frames):
        frames = [f for f in frames if not f.localizer]
        problems.append({"Type": "Localizers", "Count": len(localizers), "Details": "left out of the volume"})
    missing = [
        name
        for name, attribute in (
            ("ImagePositionPatient", "position"),
            ("ImageOrientationPatient", "orientation"),
            ("PixelSpacing", "pixel_spacing"),
        )
        if any(getattr(f, attribute) is None for f in frames)
    ]
    if missing or any(f.normal is None for f in frames):
        sizes = Counter((f.rows, f.columns) for f in frames).most_common(1)[0][0]
        kept = sorted((f for f in frames if (f.rows, f.columns) == sizes), key=lambda f: f.order)
        problems.append(
            {
                "Type": "MissingGeometry",
                "Details": f"no {', '.join(missing) or 'valid ImageOrientationPatient'}: a stack only, no volume",
            }
        )
        return Stack(kept, None, problems)
    key, _ = Counter(_orientation_key(f) for f in frames).most_common(1)[0]
    others = [f for f in frames if _orientation_key(f) != key]
    if others:
        frames = [f for f in frames if _orientation_key(f) == key]
        problems.append(
            {"Type": "MixedOrientation", "Count": len(others), "Details": "frames of another orientation or size"}
        )
    reference = frames[0]
    normal = reference.normal
    assert normal is not None and reference.orientation is not None and reference.pixel_spacing is not None
    ordered = sorted(frames, key=lambda f: (float(f.position @ normal), f.order))  # type: ignore[operator]
    kept = [ordered[0]]
    for frame in ordered[1:]:
        if float((frame.position - kept[-1].position) @ normal) > SAME_POSITION:  # type: ignore[operator]
            kept.append(frame)
    if len(kept) < len(ordered):
        problems.append(
            {"Type": "DuplicatePositions", "Count": len(ordered) - len(kept), "Details": "only the first is kept"}
        )
    origins = np.array([f.position for f in kept])
    geometry = Geometry(
        row=reference.orientation[:3] / np.linalg.norm(reference.orientation[:3]),
        column=reference.orientation[3:] / np.linalg.norm(reference.orientation[3:]),
        normal=normal,
        pixel_spacing=(float(reference.pixel_spacing[1]), float(reference.pixel_spacing[0])),
        origins=origins,
        depth=reference.slice_spacing or 1.0,
    )
    problems.extend(_spacing_problems(geometry))
    return Stack(kept, geometry, problems)


def _spacing_problems(geometry: Geometry) -> list[dict[str, Any]]:
    """Uneven gaps between slices, and slices shifted in their plane as they advance (gantry tilt)."""
    if len(geometry.origins) < 2:
        return []
    problems: list[dict[str, Any]] = []
    gaps = np.diff(geometry.distances)
    typical = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - typical) > GAP_TOLERANCE * typical + 1e-3)
    if len(uneven):
        problems.append(
            {
                "Type": "NonUniformSpacing",
                "Expected": round(typical, 4),
                "Gaps": [{"AfterSlice": int(i), "Gap": round(float(gaps[i]), 4)} for i in uneven],
                "Details": "resliced at the true slice positions",
            }
        )
    travel = geometry.origins[-1] - geometry.origins[0]
    along = float(travel @ geometry.normal)
    sideways = float(np.linalg.norm(travel - along * geometry.normal))
    angle = math.degrees(math.atan2(sideways, abs(along)))
    if angle > TILT_TOLERANCE:
        problems.append(
            {"Type": "GantryTilt", "Angle": round(angle, 3), "Details": "sheared slices, resliced where they lie"}
        )
    return problems
