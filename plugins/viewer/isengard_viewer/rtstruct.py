"""RT Structure Sets: the ROIs' contours in patient mm, and where they meet a reslice plane.

An RT-STRUCT (PS3.3 C.8.8.5-C.8.8.8) names each ROI in StructureSetROISequence (number, name, the frame of
reference its contours are in) and gives its contours in ROIContourSequence (ROIDisplayColor, then per contour
ContourGeometricType and ContourData, x/y/z triplets in mm). Contours are usually CLOSED_PLANAR polygons on the
planes of the CT slices they were drawn on.

On a plane the contour lies in (within the plane's own thickness) the polygon itself is drawn. A plane across a
planar contour meets it along one line: the polygon's edges cross the plane at an even number of points, which
paired in order along that line are the segments of the line inside the contour; the points are its outline
in that plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from isengard.errors import ErrorCode, OrthancError

from .reslice import Plane

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
CONTOUR_DATA = 0x30060050
#: Colours of ROIs that have no ROIDisplayColor, by ROI number.
_FALLBACK_COLORS = ((255, 0, 0), (0, 255, 0), (0, 128, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))


@dataclass(frozen=True)
class Contour:
    kind: str  # ContourGeometricType: CLOSED_PLANAR, OPEN_PLANAR, OPEN_NONPLANAR or POINT
    points: np.ndarray  # (N, 3) patient mm
    images: tuple[str, ...]  # SOPInstanceUIDs of ContourImageSequence


@dataclass(frozen=True)
class Roi:
    number: int
    name: str
    color: tuple[int, int, int]
    frame_of_reference: str | None
    interpretation: str | None  # RTROIInterpretedType (ORGAN, PTV, ...)
    contours: tuple[Contour, ...]

    def describe(self, *, contours: bool) -> dict[str, Any]:
        found: dict[str, Any] = {
            "Number": self.number,
            "Name": self.name,
            "Color": list(self.color),
            "FrameOfReferenceUID": self.frame_of_reference,
            "Interpretation": self.interpretation,
            "ContourCount": len(self.contours),
        }
        if contours:
            found["Contours"] = [
                {
                    "GeometricType": c.kind,
                    "Points": np.round(c.points, 4).tolist(),
                    "ReferencedSOPInstanceUIDs": list(c.images),
                }
                for c in self.contours
            ]
        return found


def _color(value: Any, number: int) -> tuple[int, int, int]:
    try:
        red, green, blue = (max(0, min(255, int(v))) for v in value)
    except (TypeError, ValueError):
        return _FALLBACK_COLORS[number % len(_FALLBACK_COLORS)]
    return red, green, blue


def _points(contour: Dataset) -> np.ndarray | None:
    """ContourData as (N, 3) mm. Read from the raw bytes when the element is still raw: turning a large structure
    set's hundred thousand values into pydicom's DS objects takes seconds, splitting the text milliseconds."""
    element = contour.get_item(CONTOUR_DATA)
    if element is None:
        return None
    data = element.value
    try:
        if isinstance(data, bytes):
            data = data.decode("ascii").split("\\")
        values = np.array([float(v) for v in (data or [])], dtype=np.float64)
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    if len(values) < 3 or len(values) % 3 or not np.all(np.isfinite(values)):
        return None
    return values.reshape(-1, 3)


def structure_set(ds: Dataset, instance_id: str) -> list[Roi]:
    """The ROIs of an RT Structure Set, in StructureSetROISequence order; unreadable contours are left out."""
    if str(ds.get("Modality", "")).upper() != "RTSTRUCT" and str(ds.get("SOPClassUID", "")) != RT_STRUCTURE_SET:
        raise OrthancError(
            ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Instance {instance_id} is not an RT Structure Set (RTSTRUCT)"
        )
    outlines = {int(item.get("ReferencedROINumber", -1)): item for item in ds.get("ROIContourSequence") or []}
    kinds = {
        int(item.get("ReferencedROINumber", -1)): str(item.get("RTROIInterpretedType", "")) or None
        for item in ds.get("RTROIObservationsSequence") or []
    }
    rois = []
    for item in ds.get("StructureSetROISequence") or []:
        number = int(item.get("ROINumber", -1))
        outline = outlines.get(number, Dataset())
        contours = []
        for contour in outline.get("ContourSequence") or []:
            points = _points(contour)
            if points is not None:
                images = contour.get("ContourImageSequence") or []
                images = tuple(str(image.get("ReferencedSOPInstanceUID", "")) for image in images)
                contours.append(Contour(str(contour.get("ContourGeometricType", "CLOSED_PLANAR")), points, images))
        rois.append(
            Roi(
                number=number,
                name=str(item.get("ROIName", "")),
                color=_color(outline.get("ROIDisplayColor"), number),
                frame_of_reference=str(item.get("ReferencedFrameOfReferenceUID", "")) or None,
                interpretation=kinds.get(number),
                contours=tuple(contours),
            )
        )
    return rois


@dataclass
class Cut:
    """What one ROI leaves on a plane, in pixel coordinates (x right, y down; pixel centres at integers)."""

    polygons: list[np.ndarray]  # (N, 2) outlines lying in the plane (closed ones are closed by the drawer)
    closed: list[bool]
    points: list[np.ndarray]  # (2,) where contours cross the plane
    segments: list[np.ndarray]  # (2, 2) the parts of the crossing line inside a closed contour


def _pixels(points: np.ndarray, plane: Plane) -> np.ndarray:
    relative = points - plane.origin
    return np.stack([relative @ plane.row, relative @ plane.column], axis=-1) / plane.spacing


def cut(roi: Roi, plane: Plane, thickness: float) -> Cut:
    """The ROI's contours on the plane; a contour within ``thickness / 2`` mm of it counts as lying in it."""
    result = Cut([], [], [], [])
    for contour in roi.contours:
        distance = (contour.points - plane.origin) @ plane.normal
        if np.abs(distance).max() <= thickness / 2:
            if contour.kind == "POINT" or len(contour.points) == 1:
                result.points.extend(_pixels(contour.points, plane))
            else:
                result.polygons.append(_pixels(contour.points, plane))
                result.closed.append(contour.kind == "CLOSED_PLANAR")
            continue
        closed = contour.kind == "CLOSED_PLANAR"
        start, end = contour.points, np.roll(contour.points, -1, axis=0)
        d0, d1 = distance, np.roll(distance, -1)
        if not closed:
            start, end, d0, d1 = start[:-1], end[:-1], d0[:-1], d1[:-1]
        # Half-open rule: a vertex exactly on the plane counts on the positive side, so it is crossed once.
        crossing = (d0 < 0) != (d1 < 0)
        if not crossing.any():
            continue
        t = (d0[crossing] / (d0[crossing] - d1[crossing]))[:, None]
        found = _pixels(start[crossing] + t * (end[crossing] - start[crossing]), plane)
        result.points.extend(found)
        if closed and len(found) >= 2:
            spread = found - found.mean(axis=0)
            direction = np.linalg.svd(spread, full_matrices=False)[2][0]  # the line's direction in the picture
            ordered = found[np.argsort(spread @ direction)]
            result.segments.extend(ordered[k : k + 2] for k in range(0, len(ordered) - 1, 2))
    return result
