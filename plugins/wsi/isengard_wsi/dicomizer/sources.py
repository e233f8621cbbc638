"""The slides a DICOMizer reads: tiled TIFF pyramids (through tifffile, tile by tile), plain JPEG/PNG images, and
through OpenSlide (openslide_source) whatever else it knows.

tifffile comes first for a TIFF, an Aperio SVS included: its JPEG tiles are then copied as they are (lossless),
and OpenSlide only gives the SVS's label, macro and thumbnail. A file neither tifffile nor Pillow reads (NDPI's
untiled JPEG, MIRAX, a TIFF without tiles...) goes to OpenSlide when it recognizes the format.

A source level offers two things: its tiles as complete JPEG streams when it stores JPEG (to be copied into DICOM
frames as they are, the lossless path), and decoded rows of pixels (for levels that must be re-encoded, re-tiled or
halved). Only one row of tiles is decoded at a time, so a slide is never held whole in memory; a plain image is
one picture and is read at once.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from . import jpeg

_JPEG = 7  # TIFF "new-style" JPEG (Technical Note 2); old-style JPEG (6) tiles are not JPEG streams
_RGB, _MINISBLACK, _YCBCR = 2, 1, 6


class SourceError(Exception):
    """The input cannot be read: not a supported format, or damaged. The message is shown to the user."""


@dataclass
class SourceLevel:
    """One resolution of the slide."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    samples: int  # 1 (greyscale) or 3 (colour)

    @property
    def tiles(self) -> tuple[int, int]:
        return -(-self.width // self.tile_width), -(-self.height // self.tile_height)

    def jpeg_tile(self, x: int, y: int) -> bytes | None:
        """The tile as a complete JPEG stream, or None when this level does not store JPEG tiles."""
        return None

    def lossy_ratio(self) -> float | None:
        """The compression ratio of the stored JPEG tiles, None when the level is not stored as JPEG."""
        return None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Decoded rows [top, bottom) over the full width: (rows, width, samples) uint8."""
        raise NotImplementedError

    @property
    def tiff_says_rgb(self) -> bool:
        return False


def _decode_jpeg(stream: bytes, *, tiff_says_rgb: bool) -> np.ndarray:
    """A JPEG tile's pixels, its colour model read as the DICOM frame will label it (jpeg.is_rgb)."""
    try:
        info = jpeg.inspect(stream)
        if info.components == 3 and jpeg.is_rgb(info, tiff_says_rgb=tiff_says_rgb):
            stream = jpeg.with_adobe_rgb(stream)
        with Image.open(io.BytesIO(stream)) as image:
            pixels = np.asarray(image.convert("L" if info.components == 1 else "RGB"))
    except (OSError, jpeg.JpegError, SyntaxError) as e:
        raise SourceError(f"cannot decode a JPEG tile: {e}") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


@dataclass
class TiffLevel(SourceLevel):
    """A tiled TIFF page; tiles are read by their offsets and byte counts, JPEG tables merged in."""

    page: tifffile.TiffPage = field(repr=False, default=None)  # type: ignore[assignment]
    _row_cache: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def is_jpeg(self) -> bool:
        return int(self.page.compression) == _JPEG

    @property
    def tiff_says_rgb(self) -> bool:
        return int(self.page.photometric) == _RGB

    def _raw(self, index: int) -> bytes:
        offset, count = self.page.dataoffsets[index], self.page.databytecounts[index]
        handle = self.page.parent.filehandle
        handle.seek(offset)
        data = handle.read(count)
        if count == 0 or len(data) != count:
            raise SourceError(f"the TIFF file is truncated (tile {index} of a {self.width}x{self.height} level)")
        return data

    def jpeg_tile(self, x: int, y: int) -> bytes | None:
        if not self.is_jpeg:
            return None
        tables = self.page.jpegtables
        try:
            return jpeg.merge_tables(self._raw(y * self.tiles[0] + x), bytes(tables) if tables is not None else None)
        except jpeg.JpegError as e:
            raise SourceError(str(e)) from None

    def lossy_ratio(self) -> float | None:
        if not self.is_jpeg:
            return None
        columns, rows = self.tiles
        return (
            columns * rows * self.tile_width * self.tile_height * self.samples / max(1, sum(self.page.databytecounts))
        )

    def _tile_pixels(self, x: int, y: int) -> np.ndarray:
        stream = self.jpeg_tile(x, y)
        if stream is not None:
            return _decode_jpeg(stream, tiff_says_rgb=self.tiff_says_rgb)
        index = y * self.tiles[0] + x
        try:
            decoded = self.page.decode(self._raw(index), index)[0]
        except (ValueError, NotImplementedError, KeyError) as e:
            raise SourceError(f"cannot decode a TIFF tile: {e}") from None
        return np.asarray(decoded).reshape(self.tile_height, self.tile_width, -1)[..., : self.samples]

    def _tile_row(self, y: int) -> np.ndarray:
        if self._row_cache is None or self._row_cache[0] != y:
            row = np.concatenate([self._tile_pixels(x, y) for x in range(self.tiles[0])], axis=1)
            self._row_cache = (y, row[:, : self.width])
        return self._row_cache[1]

    def rows(self, top: int, bottom: int) -> np.ndarray:
        first, last = top // self.tile_height, (bottom - 1) // self.tile_height
        strip = np.concatenate([self._tile_row(y) for y in range(first, last + 1)], axis=0)
        offset = first * self.tile_height
        return strip[top - offset : bottom - offset]


@dataclass
class ImageLevel(SourceLevel):
    """A plain JPEG or PNG: one picture, a single tile when it is a baseline JPEG (to be kept as it is)."""

    pixels: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    stream: bytes | None = field(repr=False, default=None)  # the file, when it is a baseline JPEG

    def jpeg_tile(self, x: int, y: int) -> bytes | None:
        return self.stream

    def lossy_ratio(self) -> float | None:
        return self.width * self.height * self.samples / len(self.stream) if self.stream else None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        return self.pixels[top:bottom]


@dataclass
class Slide:
    levels: list[SourceLevel]
    plain: bool  # one picture: its pyramid is always built (as OrthancWSIDicomizer does)
    associated: dict[str, np.ndarray] = field(default_factory=dict)  # "label", "macro", "thumbnail": RGB pixels


def _check_page(page: tifffile.TiffPage) -> int:
    """The samples per pixel of a page the DICOMizer can read, or SourceError saying why not."""
    if page.dtype != np.uint8:
        raise SourceError(f"only 8-bit images are supported, not {page.dtype}")
    if page.planarconfig == 2 and page.samplesperpixel > 1:
        raise SourceError("TIFF files with separate colour planes (PlanarConfiguration 2) are not supported")
    if int(page.compression) != _JPEG and int(page.compression) not in tifffile.TIFF.DECOMPRESSORS:
        raise SourceError(f"cannot decode {page.compression.name} tiles without the imagecodecs package")
    photometric = int(page.photometric)
    if int(page.compression) == _JPEG and photometric in (_RGB, _YCBCR, _MINISBLACK):
        return 1 if photometric == _MINISBLACK else 3
    if photometric == _MINISBLACK:
        return 1
    if photometric == _RGB and page.samplesperpixel in (3, 4):
        return 3
    raise SourceError(
        f"unsupported TIFF photometric interpretation {page.photometric.name} for {page.compression.name}"
    )


def _tiff(tiff: tifffile.TiffFile, name: str) -> Slide:
    """The tiled pages of the first series, level 0 first (tifffile finds the pyramid: SubIFDs or reduced pages)."""
    try:
        pages = [level.keyframe for level in tiff.series[0].levels] if tiff.series else []
    except (tifffile.TiffFileError, ValueError, EOFError, struct.error) as e:
        raise SourceError(f"cannot read {name} as TIFF: {e}") from None
    if not pages:
        raise SourceError(f"no image in {name}: the TIFF file is truncated or damaged")
    pages = [page for page in pages if page.is_tiled]
    if not pages:
        raise SourceError(f"{name} is not a tiled TIFF (only tiled pyramids are supported)")
    levels: list[SourceLevel] = [
        TiffLevel(p.imagewidth, p.imagelength, p.tilewidth, p.tilelength, _check_page(p), page=p) for p in pages
    ]
    return Slide(levels, plain=False)


def _image(path: Path) -> Slide:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = "L" if image.mode in ("1", "L", "LA", "I;16", "I") else "RGB"  # palettes and alpha: RGB
            pixels = np.asarray(image.convert(mode))
            kept = data if image.format == "JPEG" and jpeg.inspect(data).baseline else None
    except (OSError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError, jpeg.JpegError) as e:
        raise SourceError(f"cannot read {path.name}: {e}") from None
    height, width = pixels.shape[:2]
    level = ImageLevel(
        width, height, width, height, 1 if mode == "L" else 3, pixels=pixels.reshape(height, width, -1), stream=kept
    )
    return Slide([level], plain=True)


@contextmanager
def open_slide(path: Path, openslide_library: str | None = None) -> Iterator[Slide]:
    """The slide in ``path``, told by its first bytes (TIFF, or an image Pillow reads), else by OpenSlide.

    OpenSlide (``openslide_library``: the library's path, or openslide-bin's) is imported only when needed."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror}") from None
    with ExitStack() as stack:
        try:
            slide = _native(path, magic, stack, openslide_library)
        except SourceError as error:
            from .openslide_source import detect, open_openslide

            if not detect(path, openslide_library):
                raise error from None
            levels, associated = stack.enter_context(open_openslide(path, openslide_library))
            slide = Slide(levels, plain=False, associated=associated)
        yield slide


def _native(path: Path, magic: bytes, stack: ExitStack, openslide_library: str | None) -> Slide:
    """The slide as tifffile or Pillow read it, or SourceError."""
    if magic[:2] not in (b"II", b"MM"):
        return _image(path)
    try:
        tiff = stack.enter_context(tifffile.TiffFile(path))
    except (tifffile.TiffFileError, ValueError, EOFError, struct.error, OSError) as e:
        raise SourceError(f"cannot read {path.name} as TIFF: {e}") from None
    slide = _tiff(tiff, path.name)
    if tiff.is_svs:
        from .openslide_source import open_openslide

        # the SVS's label, macro and thumbnail pages are LZW or JPEG strips: OpenSlide decodes them
        with open_openslide(path, openslide_library) as (_, associated):
            slide.associated = associated
    return slide
