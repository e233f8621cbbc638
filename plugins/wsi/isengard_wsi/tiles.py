"""One tile of a pyramid: the stored frame, read alone from the storage, and turned into a picture when needed.

orthanc-wsi serves a JPEG Baseline frame as it is stored (the browser decodes it), and decodes any other frame
(JPEG 2000, uncompressed) to answer a PNG, so that lossless tiles stay lossless. Isengard does the same.

To read one frame without the rest of the file, the byte range of every frame of an instance is found once (the
pixel data element is walked item by item, PS3.5 A.4) and cached with the pyramid; frames are then read by one
ranged read of a group of neighbours (``frame_group``: the tiles a viewer asks for next, kept by the cache). Files
stored compressed (StorageCompression) have no ranges: their frame comes from the whole file.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEG2000TransferSyntaxes, JPEGBaseline8Bit

from isengard.context import ServerContext
from isengard.dicom.imaging import ImageFormat, decode_frame, encode, raw_frame
from isengard.errors import ErrorCode, OrthancError
from isengard.model import CompressionType, MetadataType, ResourceType

from .pyramid import Level, Pyramid

_ITEM = 0xE000FFFE  # (FFFE,E000) read as a little-endian 32-bit word
_UNDEFINED = 0xFFFFFFFF

#: The colour of the tiles a sparse level lacks: orthanc-wsi's default background, white.
BACKGROUND = 255


@dataclass(frozen=True)
class FrameRanges:
    """Where each frame is in the stored file; ``ranges`` None when frames cannot be read alone.

    With ``items``, a range is the frame's item (its 8-byte header included), from the Basic Offset Table: from
    one item to the next, the last one to the end its header gives. Otherwise a range is exactly the frame's bytes.
    """

    uuid: str
    content_type: int
    ranges: list[tuple[int, int]] | None
    items: bool = False


async def frame_ranges(context: ServerContext, instance_id: str, count: int) -> FrameRanges | None:
    """Locate every frame of an instance in its file; None when the file must be read whole.

    Native frames take two small reads, a Basic Offset Table with an entry per frame (PS3.5 A.4) three (the last
    frame's item header gives where it ends); without an offset table the pixel data is read once and walked item
    by item.
    """
    resources = await context.index.get_resources(ResourceType.INSTANCE, [instance_id])
    info = resources[0].attachment if resources else None
    offset = resources[0].metadata.get(MetadataType.PIXEL_DATA_OFFSET) if resources else None
    if info is None or offset is None or info.compression is not CompressionType.NONE:
        return None
    start, size = int(offset), info.uncompressed_size
    head = await context.storage.read_range(info.uuid, info.content_type, start, min(start + 20, size))
    if len(head) < 20:
        return FrameRanges(info.uuid, info.content_type, None)
    header = 12 if head[4:6] in (b"OB", b"OW") else 8
    (length,) = struct.unpack_from("<I", head, header - 4)
    if length != _UNDEFINED:  # native: the frames follow each other, all of the same size
        frame = length // count
        ranges = [(start + header + i * frame, start + header + (i + 1) * frame) for i in range(count)]
        return FrameRanges(info.uuid, info.content_type, None if length % count else ranges)
    tag, table_length = struct.unpack_from("<II", head, header)
    if tag == _ITEM and table_length == 4 * count:
        table_start = start + header + 8
        table = await context.storage.read_range(info.uuid, info.content_type, table_start, table_start + table_length)
        first = table_start + table_length
        starts = [first + value for value in struct.unpack(f"<{count}I", table)]
        last = await context.storage.read_range(info.uuid, info.content_type, starts[-1], starts[-1] + 8)
        if len(last) == 8 and struct.unpack_from("<I", last)[0] == _ITEM:
            ends = [*starts[1:], starts[-1] + 8 + struct.unpack_from("<I", last, 4)[0]]
            return FrameRanges(info.uuid, info.content_type, list(zip(starts, ends, strict=True)), True)
    data = await context.storage.read_range(info.uuid, info.content_type, start, size)
    return FrameRanges(info.uuid, info.content_type, await asyncio.to_thread(_walk_items, data, start, header, count))


def _walk_items(data: bytes, base: int, position: int, count: int) -> list[tuple[int, int]] | None:
    """The fragments of encapsulated pixel data, when there is one per frame (else None)."""
    fragments: list[tuple[int, int]] = []
    first = True
    while position + 8 <= len(data):
        tag, item_length = struct.unpack_from("<II", data, position)
        if tag != _ITEM:
            break  # the sequence delimiter
        if not first:  # the first item is the Basic Offset Table
            fragments.append((base + position + 8, base + position + 8 + item_length))
        first = False
        position += 8 + item_length
    return fragments if len(fragments) == count else None


def frame_group(located: list[tuple[int, int]], frame: int, size: int) -> range:
    """The frames read together with ``frame``: the block of about ``size`` bytes of consecutive frames holding
    it (blocks aligned on multiples of their frame count, so that tiles asked in any order share reads)."""
    mean = (located[-1][1] - located[0][0]) / len(located)
    per_read = max(1, int(size // max(1.0, mean)))
    first = frame - frame % per_read
    return range(first, min(first + per_read, len(located)))


async def read_frames(context: ServerContext, ranges: FrameRanges, frames: range) -> list[bytes] | None:
    """The stored bytes of consecutive located frames, in one ranged read; None when they cannot be read so (a
    frame of several fragments, a wrong offset table): they must then come from the whole file."""
    if ranges.ranges is None:
        return None
    located = ranges.ranges[frames.start : frames.stop]
    begin = located[0][0]
    data = await context.storage.read_range(ranges.uuid, ranges.content_type, begin, located[-1][1])
    return _split(data, begin, located, items=ranges.items)


async def read_from_file(context: ServerContext, instance_id: str, frame: int) -> bytes:
    """The stored bytes of one frame, from the whole file (stored compressed, or frames not located)."""
    data = await context.store.read_dicom(instance_id)
    stored, _ = await asyncio.to_thread(raw_frame, data, frame)
    return stored


def _split(data: bytes, begin: int, located: list[tuple[int, int]], *, items: bool) -> list[bytes] | None:
    """The frames in ``data`` (read from offset ``begin``); None when an item is not the one fragment of its frame
    (several fragments per frame, or a wrong offset table) or the file is shorter than its ranges."""
    frames = []
    for start, end in located:
        offset = start - begin
        if offset < 0 or end - begin > len(data) or end - start < (8 if items else 0):
            return None
        if not items:
            frames.append(data[offset : end - begin])
        elif struct.unpack_from("<II", data, offset) == (_ITEM, end - start - 8):
            frames.append(data[offset + 8 : end - begin])
        else:
            return None
    return frames


def is_jpeg(pyramid: Pyramid, level: Level) -> bool:
    """Whether the level's frames are JPEG Baseline, which browsers show as stored."""
    source = next(iter(level.tiles.values()), None)
    return source is not None and pyramid.instances[source.instance_id].syntax == JPEGBaseline8Bit


def decode_pixels(pixel_module: Dataset, frame: bytes) -> np.ndarray:
    """Decode one stored frame with the kernel's decoders, as a one-frame dataset.

    A colour JPEG 2000 codestream carries its own colour transform, which the decoder undoes (PS3.5 8.2.4):
    the samples are RGB whatever the file's photometric says. OrthancWSIDicomizer labels its JPEG 2000 frames
    YBR_FULL_422, which would make a second YCbCr conversion; orthanc-wsi trusts the codestream, so does this.
    """
    single = copy.deepcopy(pixel_module)
    single.NumberOfFrames = 1
    syntax = UID(str(single.file_meta.TransferSyntaxUID))
    if syntax in JPEG2000TransferSyntaxes and int(single.get("SamplesPerPixel", 1) or 1) == 3:
        single.PhotometricInterpretation = "RGB"
    single.PixelData = encapsulate([frame]) if syntax.is_encapsulated else frame
    single["PixelData"].VR = "OB"
    if syntax.is_encapsulated:
        single["PixelData"].is_undefined_length = True
    return decode_frame(single, 0).pixels


def is_color(pyramid: Pyramid, level: Level) -> bool:
    source = next(iter(level.tiles.values()))
    return not pyramid.instances[source.instance_id].photometric.startswith("MONOCHROME")


def background(width: int, height: int, color: bool) -> np.ndarray:
    """Pixels of the background colour, for the holes of a TILED_SPARSE level."""
    return np.full((height, width, 3) if color else (height, width), BACKGROUND, np.uint8)


@functools.cache
def background_tile(width: int, height: int, color: bool, mime: str) -> bytes:
    """A whole tile of the background colour, encoded as the level's tiles are answered."""
    return encode_tile(background(width, height, color), mime)


#: The picture types a tile can be answered in (orthanc-wsi 2.x).
JPEG, PNG, JP2 = "image/jpeg", "image/png", "image/jp2"


def negotiate(accept: str | None, default: str) -> str:
    """The tile's type from the Accept header, as orthanc-wsi 2.x chooses it: the last of image/jpeg, image/png
    and image/jp2 listed wins (parameters such as q are ignored); ``*/*`` or ``image/*`` alone keep the default,
    which follows the stored frames; an Accept header naming none of these is a 406."""
    if not accept or not accept.strip():
        return default
    chosen, acceptable = default, False
    for entry in accept.split(","):
        media = entry.split(";")[0].strip().lower()
        if media in (JPEG, PNG, JP2):
            chosen, acceptable = media, True
        elif media in ("*/*", "image/*"):
            acceptable = True
    if not acceptable:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"No tile format matches the Accept header: {accept}")
    return chosen


def encode_tile(pixels: np.ndarray, mime: str) -> bytes:
    """Decoded pixels as PNG, JPEG (quality 90, as orthanc-wsi) or lossless JPEG 2000 (a JP2 file)."""
    pixels = np.ascontiguousarray(pixels)
    if mime == JP2:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG2000", irreversible=False)
        return out.getvalue()
    return encode(pixels, ImageFormat.JPEG if mime == JPEG else ImageFormat.PNG)
