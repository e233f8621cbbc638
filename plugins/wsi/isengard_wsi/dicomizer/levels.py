"""The levels of the target pyramid, and the frames of each: source JPEG tiles copied, or pixels encoded anew.

Lossless first: a level whose source stores baseline JPEG tiles of the target tile size is written by copying each
tile into a frame, with no decoding. Any other level is decoded one row of tiles at a time and encoded with Pillow
(JPEG, JPEG 2000 or uncompressed). A level missing from the source is made by halving the level above it while
that one is written: the halved rows go to a temporary file on disk (a quarter of the level above), never to
memory, as OrthancWSIDicomizer's "--pyramid" reconstructs levels.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from . import jpeg
from .sources import SourceError, SourceLevel

#: Target compressions, as OrthancWSIDicomizer's --compression names them.
COMPRESSIONS = ("jpeg", "none", "jpeg2000")
#: The tile size of a plain image's pyramid when none is given (OrthancWSIDicomizer's).
PLAIN_TILE = 512
#: Padding of the tiles past the edge of the image: the background colour of the tile server.
BACKGROUND = 255


class Rows(Protocol):
    def rows(self, top: int, bottom: int) -> np.ndarray: ...


@dataclass
class Encoding:
    compression: str
    quality: int
    reencode: bool
    smooth: bool


@dataclass
class TargetLevel:
    width: int
    height: int
    tile_width: int
    tile_height: int
    samples: int
    source: SourceLevel | None  # None: halved from the level above
    copied: bool = False  # the frames are the source's JPEG tiles as they are

    @property
    def tiles(self) -> tuple[int, int]:
        return -(-self.width // self.tile_width), -(-self.height // self.tile_height)

    @property
    def frame_count(self) -> int:
        columns, rows = self.tiles
        return columns * rows


def default_level_count(width: int, height: int, tile_width: int, tile_height: int) -> int:
    """Halve until one side fits in a tile, as OrthancWSIDicomizer counts the levels it reconstructs."""
    count = 1
    while width > tile_width and height > tile_height:
        width, height, count = -(-width // 2), -(-height // 2), count + 1
    return count


def plan(
    levels: list[SourceLevel],
    *,
    plain: bool,
    pyramid: bool,
    count: int | None,
    tile: tuple[int | None, int | None],
    encoding: Encoding,
) -> list[TargetLevel]:
    """The target levels: the source's own (at most ``count``), or with ``pyramid`` (always for a plain image)
    the halvings of level 0 down to ``count`` levels, each taken from the source level of that size if any."""
    base = levels[0]
    default = (PLAIN_TILE, PLAIN_TILE) if plain else (base.tile_width, base.tile_height)
    tile_width, tile_height = tile[0] or default[0], tile[1] or default[1]
    if plain and _copyable(base, encoding) and base.width <= tile_width and base.height <= tile_height:
        tile_width, tile_height = base.width, base.height  # the JPEG kept as it is, one frame
    if pyramid or plain:
        count = count or default_level_count(base.width, base.height, tile_width, tile_height)
        sizes = [(base.width, base.height)]
        while len(sizes) < count:
            sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
        by_size = {(level.width, level.height): level for level in levels}
        chosen = [by_size.get(size) for size in sizes]
    else:
        chosen, sizes = list(levels[:count]), [(level.width, level.height) for level in levels[:count]]
    out = []
    for (width, height), source in zip(sizes, chosen, strict=True):
        copied = (
            source is not None
            and _copyable(source, encoding)
            and (source.tile_width, source.tile_height) == (tile_width, tile_height)
        )
        out.append(TargetLevel(width, height, tile_width, tile_height, base.samples, source, copied))
    return out


def _copyable(source: SourceLevel, encoding: Encoding) -> bool:
    if encoding.reencode or encoding.compression != "jpeg":
        return False
    first = source.jpeg_tile(0, 0)
    return first is not None and jpeg.inspect(first).baseline


def halve(block: np.ndarray, *, smooth: bool) -> np.ndarray:
    """Half the size (rounded up), each pixel the mean of 2x2; ``smooth`` first blurs with a 3x3 binomial kernel
    (less aliasing of fine patterns, as OrthancWSIDicomizer's --smooth)."""
    if block.shape[0] % 2:
        block = np.concatenate([block, block[-1:]], axis=0)
    if block.shape[1] % 2:
        block = np.concatenate([block, block[:, -1:]], axis=1)
    values = block.astype(np.uint16)
    if smooth:
        padded = np.pad(values, ((1, 1), (1, 1), (0, 0)), mode="edge")
        values = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) // 4
        values = (values[:, :-2] + 2 * values[:, 1:-1] + values[:, 2:]) // 4
    height, width, samples = values.shape
    summed = values.reshape(height // 2, 2, width // 2, 2, samples).sum(axis=(1, 3))
    return ((summed + 2) // 4).astype(np.uint8)


class Halving:
    """The next level down, filled with the halved rows of the level being written; kept in a temporary file."""

    def __init__(self, level: TargetLevel, *, smooth: bool) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.pixels = np.memmap(self._file, np.uint8, "w+", shape=(level.height, level.width, level.samples))
        self._smooth, self._pending, self._filled = smooth, None, 0

    def feed(self, rows: np.ndarray, *, last: bool) -> None:
        if self._pending is not None:
            rows = np.concatenate([self._pending, rows], axis=0)
        keep = 0 if last else rows.shape[0] % 2
        ready, self._pending = rows[: rows.shape[0] - keep], (rows[rows.shape[0] - keep :] if keep else None)
        if ready.shape[0]:
            halved = halve(ready, smooth=self._smooth)
            self.pixels[self._filled : self._filled + halved.shape[0]] = halved[:, : self.pixels.shape[1]]
            self._filled += halved.shape[0]

    def rows(self, top: int, bottom: int) -> np.ndarray:
        return self.pixels[top:bottom]

    def close(self) -> None:
        del self.pixels
        self._file.close()


def encode_tile(pixels: np.ndarray, encoding: Encoding) -> bytes:
    """One frame from a tile of pixels: baseline JPEG (JFIF, YCbCr 4:2:0 for colour), JPEG 2000 (reversible, with
    the reversible colour transform for colour), or the samples as they are (colour-by-pixel)."""
    if encoding.compression == "none":
        return np.ascontiguousarray(pixels).tobytes()
    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    out = io.BytesIO()
    if encoding.compression == "jpeg":
        image.save(out, "JPEG", quality=encoding.quality)
    else:
        image.save(out, "JPEG2000", no_jp2=True, irreversible=False, mct=1 if pixels.shape[2] == 3 else 0)
    return out.getvalue()


def frames(
    level: TargetLevel, pixels: Rows | None, encoding: Encoding, below: Halving | None, pool: Executor | None
) -> Iterator[bytes]:
    """The frames of a level row by row (TILED_FULL order), feeding ``below`` with its rows when it is halved."""
    columns, rows = level.tiles
    for y in range(rows):
        top, bottom = y * level.tile_height, min(level.height, (y + 1) * level.tile_height)
        strip = None
        if not level.copied or below is not None:
            if pixels is None:
                raise SourceError("no pixels for a level to be re-encoded")
            strip = np.asarray(pixels.rows(top, bottom))
            if below is not None:
                below.feed(strip, last=y == rows - 1)
        if level.copied:
            assert level.source is not None
            for x in range(columns):
                yield _copied_tile(level.source, x, y)
            continue
        assert strip is not None
        padded = np.full((level.tile_height, columns * level.tile_width, level.samples), BACKGROUND, np.uint8)
        padded[: strip.shape[0], : strip.shape[1]] = strip
        tiles = [padded[:, x * level.tile_width : (x + 1) * level.tile_width] for x in range(columns)]
        if pool is None:
            yield from (encode_tile(tile, encoding) for tile in tiles)
        else:
            yield from pool.map(encode_tile, tiles, [encoding] * len(tiles))


def _copied_tile(source: SourceLevel, x: int, y: int) -> bytes:
    stream = source.jpeg_tile(x, y)
    assert stream is not None
    info = jpeg.inspect(stream)
    if not info.baseline:
        raise SourceError(
            f"tile ({x}, {y}) of a {source.width}x{source.height} level is not baseline JPEG: use --reencode=1"
        )
    if info.components == 3 and jpeg.is_rgb(info, tiff_says_rgb=source.tiff_says_rgb):
        return jpeg.with_adobe_rgb(stream)
    return stream


def photometric(level: TargetLevel, encoding: Encoding) -> str:
    """The photometric interpretation of the level's frames (PS3.5 8.2.1 for JPEG, 8.2.4 for JPEG 2000)."""
    if level.samples == 1:
        return "MONOCHROME2"
    if level.copied:
        assert level.source is not None
        first = level.source.jpeg_tile(0, 0)
        assert first is not None
        info = jpeg.inspect(first)
        return jpeg.photometric(info, rgb=jpeg.is_rgb(info, tiff_says_rgb=level.source.tiff_says_rgb))
    return {"none": "RGB", "jpeg": "YBR_FULL_422", "jpeg2000": "YBR_RCT"}[encoding.compression]
