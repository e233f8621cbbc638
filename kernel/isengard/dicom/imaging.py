"""Frames of pixel data turned into pictures and arrays with Orthanc's semantics (measured on Orthanc 1.10).

- ``preview``: grayscale values stretched from the frame's [min, max] to [0, 255] (rounded), MONOCHROME1 inverted;
  colour frames (RGB, YBR_*, PALETTE COLOR) as RGB.
- ``image-uint8`` / ``image-uint16`` / ``image-int16``: the stored values cropped to the type, nothing else;
  colour frames have no such form (HTTP 415).
- ``rendered``: modality rescale, then the window (arguments, else the first WindowCenter/WindowWidth when both
  are present, else the range of BitsStored), truncated to [0, 255], MONOCHROME1 inverted; then resized to fit
  ?width/?height with nearest-neighbour sampling, after a 5x5 Gaussian when ?smooth shrinks the picture.

Only the requested frame is decoded. Everything here is CPU work: callers run it in a worker thread.
"""

from __future__ import annotations

import enum
import functools
import gzip
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import (
    JPEG2000,
    JPEG2000MC,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from ..errors import ErrorCode, OrthancError
from .parse import bad_file

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: Content types of a stored frame (/raw), as Orthanc labels them; everything else is application/octet-stream.
_RAW_CONTENT_TYPES = {
    JPEGBaseline8Bit: "image/jpeg",
    JPEG2000Lossless: "image/jp2",
    JPEG2000: "image/jp2",
    JPEG2000MCLossless: "image/jp2",
    JPEG2000MC: "image/jp2",
}


#: Upscaling is allowed (as in Orthanc) up to this many pixels, so that ?width=1000000 cannot exhaust the memory.
MAX_RENDERED_PIXELS = 1 << 26


class Extraction(enum.Enum):
    """What /preview, /image-uint8, ... make of a frame (Orthanc's "image extraction modes")."""

    PREVIEW = "preview"
    UINT8 = "image-uint8"
    UINT16 = "image-uint16"
    INT16 = "image-int16"
    RENDERED = "rendered"


class ImageFormat(enum.Enum):
    """The picture formats Orthanc encodes, in the order it prefers them when the Accept header allows several."""

    PNG = "image/png"
    JPEG = "image/jpeg"
    PAM = "image/x-portable-arbitrarymap"


@dataclass(frozen=True)
class Rendering:
    """The arguments of /rendered; zero width/height means "keep that dimension free"."""

    window_center: float | None = None
    window_width: float | None = None
    width: int = 0
    height: int = 0
    smooth: bool = False


@dataclass
class Frame:
    """One decoded frame and what is needed to map its values."""

    pixels: np.ndarray  # 2-D stored values, or (rows, columns, 3) uint8 RGB
    monochrome1: bool
    slope: float
    intercept: float
    window: tuple[float, float] | None  # the first (center, width) of the file, when it has both
    bits_stored: int

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3


def undecodable(details: str) -> OrthancError:
    """Orthanc answers 415 when it cannot turn the pixel data into an image."""
    return OrthancError(ErrorCode.NOT_IMPLEMENTED, details, http_status=415)


def frame_count(value: object) -> int:
    """NumberOfFrames as Orthanc counts frames: one when the tag is absent or unreadable."""
    try:
        count = int(str(value).strip()) if value not in (None, "") else 1
    except ValueError:
        return 1
    return count if count > 0 else 1


def open_dataset(data: bytes) -> Dataset:
    """The whole dataset, pixel data included; files without a meta header get the syntax they were read with."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types on damaged files
        raise bad_file(f"Cannot parse the DICOM file: {exc}") from None
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return ds


def first_number(value: Any) -> float | None:
    """The first value of a numeric attribute (single or multi-valued), or None when absent or unreadable."""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _number(ds: Dataset, keyword: str) -> float | None:
    return first_number(ds.get(keyword))


def decode_frame(ds: Dataset, index: int) -> Frame:
    """Decode frame ``index`` only; a frame past the end is a 404, undecodable pixel data a 415."""
    if index >= frame_count(ds.get("NumberOfFrames")):
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"This instance has no frame {index}")
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise undecodable("This instance has no pixel data")
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        pixels = pixel_array(ds, index=index)
    except Exception as exc:  # the decoders raise RuntimeError, ValueError, NotImplementedError...
        pixels = _decode_repaired_jpeg(ds, index) if syntax in (JPEGBaseline8Bit, JPEGExtended12Bit) else None
        if pixels is None:
            raise undecodable(f"Cannot decode the pixel data ({syntax.name}): {exc}") from None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    bits_stored = int(_number(ds, "BitsStored") or _number(ds, "BitsAllocated") or 8)
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        try:
            pixels = apply_color_lut(pixels, ds)
        except Exception as exc:
            raise undecodable(f"Cannot apply the palette: {exc}") from None
        bits_stored = 8 * pixels.dtype.itemsize
    if pixels.ndim == 3:
        if pixels.shape[2] != 3:
            raise undecodable(f"Unsupported photometric interpretation {photometric}")
        if pixels.dtype != np.uint8:  # 16-bit colour: keep the most significant bits
            pixels = np.clip(pixels.astype(np.int64) >> max(bits_stored - 8, 0), 0, 255).astype(np.uint8)
    elif pixels.ndim != 2:
        raise undecodable(f"Unexpected pixel array of shape {pixels.shape}")
    center, width = _number(ds, "WindowCenter"), _number(ds, "WindowWidth")
    return Frame(
        pixels=pixels,
        monochrome1=photometric == "MONOCHROME1",
        slope=_number(ds, "RescaleSlope") or 1.0,
        intercept=_number(ds, "RescaleIntercept") or 0.0,
        window=(center, width) if center is not None and width is not None else None,
        bits_stored=bits_stored,
    )


def _decode_repaired_jpeg(ds: Dataset, index: int) -> np.ndarray | None:
    """Retry a sequential JPEG whose scan header says Se=0 (old encoders; libjpeg refuses what DCMTK accepts)."""
    try:
        data = bytearray(get_frame(ds.PixelData, index, number_of_frames=frame_count(ds.get("NumberOfFrames"))))
        start = data.index(b"\xff\xda")
        components = data[start + 4]
        spectral = start + 5 + 2 * components  # Ss, then Se
        if data[spectral] != 0 or data[spectral + 1] == 63:
            return None
        data[spectral + 1] = 63
        single = Dataset()
        single.update(ds.group_dataset(0x0028))
        single.file_meta = ds.file_meta
        single.NumberOfFrames = 1
        single.PixelData = encapsulate([bytes(data)])
        single["PixelData"].VR = "OB"
        return pixel_array(single, index=0)
    except Exception:
        return None


# -- value mapping ----------------------------------------------------------------------------------------------


def extract(frame: Frame, mode: Extraction, rendering: Rendering | None = None) -> np.ndarray:
    """The picture a mode asks for: uint8 grayscale or RGB, uint16, or int16."""
    if mode is Extraction.PREVIEW:
        return frame.pixels if frame.is_color else _invert_if(frame, _stretch(frame.pixels))
    if mode is Extraction.RENDERED:
        return _render(frame, rendering or Rendering())
    if frame.is_color:
        raise OrthancError(
            ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"A color image has no {mode.value} form", http_status=415
        )
    dtype = {Extraction.UINT8: np.uint8, Extraction.UINT16: np.uint16, Extraction.INT16: np.int16}[mode]
    limits = np.iinfo(dtype)
    return np.clip(frame.pixels, limits.min, limits.max).astype(dtype)


def _invert_if(frame: Frame, image: np.ndarray) -> np.ndarray:
    return 255 - image if frame.monochrome1 else image


def _stretch(pixels: np.ndarray) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    if high == low:
        return np.zeros(pixels.shape, np.uint8)
    return np.floor((pixels.astype(np.float64) - low) * (255.0 / (high - low)) + 0.5).astype(np.uint8)


def _render(frame: Frame, rendering: Rendering) -> np.ndarray:
    """Window, fit, then invert MONOCHROME1 (Orthanc smooths the non-inverted values).

    Only the pixels the resized picture samples (and their 5x5 neighbourhoods when smoothing) are windowed.
    """
    window = (lambda pixels: pixels) if frame.is_color else _windowing(frame, rendering)
    rows, columns = frame.pixels.shape[:2]
    target = _target_size(rows, columns, rendering)
    if target is None:
        return _invert_if(frame, window(frame.pixels))
    row_index = ((2 * np.arange(target[0]) + 1) * rows) // (2 * target[0])
    column_index = ((2 * np.arange(target[1]) + 1) * columns) // (2 * target[1])
    if not (rendering.smooth and (target[0] < rows or target[1] < columns)):
        return _invert_if(frame, window(frame.pixels[np.ix_(row_index, column_index)]))
    # The separable 1-4-6-4-1 Gaussian with replicated borders, evaluated at the sampled pixels only.
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.uint32)
    offsets = np.arange(-2, 3)
    band = window(frame.pixels[np.clip(row_index[:, None] + offsets, 0, rows - 1)]).astype(np.uint32)
    vertical = np.tensordot(kernel, band, axes=([0], [1]))  # (target rows, columns[, 3])
    around = vertical[:, np.clip(column_index[:, None] + offsets, 0, columns - 1)]
    smoothed = np.tensordot(around, kernel, axes=([2], [0]))  # (target rows, target columns[, 3])
    return _invert_if(frame, (smoothed // 256).astype(np.uint8))


def _windowing(frame: Frame, rendering: Rendering) -> Callable[[np.ndarray], np.ndarray]:
    """Stored values to 8 bits: rescale, then the window, truncated as Orthanc does."""
    center, width = frame.window or (2.0 ** (frame.bits_stored - 1), 2.0**frame.bits_stored)
    if rendering.window_center is not None:
        center = rendering.window_center
    if rendering.window_width is not None:
        width = rendering.window_width
    width = width if width > 0 else 1.0
    low = center - width / 2

    def apply(pixels: np.ndarray) -> np.ndarray:
        rescaled = pixels.astype(np.float64) * frame.slope + frame.intercept
        # "* 255 / width" in this order: "* (255 / width)" rounds differently from Orthanc at integer boundaries
        return np.floor(np.clip((rescaled - low) * 255.0 / width, 0, 255)).astype(np.uint8)

    return apply


def _target_size(rows: int, columns: int, rendering: Rendering) -> tuple[int, int] | None:
    """The size fitting ?width/?height with the same aspect ratio (upscaling too), or None to keep the frame's."""
    if not rendering.width and not rendering.height:
        return None
    ratio = min(
        rendering.width / columns if rendering.width else math.inf,
        rendering.height / rows if rendering.height else math.inf,
    )
    target = (max(1, math.floor(rows * ratio + 0.5)), max(1, math.floor(columns * ratio + 0.5)))
    if target[0] * target[1] > MAX_RENDERED_PIXELS:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"A rendered picture of {target[1]}x{target[0]} is too large"
        )
    return None if target == (rows, columns) else target


# -- encoding ---------------------------------------------------------------------------------------------------


def encode(image: np.ndarray, fmt: ImageFormat, quality: int = 90) -> bytes:
    """PNG (8/16-bit, int16 as two's complement), JPEG (8-bit only: else 406) or PAM (big-endian samples)."""
    if fmt is ImageFormat.PAM:
        return _pam(image)
    if fmt is ImageFormat.JPEG and image.dtype != np.uint8:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, "JPEG can only encode 8-bit images")
    if image.dtype == np.int16:
        image = image.view(np.uint16)
    picture = Image.fromarray(image)
    out = io.BytesIO()
    if fmt is ImageFormat.JPEG:
        picture.save(out, format="JPEG", quality=quality)
    else:
        picture.save(out, format="PNG", compress_level=1)  # 5-10x faster than the default, files ~7% larger
    return out.getvalue()


def _pam(image: np.ndarray) -> bytes:
    depth = image.shape[2] if image.ndim == 3 else 1
    maxval = 255 if image.dtype == np.uint8 else 65535
    header = (
        f"P7\nWIDTH {image.shape[1]}\nHEIGHT {image.shape[0]}\nDEPTH {depth}\nMAXVAL {maxval}\n"
        f"TUPLTYPE {'RGB' if depth == 3 else 'GRAYSCALE'}\nENDHDR\n"
    )
    samples = image if image.dtype == np.uint8 else image.astype(image.dtype.newbyteorder(">"))
    return header.encode("ascii") + samples.tobytes()


@functools.cache
def unsupported_picture() -> bytes:
    """The PNG answered instead of a 415 when the client asks ?returnUnsupportedImage: a grey tile, crossed out."""
    tile = np.full((128, 128), 64, np.uint8)
    diagonal = np.arange(128)
    for offset in range(-2, 3):
        tile[diagonal, np.clip(diagonal + offset, 0, 127)] = tile[
            diagonal, np.clip(127 - diagonal + offset, 0, 127)
        ] = 192
    return encode(tile, ImageFormat.PNG)


def render(data: bytes, index: int, mode: Extraction, rendering: Rendering, fmt: ImageFormat, quality: int) -> bytes:
    """The whole pipeline of /preview, /image-*, /rendered: parse, decode one frame, map, encode."""
    return encode(extract(decode_frame(open_dataset(data), index), mode, rendering), fmt, quality)


# -- stored frames and arrays -----------------------------------------------------------------------------------


def raw_frame(data: bytes, index: int, *, compress: bool = False) -> tuple[bytes, str]:
    """The frame as stored (fragments joined for encapsulated syntaxes, little-endian samples otherwise)."""
    ds = open_dataset(data)
    if "PixelData" not in ds:
        raise bad_file("Cannot access a raw frame: this instance has no pixel data")
    count = frame_count(ds.get("NumberOfFrames"))
    if index >= count:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"This instance has {count} frame(s)")
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        if syntax.is_encapsulated:
            frame = get_frame(ds.PixelData, index, number_of_frames=count)
        else:
            frame = _native_frame(ds, index)
    except Exception as exc:  # a damaged offset table or fragment, a missing Rows...
        raise bad_file(f"Cannot access a raw frame: {exc}") from None
    if compress:
        return gzip.compress(frame), "application/gzip"
    content_type = _RAW_CONTENT_TYPES.get(syntax, "application/octet-stream") if syntax.is_encapsulated else None
    return frame, content_type or "application/octet-stream"


def _native_frame(ds: Dataset, index: int) -> bytes:
    bits = int(ds.BitsAllocated)
    size = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * bits + 7) // 8
    frame = ds.PixelData[index * size : (index + 1) * size]
    if len(frame) != size:
        raise ValueError(f"the pixel data is shorter than frame {index}")
    if bits in (16, 32) and not ds.file_meta.TransferSyntaxUID.is_little_endian:  # Orthanc answers little-endian
        frame = little_endian(frame, bits)
    return frame


def little_endian(frame: bytes, bits: int) -> bytes:
    """Samples of ``bits`` (16 or 32) stored big endian, swapped."""
    return np.frombuffer(frame, dtype=f">u{bits // 8}").astype(f"<u{bits // 8}").tobytes()


def numpy_frame(frame: Frame, *, rescale: bool) -> np.ndarray:
    """Orthanc's /numpy layout: (rows, columns, channels); grayscale rescaled to float32 unless told not to.

    Orthanc 1.10 floors the rescaled values (411.38 gives 411.0); clients that need the fractions ask ?rescale=0.
    """
    if frame.is_color:
        return frame.pixels
    values = np.floor(frame.pixels * frame.slope + frame.intercept).astype(np.float32) if rescale else frame.pixels
    return values[:, :, np.newaxis]


def numpy_answer(data: bytes, index: int | None, *, rescale: bool, compress: bool) -> bytes:
    """A .npy (or .npz with ``compress``) of frame ``index``, or of every frame stacked when it is None."""
    return npy_file(numpy_frames(data, index, rescale=rescale), compress=compress)


def numpy_frames(data: bytes, index: int | None, *, rescale: bool) -> np.ndarray:
    """Frame ``index`` of a file in Orthanc's /numpy layout, or (frames, rows, columns, channels) when None."""
    ds = open_dataset(data)
    if index is not None:
        return numpy_frame(decode_frame(ds, index), rescale=rescale)
    frames = range(frame_count(ds.get("NumberOfFrames")))
    return np.stack([numpy_frame(decode_frame(ds, i), rescale=rescale) for i in frames])


def npy_file(array: np.ndarray, *, compress: bool) -> bytes:
    """The bytes of a .npy file, or of a compressed .npz holding the array as ``arr_0`` (NumPy's default)."""
    out = io.BytesIO()
    if compress:
        np.savez_compressed(out, array)
    else:
        np.save(out, array, allow_pickle=False)
    return out.getvalue()


def matlab_answer(data: bytes, index: int) -> str:
    """The stored values as a Matlab/Octave expression, row by row (colour: a reshaped RGB volume)."""
    pixels = decode_frame(open_dataset(data), index).pixels
    if pixels.ndim == 3:
        values = " ".join(map(str, pixels.ravel().tolist()))
        rows, columns = pixels.shape[:2]
        return f"double(permute(reshape([ {values} ], [ 3 {rows} {columns} ]), [ 3 2 1 ]))"
    lines = ("".join(f"{v} " for v in row) for row in pixels.tolist())
    return "double([ " + "; ".join(lines) + "])"
