"""The value mapping, encoders and frame access of isengard.dicom.imaging, on small arrays and real samples.

The rules tested here were measured on Orthanc 1.10.1 (tests/test_imaging.py compares whole pictures with it).
"""

from __future__ import annotations

import gzip
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from isengard.dicom.imaging import (
    Extraction,
    Frame,
    ImageFormat,
    Rendering,
    decode_frame,
    encode,
    extract,
    frame_count,
    matlab_answer,
    numpy_answer,
    open_dataset,
    raw_frame,
)
from isengard.errors import ErrorCode, OrthancError
from isengard.rest.frames import negotiate
from isengard.testing import sample


def gray(pixels: np.ndarray, **kwargs: object) -> Frame:
    values: dict[str, object] = {"monochrome1": False, "slope": 1.0, "intercept": 0.0, "window": None}
    values["bits_stored"] = 16
    values.update(kwargs)
    return Frame(pixels=pixels, **values)  # type: ignore[arg-type]


def dataset_bytes(pixels: np.ndarray, frames: int = 1, syntax: str = ExplicitVRLittleEndian, **tags: object) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    big = syntax == ExplicitVRBigEndian
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">" if big else "<")).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def code_of(call: object) -> tuple[ErrorCode, int]:
    with pytest.raises(OrthancError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code, caught.value.http_status


# -- value mapping -----------------------------------------------------------------------------------------------


def test_preview_stretches_with_rounding_and_inverts_monochrome1() -> None:
    pixels = np.array([[-100, -97], [1, 100]], dtype=np.int16)
    assert extract(gray(pixels), Extraction.PREVIEW).tolist() == [[0, 4], [129, 255]]  # 3.825 rounds to 4
    inverted = extract(gray(pixels, monochrome1=True), Extraction.PREVIEW)
    assert inverted.tolist() == [[255, 251], [126, 0]]
    flat = np.full((2, 2), 77, np.uint16)
    assert extract(gray(flat), Extraction.PREVIEW).max() == 0
    assert extract(gray(flat, monochrome1=True), Extraction.PREVIEW).min() == 255


def test_stored_values_are_cropped_to_the_type() -> None:
    pixels = np.array([[-5, 300], [70000, 40000]], dtype=np.int32)
    assert extract(gray(pixels), Extraction.UINT8).tolist() == [[0, 255], [255, 255]]
    assert extract(gray(pixels), Extraction.UINT16).tolist() == [[0, 300], [65535, 40000]]
    assert extract(gray(pixels), Extraction.INT16).tolist() == [[-5, 300], [32767, 32767]]
    assert extract(gray(pixels, monochrome1=True), Extraction.UINT16)[0, 1] == 300  # never inverted
    color = Frame(np.zeros((2, 2, 3), np.uint8), False, 1.0, 0.0, None, 8)
    assert code_of(lambda: extract(color, Extraction.UINT8)) == (ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, 415)


def test_rendered_window_rules() -> None:
    pixels = np.array([[0, 100, 200, 300]], dtype=np.uint16)
    # the file's window applies to the rescaled values, truncated: (v*2-100 - (100-200)) * 255 / 400
    frame = gray(pixels, slope=2.0, intercept=-100.0, window=(100.0, 400.0))
    assert extract(frame, Extraction.RENDERED).tolist() == [[0, 127, 255, 255]]
    # arguments override the file one by one
    only_center = extract(frame, Extraction.RENDERED, Rendering(window_center=300.0))
    assert only_center.tolist() == [[0, 0, 127, 255]]
    # no window in the file: the range of BitsStored
    assert extract(gray(pixels, bits_stored=9), Extraction.RENDERED).tolist() == [[0, 49, 99, 149]]
    # a width of zero or less acts as a threshold at the center
    threshold = extract(gray(pixels), Extraction.RENDERED, Rendering(window_center=150.0, window_width=0.0))
    assert threshold.tolist() == [[0, 0, 255, 255]]
    assert extract(gray(pixels, monochrome1=True, bits_stored=9), Extraction.RENDERED).tolist() == [
        [255, 206, 156, 106]
    ]


def test_rendered_size_fits_the_box_with_rounding() -> None:
    pixels = np.arange(358 * 512, dtype=np.uint16).reshape(358, 512)
    assert extract(gray(pixels), Extraction.RENDERED, Rendering(width=100)).shape == (70, 100)  # 69.9 rounds
    assert extract(gray(pixels), Extraction.RENDERED, Rendering(height=70)).shape == (70, 100)
    assert extract(gray(pixels), Extraction.RENDERED, Rendering(width=3, height=1)).shape == (1, 1)
    assert extract(gray(pixels), Extraction.RENDERED, Rendering(width=1024)).shape == (716, 1024)
    huge = Rendering(width=10**9)
    assert code_of(lambda: extract(gray(pixels), Extraction.RENDERED, huge)) == (ErrorCode.PARAMETER_OUT_OF_RANGE, 400)


def _naive_smooth(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The definition: 1-4-6-4-1 Gaussian on the whole picture (borders replicated), floor, then sampling."""
    padded = np.pad(image.astype(np.float64), 2, mode="edge")
    kernel = np.array([1, 4, 6, 4, 1]) / 16
    horizontal = sum(w * padded[:, i : i + image.shape[1]] for i, w in enumerate(kernel))
    both = np.floor(sum(w * horizontal[i : i + image.shape[0], :] for i, w in enumerate(kernel)))
    ys = ((2 * np.arange(rows) + 1) * image.shape[0]) // (2 * rows)
    xs = ((2 * np.arange(columns) + 1) * image.shape[1]) // (2 * columns)
    return both[np.ix_(ys, xs)]


def test_smoothing_equals_its_definition() -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(97, 131)).astype(np.uint8)
    frame = gray(pixels, window=(127.5, 255.0))  # the identity on 0..255
    assert np.array_equal(extract(frame, Extraction.RENDERED), pixels)
    smoothed = extract(frame, Extraction.RENDERED, Rendering(width=40, smooth=True))
    assert np.array_equal(smoothed, _naive_smooth(pixels, 30, 40))
    upscaled = extract(frame, Extraction.RENDERED, Rendering(width=262, smooth=True))  # no smoothing upwards
    assert np.array_equal(upscaled, pixels.repeat(2, axis=0).repeat(2, axis=1))


# -- encoders and negotiation ------------------------------------------------------------------------------------


def test_png_keeps_16_bit_and_twos_complement() -> None:
    unsigned = np.array([[0, 65535], [1234, 4095]], dtype=np.uint16)
    assert np.array_equal(np.array(Image.open(io.BytesIO(encode(unsigned, ImageFormat.PNG)))), unsigned)
    signed = np.array([[-1, -32768], [32767, 0]], dtype=np.int16)
    decoded = np.array(Image.open(io.BytesIO(encode(signed, ImageFormat.PNG))))
    assert decoded.dtype == np.uint16 and np.array_equal(decoded.view(np.int16), signed)


def test_pam_and_jpeg() -> None:
    signed = np.array([[-89, 1]], dtype=np.int16)
    pam = encode(signed, ImageFormat.PAM)
    assert pam == b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n\xff\xa7\x00\x01"
    rgb = encode(np.zeros((1, 1, 3), np.uint8), ImageFormat.PAM)
    assert rgb.startswith(b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n")
    assert encode(np.zeros((8, 8), np.uint8), ImageFormat.JPEG).startswith(b"\xff\xd8")
    assert code_of(lambda: encode(signed, ImageFormat.JPEG)) == (ErrorCode.NOT_ACCEPTABLE, 406)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ImageFormat.PNG),
        ("", ImageFormat.PNG),
        ("*/*", ImageFormat.PNG),
        ("image/*", ImageFormat.PNG),
        ("image/jpeg", ImageFormat.JPEG),
        ("image/jpeg, image/png", ImageFormat.JPEG),
        ("image/png;q=0.5, image/jpeg", ImageFormat.JPEG),
        ("*/*, image/jpeg", ImageFormat.JPEG),
        ("image/*;q=0.9, image/jpeg;q=0.8", ImageFormat.JPEG),
        ("text/html, image/jpeg;q=0.5", ImageFormat.JPEG),
        ("image/x-portable-arbitrarymap, image/jpeg", ImageFormat.PAM),
        ("image/webp,*/*", ImageFormat.PNG),
    ],
)
def test_negotiation_follows_orthanc(accept: str | None, expected: ImageFormat) -> None:
    assert negotiate(accept) is expected


def test_negotiation_failures() -> None:
    assert code_of(lambda: negotiate("text/html")) == (ErrorCode.NOT_ACCEPTABLE, 406)
    assert code_of(lambda: negotiate("image/jpeg;q=high")) == (ErrorCode.BAD_REQUEST, 400)


# -- frames of real files --------------------------------------------------------------------------------------


def test_frame_count() -> None:
    assert [frame_count(v) for v in (None, "", "3", 3, " 2 ", "0", "-4", "x")] == [1, 1, 3, 3, 2, 1, 1, 1]


def test_decoding_errors() -> None:
    sr = open_dataset(sample("HierarchicalAnonymization", "StructuredReports", "IM0").read_bytes())
    assert code_of(lambda: decode_frame(sr, 0)) == (ErrorCode.NOT_IMPLEMENTED, 415)
    brainix = open_dataset(sample("Brainix", "Epi", "IM-0001-0001.dcm").read_bytes())
    assert code_of(lambda: decode_frame(brainix, 1)) == (ErrorCode.INEXISTENT_ITEM, 404)
    truncated = pydicom.dcmread(sample("Brainix", "Epi", "IM-0001-0001.dcm"))
    truncated.PixelData = truncated.PixelData[:1000]
    assert code_of(lambda: decode_frame(truncated, 0)) == (ErrorCode.NOT_IMPLEMENTED, 415)
    unsupported = pydicom.dcmread(sample("Brainix", "Epi", "IM-0001-0001.dcm"))
    unsupported.file_meta.TransferSyntaxUID = JPEGLSLossless  # claims JPEG-LS, holds raw samples
    unsupported.PixelData = encapsulate([b"\x00" * 64])
    assert code_of(lambda: decode_frame(unsupported, 0)) == (ErrorCode.NOT_IMPLEMENTED, 415)
    garbage = open_dataset(b"not a DICOM file")  # pydicom reads anything with force=True
    assert code_of(lambda: decode_frame(garbage, 0)) == (ErrorCode.NOT_IMPLEMENTED, 415)


def test_repaired_jpeg_extended_and_files_without_meta() -> None:
    """The 12-bit JPEG sample declares Se=0 in its scan header: libjpeg refuses it until repaired."""
    ds = open_dataset(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.51.dcm").read_bytes())
    frame = decode_frame(ds, 0)
    assert frame.pixels.shape == (512, 512) and 3900 < frame.pixels.max() < 4096
    bare = open_dataset(sample("TransferSyntaxes", "1.2.840.10008.1.2.dcm").read_bytes())  # no preamble, no meta
    assert decode_frame(bare, 0).pixels.shape == (256, 256)


def test_raw_frames_of_native_data() -> None:
    frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) + 0x0100
    little = dataset_bytes(frames, frames=2)
    assert raw_frame(little, 1) == (frames[1].astype("<u2").tobytes(), "application/octet-stream")
    big = dataset_bytes(frames, frames=2, syntax=ExplicitVRBigEndian)
    assert raw_frame(big, 1)[0] == frames[1].astype("<u2").tobytes()  # little-endian, as Orthanc answers
    body, content_type = raw_frame(little, 0, compress=True)
    assert content_type == "application/gzip" and gzip.decompress(body) == frames[0].tobytes()
    assert code_of(lambda: raw_frame(little, 2)) == (ErrorCode.PARAMETER_OUT_OF_RANGE, 400)
    sr = sample("HierarchicalAnonymization", "StructuredReports", "IM0").read_bytes()
    assert code_of(lambda: raw_frame(sr, 0)) == (ErrorCode.BAD_FILE_FORMAT, 400)


def test_numpy_floors_rescaled_values_and_matlab_lists_rows() -> None:
    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    data = dataset_bytes(pixels, RescaleSlope=0.5, RescaleIntercept=-1.25)
    rescaled = np.load(io.BytesIO(numpy_answer(data, 0, rescale=True, compress=False)))
    assert rescaled.dtype == np.float32 and rescaled[:, :, 0].tolist() == [[-2.0, -1.0, -1.0, 0.0]]  # as Orthanc
    stored = np.load(io.BytesIO(numpy_answer(data, None, rescale=False, compress=False)))
    assert stored.dtype == np.uint16 and stored.shape == (1, 1, 4, 1)
    two_rows = dataset_bytes(np.array([[1, 2], [3, 4]], dtype=np.uint8))
    assert matlab_answer(two_rows, 0) == "double([ 1 2 ; 3 4 ])"
