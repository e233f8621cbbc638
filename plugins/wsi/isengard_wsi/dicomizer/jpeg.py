"""JPEG streams as DICOM frames: TIFF tiles made whole, and their colour model told from the stream itself.

A tiled TIFF may keep the quantization and Huffman tables once in its JPEGTables tag (TIFF Technical Note 2), and
its tiles are then "abbreviated" streams: a DICOM JPEG Baseline frame must be a complete interchange stream
(PS3.5 8.2.1), so the tables are put back in each tile, between its SOI and its first marker. Nothing else of the
entropy-coded data changes, so a frame decodes to the very pixels of the tile.

Which colour model the samples hold is the decoder's guess (JFIF implies YCbCr; an Adobe APP14 marker says it;
else component ids 'R','G','B' mean RGB). The DICOM photometric interpretation must say the same thing: a JFIF or
Adobe-transform-1 stream is YBR_FULL_422, an RGB stream is RGB, and an RGB stream without an Adobe marker gets
one (transform 0) so that no decoder converts its samples as if they were YCbCr, as OrthancWSIDicomizer does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
_APP0, _APP14, _SOF0, _SOS = 0xE0, 0xEE, 0xC0, 0xDA
#: APP14 "Adobe", version 100, no flags, transform 0 (the samples are stored as they are: RGB).
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x80\x00\x00\x00\x00"
#: Start-of-frame markers (C0-CF without DHT C4, JPG C8 and DAC CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class JpegError(ValueError):
    """A stream that is not a JPEG, or not one a DICOM JPEG Baseline frame can hold."""


@dataclass(frozen=True)
class JpegInfo:
    """What the header segments of a stream say, up to its first scan."""

    baseline: bool  # SOF0: 8-bit Huffman sequential, what JPEG Baseline (1.2.840.10008.1.2.4.50) allows
    width: int
    height: int
    components: int
    component_ids: bytes
    subsampled: bool
    jfif: bool
    adobe_transform: int | None


def segments(stream: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each header segment after SOI, up to and including the first SOS."""
    if not stream.startswith(SOI):
        raise JpegError("not a JPEG stream (no SOI marker)")
    out, position = [], 2
    while position + 4 <= len(stream):
        if stream[position] != 0xFF:
            raise JpegError(f"corrupt JPEG header at byte {position}")
        marker = stream[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", stream, position + 2)
        out.append((marker, position, position + 2 + length))
        if marker == _SOS:
            return out
        position += 2 + length
    return out


def inspect(stream: bytes) -> JpegInfo:
    found = segments(stream)
    frame = next(((m, s) for m, s, _ in found if m in _SOF), None)
    if frame is None:
        raise JpegError("JPEG stream without a frame header (SOF)")
    marker, start = frame
    _precision, height, width, count = struct.unpack_from(">BHHB", stream, start + 4)
    ids = bytes(stream[start + 10 + 3 * i] for i in range(count))
    factors = {stream[start + 11 + 3 * i] for i in range(count)}
    adobe = next((stream[s + 15] for m, s, e in found if m == _APP14 and stream[s + 4 : s + 9] == b"Adobe"), None)
    jfif = any(m == _APP0 and stream[s + 4 : s + 9] == b"JFIF\0" for m, s, _ in found)
    return JpegInfo(marker == _SOF0 and _precision == 8, width, height, count, ids, len(factors) > 1, jfif, adobe)


def merge_tables(tile: bytes, tables: bytes | None) -> bytes:
    """The tile as a complete stream: the JPEGTables (SOI ... EOI) inserted after the tile's own SOI."""
    if not tables:
        return tile
    if not (tables.startswith(SOI) and tables.endswith(EOI)) or not tile.startswith(SOI):
        raise JpegError("malformed JPEGTables or JPEG tile")
    return SOI + tables[2:-2] + tile[2:]


def is_rgb(info: JpegInfo, *, tiff_says_rgb: bool) -> bool:
    """Whether a three-component stream holds RGB samples (no colour transform), as a decoder would read it."""
    if info.adobe_transform is not None:
        return info.adobe_transform == 0
    if info.jfif:
        return False
    return info.component_ids == b"RGB" or tiff_says_rgb


def with_adobe_rgb(stream: bytes) -> bytes:
    """An RGB stream with an Adobe APP14 transform-0 marker (placed before its frame header), added if missing."""
    found = segments(stream)
    if any(m == _APP14 for m, _, _ in found):
        return stream
    start = next(s for m, s, _ in found if m in _SOF)
    return stream[:start] + ADOBE_RGB + stream[start:]


def photometric(info: JpegInfo, *, rgb: bool) -> str:
    """The photometric interpretation of a frame; VL Whole Slide Microscopy allows YBR_FULL_422 but not
    YBR_FULL for lossy JPEG (PS3.3 C.8.12.4.1.5), which is what baseline JPEG of colour images is labelled."""
    if info.components == 1:
        return "MONOCHROME2"
    return "RGB" if rgb else "YBR_FULL_422"
