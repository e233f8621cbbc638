"""``isengard-wsi-dicom-to-tiff``: a whole-slide series of an Orthanc (or Isengard) server written as a tiled
pyramidal TIFF, as OrthancWSIDicomToTiff does (same options and defaults).

The layout is OrthancWSIDicomToTiff's: one page (IFD) per level, the largest first, with the level's tile size,
each JPEG tile a complete stream (no JPEGTables) and the photometric interpretation of its frames (YCbCr, RGB or
MinIsBlack). JPEG frames are copied byte for byte. Where OrthancWSIDicomToTiff refuses frames that are not JPEG
unless asked to re-encode them, this tool writes them as uncompressed tiles (raw frames as they are, JPEG 2000 and
others decoded), so nothing is lost; ``--reencode`` makes every tile JPEG, as it does there.

Only the instance headers (JSON tags) and one frame at a time (GET /instances/{id}/frames/{n}/raw) are fetched;
the TIFF is written under a temporary name and renamed once complete, so a failure leaves no partial file.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, JPEGBaseline8Bit

from isengard.dicom.imaging import ImageFormat, encode
from isengard.dicom.modify import make_element
from isengard.dicom.tags import parse_tag
from isengard.errors import OrthancError

from .dicomizer import jpeg
from .dicomizer.dataset import software_version
from .dicomizer.options import UsageError, add_http_options, boolean, orthanc_client, quality
from .dicomizer.writer import http_reason
from .pyramid import InstanceGeometry, Level, Pyramid, assemble, instance_geometry
from .tiles import decode_pixels

log = logging.getLogger("isengard_wsi.dicom_to_tiff")

PROG = "isengard-wsi-dicom-to-tiff"
#: The tags a pyramid is built from, besides the pixel module (group 0028).
_TAGS = (
    "SOPClassUID",
    "ImageType",
    "DimensionOrganizationType",
    "ConcatenationFrameOffsetNumber",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
    "PerFrameFunctionalGroupsSequence",
)
_PHOTOMETRIC = {"RGB": "rgb", "YBR_FULL": "ycbcr", "MONOCHROME1": "miniswhite", "MONOCHROME2": "minisblack"}
#: A classic TIFF addresses 4 GiB; past this estimate of the pixels, write a BigTIFF.
_BIGTIFF_PIXELS = 2**31


class ConversionError(Exception):
    """A series that cannot be written as a TIFF; shown to the user on one line."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a whole-slide DICOM series stored in an Orthanc server into a standard hierarchical "
        "TIFF. JPEG tiles are copied as they are; other tiles are written uncompressed unless --reencode is given. "
        "Same options as OrthancWSIDicomToTiff.",
    )
    p.add_argument("input", nargs="?", help="Orthanc identifier of the series")
    p.add_argument("output", nargs="?", help="the TIFF file to write")
    generic = p.add_argument_group("Generic options")
    generic.add_argument("--version", action="store_true", help="output version information and exit")
    generic.add_argument("--verbose", action="store_true", help="be verbose in logs")
    source = p.add_argument_group("Options for the source DICOM image")
    source.add_argument(
        "--orthanc",
        default="http://localhost:8042/",
        metavar="URL",
        help="REST API of the Orthanc server (default http://localhost:8042/)",
    )
    add_http_options(source)
    target = p.add_argument_group("Options for the target TIFF image")
    target.add_argument(
        "--color", type=color, default=(255, 255, 255), metavar="R,G,B", help="colour of missing tiles (white)"
    )
    target.add_argument(
        "--reencode", type=boolean, default=False, metavar="BOOL", help="re-encode each tile as JPEG (slower, lossy)"
    )
    target.add_argument("--jpeg-quality", type=quality, default=90, metavar="Q", help="JPEG quality (0..100)")
    return p


def color(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() and int(part) <= 255 for part in parts):
        raise argparse.ArgumentTypeError(f'not a colour: {text!r} (use "R,G,B", each 0..255)')
    red, green, blue = (int(part) for part in parts)
    return red, green, blue


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        print(f"{PROG} {software_version()}")
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.input is None or args.output is None:
            raise UsageError("expected a series identifier and an output file")
        client = orthanc_client(args)
        try:
            convert(client, args.input, Path(args.output), args)
        finally:
            client.close()
    except (UsageError, ConversionError, OrthancError, httpx.HTTPError, OSError, ValueError) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted, nothing written", file=sys.stderr)
        return 130
    return 0


def _one_line(error: Exception) -> str:
    if isinstance(error, httpx.HTTPError):
        text = http_reason(error)
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


def convert(client: httpx.Client, series_id: str, output: Path, args: argparse.Namespace) -> None:
    """The whole pyramid into ``output``, or nothing at all."""
    pyramid = remote_pyramid(client, series_id)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.part")
    samples = max(int(g.pixel_module.get("SamplesPerPixel", 1) or 1) for g in pyramid.instances.values())
    pixels = sum(level.width * level.height * samples for level in pyramid.levels)
    try:
        with tifffile.TiffWriter(temporary, bigtiff=pixels > _BIGTIFF_PIXELS) as tiff:
            for index, level in enumerate(pyramid.levels):
                page = LevelWriter(client, pyramid, level, args)
                log.info("level %d: %dx%d, tiles %dx%d", index, level.width, level.height, *page.tile)
                page.write(tiff)
        temporary.replace(output)
    finally:
        temporary.unlink(missing_ok=True)


def remote_pyramid(client: httpx.Client, series_id: str) -> Pyramid:
    """The pyramid of a series from the JSON tags of its instances (their pixel data stays on the server)."""
    response = client.get(f"series/{series_id}")
    if response.status_code == 404:
        raise ConversionError(f"unknown series: {series_id}")
    response.raise_for_status()
    geometries: list[InstanceGeometry] = []
    for instance_id in response.json()["Instances"]:
        tags = client.get(f"instances/{instance_id}/tags", params={"short": ""})
        header = client.get(f"instances/{instance_id}/header", params={"short": ""})
        tags.raise_for_status()
        header.raise_for_status()
        geometry = instance_geometry(instance_id, header_dataset(tags.json(), header.json()))
        if geometry is not None:
            geometries.append(geometry)
    if not geometries:
        raise ConversionError(f"series {series_id} is not a whole-slide image")
    return assemble(series_id, geometries)


def header_dataset(tags: dict[str, Any], meta: dict[str, Any]) -> Dataset:
    """The tags a pyramid needs, from Orthanc's "short" JSON (values as strings, sequences as lists)."""
    ds = Dataset()
    wanted = {parse_tag(keyword) for keyword in _TAGS}
    for name, value in tags.items():
        tag = parse_tag(name)
        if tag in wanted or tag >> 16 == 0x0028:
            ds[tag] = make_element(tag, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(str(meta.get("0002,0010", "")).strip())
    return ds


@dataclass
class LevelWriter:
    """One level as one TIFF page: its frames fetched one at a time, in the TIFF's row-major tile order."""

    client: httpx.Client
    pyramid: Pyramid
    level: Level
    args: argparse.Namespace

    def __post_init__(self) -> None:
        first = next(iter(self.level.tiles.values()))
        self.geometry = self.pyramid.instances[first.instance_id]
        self.tile = (self.level.tile_width, self.level.tile_height)
        self.samples = int(self.geometry.pixel_module.get("SamplesPerPixel", 1) or 1)
        self.bits = int(self.geometry.pixel_module.get("BitsAllocated", 8) or 8)
        self.copy = self.geometry.syntax == JPEGBaseline8Bit and not self.args.reencode
        self.native = not self.geometry.syntax.is_compressed and not self.args.reencode

    def write(self, tiff: tifffile.TiffWriter) -> None:
        tiles = self._tiles()
        options: dict[str, Any] = {}
        if self.copy or self.args.reencode:
            first = next(tiles)  # its sampling factors go into the page's tags
            tiles = itertools.chain([first], tiles)
            options = self._jpeg_options(first)
        else:
            # native frames keep their photometric; decoded ones are RGB (or grey)
            decoded = "rgb" if self.samples == 3 else "minisblack"
            photometric = self.geometry.photometric if self.native else "RGB"
            options["photometric"] = _PHOTOMETRIC.get(photometric, decoded)
        shape = (self.level.height, self.level.width) + ((self.samples,) if self.samples > 1 else ())
        tiff.write(
            tiles,
            shape=shape,
            dtype=np.uint8 if self.bits <= 8 else np.uint16,
            tile=(self.level.tile_height, self.level.tile_width),
            metadata=None,
            software=f"{PROG} {software_version()}",
            **options,
        )

    def _jpeg_options(self, first: bytes) -> dict[str, Any]:
        """Tags of a page of JPEG tiles: tifffile would label colour tiles YCbCr; RGB frames stay RGB."""
        if self.samples == 1:
            return {"compression": "jpeg", "photometric": "minisblack"}
        photometric = self.geometry.photometric if self.copy else "YBR_FULL_422"
        space = tifffile.PHOTOMETRIC.RGB if photometric == "RGB" else tifffile.PHOTOMETRIC.YCBCR
        return {
            "compression": "jpeg",
            "photometric": "rgb",
            "subsampling": _sampling(first),
            "compressionargs": {"outcolorspace": space},
        }

    def _tiles(self) -> Iterator[bytes]:
        columns, rows = self.level.tiles_count
        for y in range(rows):
            for x in range(columns):
                source = self.level.tiles.get((x, y))
                if source is None:
                    yield self._background()
                    continue
                response = self.client.get(f"instances/{source.instance_id}/frames/{source.frame}/raw")
                response.raise_for_status()
                yield self._tile(self.pyramid.instances[source.instance_id], response.content)

    def _tile(self, geometry: InstanceGeometry, frame: bytes) -> bytes:
        if self.copy:
            return frame
        if self.native:
            expected = self.level.tile_width * self.level.tile_height * self.samples * (self.bits // 8)
            if len(frame) != expected:
                raise ConversionError(f"a frame of {len(frame)} bytes where a tile holds {expected}")
            return frame
        pixels = decode_pixels(geometry.pixel_module, frame)
        return self._encoded(pixels)

    def _encoded(self, pixels: np.ndarray) -> bytes:
        if self.args.reencode:
            return encode(np.ascontiguousarray(pixels), ImageFormat.JPEG, self.args.jpeg_quality)
        return np.ascontiguousarray(pixels).tobytes()

    def _background(self) -> bytes:
        width, height = self.tile
        value = self.args.color if self.samples == 3 else self.args.color[:1]
        pixels = np.empty((height, width, self.samples), np.uint8 if self.bits <= 8 else np.uint16)
        pixels[...] = value
        pixels = pixels[..., 0] if self.samples == 1 else pixels
        if self.copy or self.args.reencode:
            return encode(pixels, ImageFormat.JPEG, self.args.jpeg_quality)
        return pixels.tobytes()


def _sampling(stream: bytes) -> tuple[int, int]:
    """The horizontal and vertical sampling factors of the first component (the luma) of a JPEG stream."""
    for marker, start, _ in jpeg.segments(stream):
        if marker in (0xC0, 0xC1, 0xC2):
            factors = stream[start + 11]
            return factors >> 4, factors & 0x0F
    raise ConversionError("a JPEG frame without a frame header")


# tifffile looks up a JPEG encoder even when the tiles come already encoded, and the encoder lives in imagecodecs,
# which this tool does not need: the tiles given to tifffile are always bytes, so the encoder is never called.
def _no_encoder(*_: Any, **__: Any) -> bytes:
    raise NotImplementedError("JPEG tiles are given to tifffile already encoded")


tifffile.TIFF.COMPRESSORS._codecs.setdefault(7, _no_encoder)


if __name__ == "__main__":
    sys.exit(main())
