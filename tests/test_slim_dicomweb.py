"""A slide converted by ``isengard-wsi-dicomizer`` opened over DICOMweb the way Slim opens one.

Slim (ImagingDataCommons/slim) is a React application driving dicom-microscopy-viewer through the JavaScript
dicomweb-client; it cannot be built here (no npm registry), so the test sends the requests those libraries send,
with their exact Accept headers: the study and series searches of Slim's worklist, the series metadata, the ICC
profile named by its BulkDataURI, and the tiles as dicom-microscopy-viewer asks them: a list of compressed types
(JPEG-LS, JPEG 2000, JPX, then JPEG), or uncompressed octet-stream, or rendered (``image/jp2, image/jpeg`` with
``iccprofile=yes``), multipart or single part (dicomweb-client's ``singlepart`` option).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from isengard.testing import ServerProcess, sample

SLIDE = ("WSI", "LenaColorJpegYCbCr.tiff")
SM = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage

#: dicom-microscopy-viewer's compressed media types, in its order (dicomweb-client joins them with ", ").
COMPRESSED = [
    ("image/jls", "1.2.840.10008.1.2.4.80"),
    ("image/jls", "1.2.840.10008.1.2.4.81"),
    ("image/jp2", "1.2.840.10008.1.2.4.90"),
    ("image/jp2", "1.2.840.10008.1.2.4.91"),
    ("image/jpx", "1.2.840.10008.1.2.4.92"),
    ("image/jpx", "1.2.840.10008.1.2.4.93"),
    ("image/jpeg", "1.2.840.10008.1.2.4.50"),
]
COMPRESSED_ACCEPT = ", ".join(f'multipart/related; type="{t}"; transfer-syntax={uid}' for t, uid in COMPRESSED)
UNCOMPRESSED_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'


def single_part(response: httpx.Response) -> tuple[str, bytes]:
    """The content type and body of the one part of a multipart/related answer."""
    boundary = response.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"')
    parts = [p for p in response.content.split(b"--" + boundary.encode()) if p.strip(b"-\r\n")]
    assert len(parts) == 1
    head, _, body = parts[0].partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().strip().splitlines())
    return headers["Content-Type"], body.removesuffix(b"\r\n")


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory, module_server: ServerProcess) -> list[pydicom.Dataset]:
    """The sample TIFF through Isengard's DICOMizer into the server: its files, largest level first."""
    folder = tmp_path_factory.mktemp("slide")
    dicomizer = Path(sys.executable).with_name("isengard-wsi-dicomizer")
    subprocess.run([str(dicomizer), f"--folder={folder}", str(sample(*SLIDE))], check=True, capture_output=True)
    files = sorted(folder.glob("*.dcm"))
    module_server.upload(*files)
    datasets = [pydicom.dcmread(f) for f in files]
    return sorted(datasets, key=lambda ds: -int(ds.TotalPixelMatrixColumns))


@pytest.fixture(scope="module")
def web(module_server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{module_server.url}/dicom-web", timeout=30)


@pytest.fixture(scope="module")
def metadata(slide: list[pydicom.Dataset], web: httpx.Client) -> list[dict[str, Any]]:
    """Slim's worklist search, then the series metadata dicom-microscopy-viewer builds the pyramid from."""
    json = {"Accept": "application/dicom+json"}
    studies = web.get("/studies", params={"ModalitiesInStudy": "SM", "offset": 0, "limit": 25}, headers=json).json()
    study = slide[0].StudyInstanceUID
    assert study in [s["0020000D"]["Value"][0] for s in studies]
    series = web.get(f"/studies/{study}/series", params={"Modality": "SM"}, headers=json).json()
    assert [s["0020000E"]["Value"][0] for s in series] == [slide[0].SeriesInstanceUID]
    answer = web.get(f"/studies/{study}/series/{slide[0].SeriesInstanceUID}/metadata", headers=json)
    assert answer.status_code == 200
    return list(answer.json())


def frame_url(ds: pydicom.Dataset, number: int = 1) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/{number}"


def test_the_metadata_holds_what_the_viewer_builds_the_pyramid_from(
    slide: list[pydicom.Dataset], metadata: list[dict[str, Any]]
) -> None:
    assert len(metadata) == len(slide)
    by_uid = {m["00080018"]["Value"][0]: m for m in metadata}
    for ds in slide:
        m = by_uid[ds.SOPInstanceUID]
        assert m["00080016"]["Value"] == [SM]
        for tag in ("00480006", "00480007", "00280010", "00280011"):  # TotalPixelMatrix Columns/Rows, Rows, Columns
            assert m[tag]["Value"] == [ds[tag].value]
        assert m["00280008"]["Value"] == [int(ds.NumberOfFrames)]
        assert m["00480102"]["Value"] == [float(v) for v in ds.ImageOrientationSlide]
        origin = m["00480008"]["Value"][0]  # Total Pixel Matrix Origin Sequence: where the tiles lie on the slide
        assert origin["0040072A"]["Value"] == [
            float(ds.TotalPixelMatrixOriginSequence[0].XOffsetInSlideCoordinateSystem)
        ]
        assert "7FE00010" not in m or "BulkDataURI" in m["7FE00010"]  # pixels by reference, never inline


def test_the_icc_profile_comes_from_its_bulk_data_uri(
    slide: list[pydicom.Dataset], metadata: list[dict[str, Any]], web: httpx.Client
) -> None:
    base = next(m for m in metadata if m["00080018"]["Value"][0] == slide[0].SOPInstanceUID)
    uri = base["00480105"]["Value"][0]["00282000"]["BulkDataURI"]
    expected = slide[0].OpticalPathSequence[0].ICCProfile
    multipart = web.get(uri, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert single_part(multipart) == ("application/octet-stream", expected)
    alone = web.get(uri, headers={"Accept": "application/octet-stream"})  # dicomweb-client singlepart="bulkdata"
    assert (alone.headers["Content-Type"], alone.content) == ("application/octet-stream", expected)


def test_tiles_as_dicom_microscopy_viewer_asks_compressed(slide: list[pydicom.Dataset], web: httpx.Client) -> None:
    for ds in slide:
        stored = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames))
        first = next(iter(stored))
        answer = web.get(frame_url(ds), headers={"Accept": COMPRESSED_ACCEPT})
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith('multipart/related; type="image/jpeg"')
        kind, body = single_part(answer)
        assert kind.startswith("image/jpeg")
        assert body == first  # the stored JPEG, not decoded nor re-encoded
        alone = web.get(frame_url(ds), headers={"Accept": "image/jpeg"})  # singlepart="image"
        assert (alone.headers["Content-Type"].split(";")[0], alone.content) == ("image/jpeg", first)


def test_tiles_as_dicom_microscopy_viewer_asks_uncompressed(slide: list[pydicom.Dataset], web: httpx.Client) -> None:
    ds = slide[0]
    rows, columns = int(ds.Rows), int(ds.Columns)
    answer = web.get(frame_url(ds, 2), headers={"Accept": UNCOMPRESSED_ACCEPT})
    kind, body = single_part(answer)
    assert kind.startswith("application/octet-stream")
    assert len(body) == rows * columns * 3
    pixels = np.frombuffer(body, np.uint8).reshape(rows, columns, 3)
    decoded = ds.pixel_array[1]  # pydicom's decode of the same frame (RGB)
    assert np.abs(pixels.astype(int) - decoded.astype(int)).max() <= 2


def test_tiles_as_dicom_microscopy_viewer_asks_rendered(slide: list[pydicom.Dataset], web: httpx.Client) -> None:
    ds = slide[-1]
    answer = web.get(
        f"{frame_url(ds)}/rendered", params={"iccprofile": "yes"}, headers={"Accept": "image/jp2, image/jpeg"}
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(answer.content))
    assert picture.size == (int(ds.Columns), int(ds.Rows))
    assert int(ds.NumberOfFrames) == 1  # the smallest level: pixel_array is that frame
    assert np.abs(np.asarray(picture.convert("RGB"), int) - ds.pixel_array.astype(int)).mean() < 4


def test_a_type_the_tile_is_not_stored_in_is_refused(slide: list[pydicom.Dataset], web: httpx.Client) -> None:
    jpeg2000_only = 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.90'
    answer = web.get(frame_url(slide[0]), headers={"Accept": jpeg2000_only})
    assert answer.status_code == 406
    assert answer.json()["HttpStatus"] == 406
