"""Small DICOM files for the imaging tests, for cases the samples lack: several frames, a palette, signed values
with a rescale, 12-bit MONOCHROME1, uncompressed YBR_FULL, big-endian samples, a frame split in two fragments.

Pixel values and UIDs are deterministic, so the answers recorded from Orthanc (record.py) stay valid.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

ROWS, COLUMNS = 40, 60
FRAMES = 3
_Y, _X = np.mgrid[0:ROWS, 0:COLUMNS]


def frame_values(k: int) -> np.ndarray:
    """Frame k of the multi-frame files: a ramp distinct in every pixel and every frame."""
    return (_X * 10 + _Y + k * 1000).astype(np.uint16)


def signed_values(k: int) -> np.ndarray:
    """Frame k of "signed-rescale": stored -300..290 (+50 per frame); modality value = 2 * stored - 100."""
    return (_X * 10 - 300 + k * 50).astype(np.int16)


def palette_lut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """16-bit red, green and blue tables of 256 entries."""
    ramp = np.arange(256, dtype=np.uint16)
    return ramp * 257, (255 - ramp) * 257, np.full(256, 128 * 257, np.uint16)


def rgb_values() -> np.ndarray:
    return np.stack([_X * 4 % 256, _Y * 6 % 256, np.full_like(_X, 200)], axis=-1).astype(np.uint8)


def _dataset(
    name: str,
    *,
    frames: int | None = None,
    bits: int = 16,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    syntax: UID = ExplicitVRLittleEndian,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    uid = generate_uid(entropy_srcs=["isengard-imaging", name])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["isengard-imaging", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["isengard-imaging", "series"])
    ds.PatientID, ds.PatientName, ds.Modality, ds.SeriesDescription = "IMAGING", "Imaging^Test", "OT", name
    ds.Rows, ds.Columns = ROWS, COLUMNS
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    return ds


def _jpeg(values: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(values).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _encapsulated(ds: Dataset, fragments: list[bytes], fragments_per_frame: int = 1) -> None:
    ds.PixelData = encapsulate(fragments, fragments_per_frame=fragments_per_frame, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def gray8(k: int) -> np.ndarray:
    """Frame k of the 8-bit JPEG files."""
    return ((_X * 4 + k * 60) % 256).astype(np.uint8)


def build(name: str) -> bytes:
    """The DICOM file called ``name`` (one of NAMES)."""
    if name == "multiframe-raw":
        ds = _dataset(name, frames=FRAMES)
        ds.PixelData = np.stack([frame_values(k) for k in range(FRAMES)]).tobytes()
    elif name == "multiframe-rle":
        ds = _dataset(name, frames=FRAMES)
        values = np.stack([frame_values(k) for k in range(FRAMES)])
        ds.PixelData = values.tobytes()
        ds.compress(RLELossless, values)
    elif name == "multiframe-jpeg":
        ds = _dataset(name, frames=FRAMES, bits=8, syntax=JPEGBaseline8Bit)
        _encapsulated(ds, [_jpeg(gray8(k)) for k in range(FRAMES)])
    elif name == "fragmented-jpeg":
        ds = _dataset(name, frames=1, bits=8, syntax=JPEGBaseline8Bit)
        _encapsulated(ds, [_jpeg(gray8(0))], fragments_per_frame=2)
    elif name == "signed-rescale":
        ds = _dataset(name, frames=2, signed=True)
        ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 2, -100, 0, 400
        ds.PixelData = np.stack([signed_values(k) for k in range(2)]).tobytes()
    elif name == "palette":
        ds = _dataset(name, bits=8, photometric="PALETTE COLOR")
        for color, table in zip(("Red", "Green", "Blue"), palette_lut(), strict=True):
            setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{color}PaletteColorLookupTableData", table.astype("<u2").tobytes())
        ds.PixelData = ((_X * 4) % 256).astype(np.uint8).tobytes()
    elif name == "monochrome1-12bit":
        ds = _dataset(name, photometric="MONOCHROME1")
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = frame_values(0).tobytes()
    elif name == "ybr-full":
        ds = _dataset(name, bits=8, photometric="YBR_FULL", samples=3)
        ds.PixelData = convert_color_space(rgb_values(), "RGB", "YBR_FULL").tobytes()
    elif name == "big-endian":
        ds = _dataset(name, syntax=ExplicitVRBigEndian)
        ds.PixelData = frame_values(1).astype(">u2").tobytes()  # pydicom writes the bytes as given
    else:
        raise KeyError(name)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


NAMES = (
    "multiframe-raw",
    "multiframe-rle",
    "multiframe-jpeg",
    "fragmented-jpeg",
    "signed-rescale",
    "palette",
    "monochrome1-12bit",
    "ybr-full",
    "big-endian",
)
