"""The pyramid of a whole-slide series, built from instance headers only (no pixel data is read).

A VL Whole Slide Microscopy series (PS3.3 A.32.8) stores each resolution level as one instance, or as a
concatenation of several (PS3.3 C.7.6.16.2.2.4) sharing the Total Pixel Matrix size. Each frame is one tile:
with DimensionOrganizationType TILED_FULL the frames fill the matrix row by row (PS3.3 C.7.6.17.3), otherwise
each frame says where it lies in PerFrameFunctionalGroupsSequence > PlanePositionSlideSequence (TILED_SPARSE,
and the older files of OrthancWSIDicomizer, which write positions without the organization type).

Label and overview images (ImageType value 3 LABEL / OVERVIEW) are pictures of the glass, not levels of the
pyramid, and are left out as orthanc-wsi does; VOLUME and THUMBNAIL instances are levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from isengard.dicom.imaging import frame_count
from isengard.errors import ErrorCode, OrthancError

#: VL Whole Slide Microscopy Image Storage (PS3.4 B.5).
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"

#: ImageType value 3 of the instances that are not pyramid levels (PS3.3 C.8.12.4.1.1).
_NOT_LEVELS = {"LABEL", "OVERVIEW"}


@dataclass(frozen=True)
class TileSource:
    """Where one tile is stored: a frame (0-based) of an instance."""

    instance_id: str
    frame: int


@dataclass(frozen=True)
class InstanceGeometry:
    """What the pyramid needs of one instance: its level's size, its tile size, and its frames' positions."""

    instance_id: str
    total_width: int
    total_height: int
    tile_width: int
    tile_height: int
    syntax: UID
    photometric: str
    frames: int
    pixel_module: Dataset  # group 0028 and the file meta: all a frame's decoder needs, kept for PNG tiles
    tiles: dict[tuple[int, int], int]  # (tile x, tile y) -> frame


@dataclass
class Level:
    """One resolution: its size, its tile size, and the frame holding each tile present."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    tiles: dict[tuple[int, int], TileSource] = field(default_factory=dict)

    @property
    def tiles_count(self) -> tuple[int, int]:
        return math.ceil(self.width / self.tile_width), math.ceil(self.height / self.tile_height)


@dataclass
class Pyramid:
    """The levels of a series, the largest first (orthanc-wsi sorts them by decreasing width)."""

    series_id: str
    levels: list[Level]
    instances: dict[str, InstanceGeometry]

    def to_json(self) -> dict[str, Any]:
        """The answer of GET /wsi/pyramids/{series}, key for key what orthanc-wsi 1.1 answers."""
        return {"ID": self.series_id, **levels_json(self.levels)}

    def level(self, index: int) -> Level:
        if not 0 <= index < len(self.levels):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"This pyramid has {len(self.levels)} level(s)")
        return self.levels[index]


def levels_json(levels: list[Level]) -> dict[str, Any]:
    """The description of the levels that orthanc-wsi gives for series and frame pyramids alike."""
    total_width, total_height = levels[0].width, levels[0].height
    return {
        "Resolutions": [total_width / level.width for level in levels],
        "Sizes": [[level.width, level.height] for level in levels],
        "TilesCount": [list(level.tiles_count) for level in levels],
        "TilesSizes": [[level.tile_width, level.tile_height] for level in levels],
        "TotalHeight": total_height,
        "TotalWidth": total_width,
    }


def _int(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def instance_geometry(instance_id: str, ds: Dataset) -> InstanceGeometry | None:
    """The geometry of a WSI instance that is a pyramid level, or None for anything else."""
    if str(ds.get("SOPClassUID", "")) != WSI_SOP_CLASS:
        return None
    image_type = [str(value).upper() for value in (ds.get("ImageType") or [])]
    if len(image_type) > 2 and image_type[2] in _NOT_LEVELS:
        return None
    width, height = _int(ds, "TotalPixelMatrixColumns"), _int(ds, "TotalPixelMatrixRows")
    tile_width, tile_height = _int(ds, "Columns"), _int(ds, "Rows")
    if min(width, height, tile_width, tile_height) <= 0:
        return None
    return InstanceGeometry(
        instance_id=instance_id,
        total_width=width,
        total_height=height,
        tile_width=tile_width,
        tile_height=tile_height,
        syntax=UID(str(ds.file_meta.TransferSyntaxUID)),
        photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper(),
        frames=frame_count(ds.get("NumberOfFrames")),
        pixel_module=_pixel_module(ds),
        tiles=_frame_positions(ds, width, height, tile_width, tile_height),
    )


def _pixel_module(ds: Dataset) -> Dataset:
    module = ds.group_dataset(0x0028)
    module.file_meta = ds.file_meta
    return module


def _frame_positions(
    ds: Dataset, width: int, height: int, tile_width: int, tile_height: int
) -> dict[tuple[int, int], int]:
    """Tile coordinates of the frames: first focal plane and optical path only (the first frame found wins)."""
    count = frame_count(ds.get("NumberOfFrames"))
    columns, rows = math.ceil(width / tile_width), math.ceil(height / tile_height)
    organization = str(ds.get("DimensionOrganizationType", "")).strip().upper()
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    tiles: dict[tuple[int, int], int] = {}
    if organization == "TILED_FULL" or not per_frame:
        # A concatenation's part starts at ConcatenationFrameOffsetNumber frames into the level (C.7.6.16.2.2.4).
        offset = _int(ds, "ConcatenationFrameOffsetNumber")
        for frame in range(count):
            index = offset + frame
            if index >= columns * rows:
                break
            tiles[(index % columns, index // columns)] = frame
        return tiles
    for frame, item in enumerate(per_frame[:count]):
        positions = item.get("PlanePositionSlideSequence")
        if not positions:
            continue
        column = _int(positions[0], "ColumnPositionInTotalImagePixelMatrix")  # 1-based (C.8.12.6.1)
        row = _int(positions[0], "RowPositionInTotalImagePixelMatrix")
        if column < 1 or row < 1:
            continue
        tiles.setdefault(((column - 1) // tile_width, (row - 1) // tile_height), frame)
    return tiles


def assemble(series_id: str, instances: list[InstanceGeometry]) -> Pyramid:
    """Group the instances into levels by size, the largest level first; no level at all is a 404."""
    by_size: dict[tuple[int, int], Level] = {}
    for geometry in instances:
        size = (geometry.total_width, geometry.total_height)
        level = by_size.setdefault(size, Level(*size, geometry.tile_width, geometry.tile_height))
        for position, frame in geometry.tiles.items():
            level.tiles.setdefault(position, TileSource(geometry.instance_id, frame))
    if not by_size:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Series {series_id} is not a whole-slide image")
    levels = sorted(by_size.values(), key=lambda level: (-level.width, -level.height))
    return Pyramid(series_id, levels, {geometry.instance_id: geometry for geometry in instances})


#: The tile size of orthanc-wsi's on-the-fly pyramids, and their background colour (white).
FRAME_TILE = 512
FRAME_BACKGROUND = (255, 255, 255)


@dataclass
class FramePyramid:
    """A pyramid computed from one decoded frame of any instance (orthanc-wsi 2.x's "on-the-fly" pyramids):
    the frame as RGB, halved until it fits in one 512x512 tile; tiles are cut from these pictures."""

    instance_id: str
    frame: int
    images: list[np.ndarray]  # (height, width, 3) uint8, the largest first

    @classmethod
    def build(cls, instance_id: str, frame: int, pixels: np.ndarray) -> FramePyramid:
        image = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels[:, :, :3]
        images = [np.ascontiguousarray(image, dtype=np.uint8)]
        while images[-1].shape[1] > FRAME_TILE or images[-1].shape[0] > FRAME_TILE:
            images.append(_halve(images[-1]))
        return cls(instance_id, frame, images)

    @property
    def levels(self) -> list[Level]:
        return [Level(image.shape[1], image.shape[0], FRAME_TILE, FRAME_TILE) for image in self.images]

    def to_json(self) -> dict[str, Any]:
        """The answer of GET /wsi/frames-pyramids/{instance}/{frame}, as orthanc-wsi 2.x's."""
        return {
            "ID": self.instance_id,
            "FrameNumber": self.frame,
            **levels_json(self.levels),
            "BackgroundColor": "#{:02x}{:02x}{:02x}".format(*FRAME_BACKGROUND),
        }

    def tile(self, level: int, x: int, y: int) -> np.ndarray:
        """One tile; what lies past the edge of the level (or a whole tile past it) is the background."""
        if not 0 <= level < len(self.images):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"This pyramid has {len(self.images)} level(s)")
        tile = np.empty((FRAME_TILE, FRAME_TILE, 3), np.uint8)
        tile[...] = FRAME_BACKGROUND
        part = self.images[level][y * FRAME_TILE : (y + 1) * FRAME_TILE, x * FRAME_TILE : (x + 1) * FRAME_TILE]
        tile[: part.shape[0], : part.shape[1]] = part
        return tile

    @property
    def size(self) -> int:
        return sum(image.nbytes for image in self.images)


def _halve(image: np.ndarray) -> np.ndarray:
    """Half the size (rounded down, at least one pixel), each pixel the mean of a 2x2 block."""
    height, width = max(1, image.shape[0] // 2), max(1, image.shape[1] // 2)
    rows = np.minimum(np.arange(2 * height), image.shape[0] - 1)
    columns = np.minimum(np.arange(2 * width), image.shape[1] - 1)
    blocks = image[rows][:, columns].reshape(height, 2, width, 2, 3).astype(np.uint16)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)
