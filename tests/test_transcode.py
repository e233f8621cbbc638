"""Transcoding DICOM files: every target syntax on every transfer-syntax sample, on demand, and on ingest.

Lossless targets must give back exactly the pixels pydicom decodes from the source, with the same UIDs; lossy ones
(JPEG baseline, JPEG-LS near-lossless, JPEG 2000) stay above a PSNR bound and make a new instance, as Orthanc does
(new SOP Instance UID, LossyImageCompression 01). Errors are Orthanc's: an unknown syntax is "Parameter out of
range" (400); a conversion no codec makes is "Internal error" (500) naming the target, as a reference Orthanc
1.10.1 answered for the same requests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from isengard.dicom.imaging import open_dataset
from isengard.dicom.transcode import ENCODABLE, LOSSY, transcode
from isengard.errors import ErrorCode, OrthancError
from isengard.testing import ServerProcess, assert_orthanc_error, instance_id, sample

SYNTAXES = sorted(p for p in sample("TransferSyntaxes").glob("*.dcm"))
NO_CODEC = sample("TransferSyntaxes", "1.2.840.10008.1.2.4.51.dcm")  # 12-bit JPEG extended: nothing decodes it
DECODABLE = [p for p in SYNTAXES if p != NO_CODEC]
TARGETS = sorted(ENCODABLE)
GREY16 = sample("TransferSyntaxes", "1.2.840.10008.1.2.1.99.dcm")  # 12 bits stored in 16, deflated
RGB8 = sample("TransferSyntaxes", "1.2.840.10008.1.2.1.dcm")
NO_PIXELS = sample("HierarchicalAnonymization", "2019-03-28", "PR000000.dcm")
JPEG_BASELINE, JPEG_LS, JPEG_LOSSLESS = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.70"


def pixels(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64)


def psnr(reference: np.ndarray, other: np.ndarray, bits: int) -> float:
    mse = float(((reference - other) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10((2**bits - 1) ** 2 / mse)


def multiframe(*, rgb: bool) -> bytes:
    """A 3-frame image built here (no sample has several frames): 8-bit RGB or 16-bit signed grey."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2" if not rgb else "1.2.840.10008.5.1.4.1.1.7.4"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.PatientID = "TRANSCODE"
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:80]
    if rgb:
        frames = np.stack([np.dstack([x * 3 + k * 20, y * 4, (x + y + k * 9) % 256]) for k in range(3)])
        ds.set_pixel_data(frames.astype(np.uint8), "RGB", 8)
    else:
        frames = np.stack([(x * 40 - y * 30 + k * 500) + rng.integers(-20, 20, x.shape) for k in range(3)])
        ds.set_pixel_data(frames.astype(np.int16), "MONOCHROME2", 16)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


SOURCES = {p.stem: p.read_bytes() for p in DECODABLE} | {
    "multiframe-rgb": multiframe(rgb=True),
    "multiframe-int16": multiframe(rgb=False),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_target_keeps_the_pixels(name: str) -> None:
    """Lossless: pixel-identical and same UIDs; lossy: PSNR bound, new SOP Instance UID, lossy attributes."""
    data = SOURCES[name]
    source = open_dataset(data)
    reference = pixels(source)
    failures = []
    for target in TARGETS:
        try:
            result = open_dataset(transcode(data, target))
        except OrthancError as e:
            # JPEG baseline encodes 8-bit images only, as Orthanc's transcoder: the other refusals are bugs.
            assert target == JPEG_BASELINE and source.BitsAllocated == 16, (target, e.details)
            assert e.code is ErrorCode.INTERNAL_ERROR and e.details.startswith(
                f"Cannot transcode to transfer syntax: {target}"
            )
            continue
        assert result.file_meta.TransferSyntaxUID == target
        assert (
            result.StudyInstanceUID == source.StudyInstanceUID and result.SeriesInstanceUID == source.SeriesInstanceUID
        )
        decoded = pixels(result)
        assert decoded.shape == reference.shape, target
        if target in LOSSY and target != source.file_meta.TransferSyntaxUID:
            quality = psnr(reference, decoded, int(source.BitsStored))
            if quality < (30 if source.BitsStored == 8 else 50):
                failures.append((target, f"PSNR {quality:.1f} dB"))
            assert result.SOPInstanceUID != source.SOPInstanceUID
            assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID
            assert result.LossyImageCompression == "01"
            assert result.LossyImageCompressionMethod
        else:
            if not np.array_equal(decoded, reference):
                failures.append((target, f"max difference {np.abs(decoded - reference).max()}"))
            assert result.SOPInstanceUID == source.SOPInstanceUID
    assert not failures, failures


def test_what_cannot_be_transcoded_is_an_orthanc_error() -> None:
    data = RGB8.read_bytes()
    with pytest.raises(OrthancError) as unknown:
        transcode(data, "foo")
    assert (
        unknown.value.code is ErrorCode.PARAMETER_OUT_OF_RANGE
        and unknown.value.details == "Unknown transfer syntax: foo"
    )
    with pytest.raises(OrthancError) as not_syntax:
        transcode(data, "1.2.840.10008.5.1.4.1.1.2")  # a SOP class, not a transfer syntax
    assert not_syntax.value.code is ErrorCode.PARAMETER_OUT_OF_RANGE
    with pytest.raises(OrthancError) as mpeg:
        transcode(data, "1.2.840.10008.1.2.4.100")  # MPEG-2: known, but nothing here encodes it
    assert mpeg.value.code is ErrorCode.INTERNAL_ERROR
    with pytest.raises(OrthancError) as undecodable:
        transcode(NO_CODEC.read_bytes(), ExplicitVRLittleEndian)
    assert undecodable.value.code is ErrorCode.INTERNAL_ERROR and "cannot decode" in undecodable.value.details
    with pytest.raises(OrthancError) as garbage:
        transcode(b"not a DICOM file at all" * 10, ExplicitVRLittleEndian)
    assert garbage.value.code is ErrorCode.BAD_FILE_FORMAT


def test_same_syntax_and_no_pixels() -> None:
    data = RGB8.read_bytes()
    assert transcode(data, "1.2.840.10008.1.2.1") == data  # already there: the very bytes
    header_only = NO_PIXELS.read_bytes()  # implicit VR presentation state, no pixel data
    for target in (ExplicitVRLittleEndian, JPEG_LS, "1.2.840.10008.1.2.2"):
        result = pydicom.dcmread(io.BytesIO(transcode(header_only, target)))
        source = open_dataset(header_only)
        assert result.file_meta.TransferSyntaxUID == target and result.SOPInstanceUID == source.SOPInstanceUID
        assert result.PatientName == source.PatientName


def test_quality_drives_lossy_size() -> None:
    data = RGB8.read_bytes()
    small, large = (len(transcode(data, JPEG_BASELINE, quality=q)) for q in (20, 95))
    assert small < large / 2


# -- over REST ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(module_server: ServerProcess) -> ServerProcess:
    module_server.upload(*SYNTAXES)
    return module_server


def test_file_transcode_argument(server: ServerProcess) -> None:
    with server.client() as c:
        iid = instance_id(GREY16)
        r = c.get(f"/instances/{iid}/file", params={"transcode": JPEG_LOSSLESS})
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        result = pydicom.dcmread(io.BytesIO(r.content))
        assert result.file_meta.TransferSyntaxUID == JPEG_LOSSLESS
        assert np.array_equal(result.pixel_array, pydicom.dcmread(GREY16).pixel_array)
        # the stored file is untouched
        stored = pydicom.dcmread(io.BytesIO(c.get(f"/instances/{iid}/file").content))
        assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"

        rgb = instance_id(RGB8)
        low = c.get(f"/instances/{rgb}/file", params={"transcode": JPEG_BASELINE, "lossy-quality": "10"})
        high = c.get(f"/instances/{rgb}/file", params={"transcode": JPEG_BASELINE})
        assert low.status_code == high.status_code == 200 and len(low.content) < len(high.content) / 2
        assert pydicom.dcmread(io.BytesIO(high.content)).LossyImageCompression == "01"

        body = assert_orthanc_error(c.get(f"/instances/{iid}/file", params={"transcode": "foo"}), 400)
        assert body["OrthancError"] == "Parameter out of range" and body["Details"] == "Unknown transfer syntax: foo"
        body = assert_orthanc_error(c.get(f"/instances/{iid}/file", params={"transcode": JPEG_BASELINE}), 500)
        assert body["OrthancStatus"] == -1 and body["Details"].startswith(
            f"Cannot transcode to transfer syntax: {JPEG_BASELINE}"
        )
        bad_quality = c.get(f"/instances/{rgb}/file", params={"transcode": JPEG_BASELINE, "lossy-quality": "0"})
        assert_orthanc_error(bad_quality, 400, "Parameter out of range")
        assert_orthanc_error(c.get("/instances/nope/file", params={"transcode": JPEG_LS}), 404)
        assert c.get("/system").status_code == 200


# -- on ingest ---------------------------------------------------------------------------------------------------
def stored_syntax(server: ServerProcess, iid: str) -> str:
    return server.get(f"/instances/{iid}/metadata/TransferSyntax").text


def test_ingest_transcoding(isengard) -> None:
    server = isengard({"IngestTranscoding": JPEG_LS, "IngestTranscodingOfCompressed": False})
    assert server.get("/system").json()["IngestTranscoding"] == JPEG_LS
    implicit = sample("TransferSyntaxes", "1.2.840.10008.1.2.dcm")  # no meta header either
    compressed = sample("TransferSyntaxes", "1.2.840.10008.1.2.4.90.dcm")
    files = (implicit, GREY16, compressed, NO_CODEC)
    answers = server.upload(*files)
    assert [a["ID"] for a in answers] == [instance_id(p) for p in files]
    assert stored_syntax(server, answers[0]["ID"]) == JPEG_LS  # same instance, new syntax, same pixels
    result = pydicom.dcmread(io.BytesIO(server.get(f"/instances/{answers[0]['ID']}/file").content))
    assert np.array_equal(result.pixel_array, open_dataset(implicit.read_bytes()).pixel_array)
    # deflate counts as compressed (as in Orthanc): IngestTranscodingOfCompressed false keeps these as received
    assert [stored_syntax(server, a["ID"]) for a in answers[1:]] == [
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.51",
    ]


def test_lossy_ingest_transcoding_makes_new_instances(isengard) -> None:
    server = isengard({"IngestTranscoding": JPEG_BASELINE, "IngestTranscodingOfUncompressed": True})
    rgb, grey16 = server.upload(RGB8, GREY16)
    assert rgb["ID"] != instance_id(RGB8)  # lossy: new SOP Instance UID, hence a new Orthanc identifier
    assert rgb["ParentSeries"] == server.get(f"/instances/{rgb['ID']}").json()["ParentSeries"]
    assert stored_syntax(server, rgb["ID"]) == JPEG_BASELINE
    tags = server.get(f"/instances/{rgb['ID']}/simplified-tags").json()
    assert tags["LossyImageCompression"] == "01" and tags["PhotometricInterpretation"] == "YBR_FULL_422"
    # 16-bit pixels have no JPEG baseline form: stored as received, like Orthanc does
    assert grey16["ID"] == instance_id(GREY16) and stored_syntax(server, grey16["ID"]) == "1.2.840.10008.1.2.1.99"


def test_unknown_ingest_syntax_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"Unknown transfer syntax for ingest transcoding: 1\.2\.3\.4"):
        ServerProcess(tmp_path, {"IngestTranscoding": "1.2.3.4"}).start()
