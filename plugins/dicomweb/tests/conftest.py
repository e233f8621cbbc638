"""A server loaded with real studies, shared by the read-only DICOMweb tests, a small multi-frame file, and Debian's
Orthanc with its DICOMweb plugin to compare with."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from isengard.testing import ServerProcess, reference_orthanc, sample, unavailable

#: Brainix (2 series, MR), Comunix (CT + PET), one file per transfer syntax, and character sets.
SAMPLE_FOLDERS = ("Brainix", "Comunix", "TransferSyntaxes", "Encodings")
FRAMES = 3
ORTHANC_DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@contextlib.contextmanager
def orthanc_dicomweb(folder: Path, files: Iterable[Path]) -> Iterator[str]:
    """Debian's Orthanc with its DICOMweb plugin (1.7) holding ``files``: its URL."""
    if not ORTHANC_DICOMWEB.exists():
        unavailable(f"{ORTHANC_DICOMWEB} is missing (apt-get install orthanc-dicomweb)")
    config = {
        "Name": "Reference",
        "Plugins": [str(ORTHANC_DICOMWEB)],
        # the Orthanc Book's default, which Isengard follows; Debian's plugin (1.7) matches case-insensitively
        # when the option is absent
        "DicomWeb": {"QidoCaseSensitive": True},
    }
    with reference_orthanc(folder, config, why="the reference server") as o:
        with httpx.Client(base_url=o.url, timeout=60) as c:
            for path in files:
                c.post("/instances", content=path.read_bytes()).raise_for_status()
        yield o.url


@pytest.fixture(scope="session")
def sample_files() -> list[Path]:
    files = [p for folder in SAMPLE_FOLDERS for p in sample(folder).rglob("*.dcm")]
    files += [p for p in sample("Encodings", "DavidClunie").iterdir() if p.name.startswith("SCS")]
    return sorted(files)


@pytest.fixture(scope="session")
def multiframe() -> bytes:
    """A 3-frame 8-bit MONOCHROME2 secondary capture: frame n holds the value 10 * (n + 1) everywhere but one pixel."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = "MULTI^FRAME", "MULTIFRAME"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.Modality = "20240102", "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 5, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.stack([np.full((4, 5), 10 * (n + 1), np.uint8) for n in range(FRAMES)])
    pixels[:, 0, 0] = 255
    ds.PixelData = pixels.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, sample_files: list[Path], multiframe: bytes
) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("dicomweb")).start()
    with server.client() as c:
        for path in sample_files:
            assert c.post("/instances", content=path.read_bytes()).status_code == 200
        assert c.post("/instances", content=multiframe).status_code == 200
    yield server
    server.discard()


@pytest.fixture(scope="module")
def client(loaded: ServerProcess) -> DICOMwebClient:
    return DICOMwebClient(url=f"{loaded.url}/dicom-web")
