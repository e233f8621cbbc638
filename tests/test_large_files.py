"""Instances larger than the streaming threshold: stored, downloaded in chunks, headers read without pixels."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from isengard.store import STREAM_THRESHOLD


def big_instance(frames: int = 12, side: int = 1024) -> bytes:
    """A multi-frame 16-bit secondary capture of frames x side x side pixels (24 MB by default)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientID, ds.PatientName = "BIG", "Large^File"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.arange(frames * side * side, dtype=np.uint16).reshape(frames, side, side)
    ds.PixelData = pixels.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("compression", [False, True])
def test_large_instance_round_trip(isengard, compression):
    data = big_instance()
    assert len(data) > 2 * STREAM_THRESHOLD
    server = isengard({"StorageCompression": compression})
    with server.client() as c:
        result = c.post("/instances", content=data).json()
        assert result["Status"] == "Success"
        instance = result["ID"]
        with c.stream("GET", f"/instances/{instance}/file") as r:
            assert r.headers["content-length"] == str(len(data))
            digest = hashlib.md5()
            for chunk in r.iter_raw():
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.md5(data).hexdigest()
        tags = c.get(f"/instances/{instance}/tags", params={"simplify": ""}).json()
        assert tags["NumberOfFrames"] == "12" and tags["PixelData"] is None
        assert c.get(f"/instances/{instance}/frames").json() == list(range(12))
        info = c.get(f"/instances/{instance}/attachments/dicom/info").json()
        assert info["UncompressedSize"] == len(data)
        assert (info["CompressedSize"] < len(data)) is compression
