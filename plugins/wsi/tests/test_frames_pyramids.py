"""On-the-fly pyramids of single frames (orthanc-wsi 2.x: /wsi/frames-pyramids and /wsi/frames-tiles).

Debian's orthanc-wsi 1.1 has no such routes, so the answers are checked against the routes and JSON of
orthanc-wsi's sources (OnTheFlyPyramid: 512x512 tiles, halved until one tile holds the level, white background).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from isengard.testing import ServerProcess, assert_orthanc_error

JSON_ERROR = "Cannot send a response which is acceptable according to the Accept HTTP header"


def secondary_capture(path: Path, frames: np.ndarray) -> Path:
    """A non-WSI instance of one or more uint8 frames, (frames, rows, columns[, 3])."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "FRAMES", "OT"
    color = frames.ndim == 4
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape[:3]
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    """Two RGB frames of 700 rows by 1000 columns: a pyramid of two levels, the second 500x350."""
    rng = np.random.default_rng(11)
    return rng.integers(0, 256, (2, 700, 1000, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def instance(module_server: ServerProcess, pictures: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = secondary_capture(tmp_path_factory.mktemp("frames") / "rgb.dcm", pictures)
    return module_server.upload(path)[0]["ID"]


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def test_pyramid_json(module_server: ServerProcess, instance: str) -> None:
    assert module_server.get(f"/wsi/frames-pyramids/{instance}/1").json() == {
        "BackgroundColor": "#ffffff",
        "FrameNumber": 1,
        "ID": instance,
        "Resolutions": [1.0, 2.0],
        "Sizes": [[1000, 700], [500, 350]],
        "TilesCount": [[2, 2], [1, 1]],
        "TilesSizes": [[512, 512], [512, 512]],
        "TotalHeight": 700,
        "TotalWidth": 1000,
    }


def test_tiles_are_cut_from_the_frame(module_server: ServerProcess, instance: str, pictures: np.ndarray) -> None:
    """PNG by default (lossless): level 0 is the frame itself, edges and tiles past them are white, level 1 the
    mean of each 2x2 block."""
    frame = pictures[1]
    with module_server.client() as client:
        first = client.get(f"/wsi/frames-tiles/{instance}/1/0/0/0")
        assert first.headers["content-type"] == "image/png"
        assert np.array_equal(decoded(first.content), frame[:512, :512])
        edge = decoded(client.get(f"/wsi/frames-tiles/{instance}/1/0/1/1").content)
        assert edge.shape == (512, 512, 3)
        assert np.array_equal(edge[:188, :488], frame[512:, 512:])
        assert (edge[188:] == 255).all() and (edge[:, 488:] == 255).all()
        outside = decoded(client.get(f"/wsi/frames-tiles/{instance}/1/0/7/7").content)
        assert (outside == 255).all()
        small = decoded(client.get(f"/wsi/frames-tiles/{instance}/1/1/0/0").content)
        blocks = frame.reshape(350, 2, 500, 2, 3).astype(int).sum(axis=(1, 3))
        assert np.array_equal(small[:350, :500], ((blocks + 2) // 4).astype(np.uint8))
        other = decoded(client.get(f"/wsi/frames-tiles/{instance}/0/0/0/0").content)
        assert np.array_equal(other, pictures[0][:512, :512])


def test_accept(module_server: ServerProcess, instance: str, pictures: np.ndarray) -> None:
    path = f"/wsi/frames-tiles/{instance}/0/0/1/0"
    expected = pictures[0][:512, 512:]
    with module_server.client() as client:
        jpeg = client.get(path, headers={"Accept": "image/jpeg"})
        assert jpeg.headers["content-type"] == "image/jpeg" and decoded(jpeg.content).shape == (512, 512, 3)
        jp2 = client.get(path, headers={"Accept": "text/html, image/jp2"})
        assert jp2.headers["content-type"] == "image/jp2" and jp2.content[4:8] == b"jP  "
        assert np.array_equal(decoded(jp2.content)[:, :488], expected)  # lossless
        for accept in ("*/*", "image/*"):
            assert client.get(path, headers={"Accept": accept}).headers["content-type"] == "image/png"
        assert_orthanc_error(client.get(path, headers={"Accept": "text/html"}), 406, JSON_ERROR)


def test_grey_and_single_level(module_server: ServerProcess, tmp_path: Path) -> None:
    """A grey frame is served as RGB; a frame that fits in one tile is a one-level pyramid."""
    grey = np.arange(300 * 200, dtype=np.uint32).reshape(1, 300, 200) % 251
    instance = module_server.upload(secondary_capture(tmp_path / "grey.dcm", grey))[0]["ID"]
    pyramid = module_server.get(f"/wsi/frames-pyramids/{instance}/0").json()
    assert pyramid["Sizes"] == [[200, 300]] and pyramid["TilesCount"] == [[1, 1]]
    tile = decoded(module_server.get(f"/wsi/frames-tiles/{instance}/0/0/0/0").content)
    assert tile.shape == (512, 512, 3)
    assert (tile[:300, :200, 1] == grey[0]).all() and (tile[:300, :200, 0] == tile[:300, :200, 2]).all()


def test_errors(module_server: ServerProcess, instance: str, tmp_path: Path) -> None:
    with module_server.client() as client:
        for path, status, error in [
            ("/wsi/frames-pyramids/0123abcd-0000/0", 404, "Unknown resource"),
            ("/wsi/frames-tiles/0123abcd-0000/0/0/0/0", 404, "Unknown resource"),
            (f"/wsi/frames-pyramids/{instance}/-1", 400, "Parameter out of range"),
            (f"/wsi/frames-pyramids/{instance}/2", 404, "Accessing an inexistent item"),
            (f"/wsi/frames-tiles/{instance}/0/2/0/0", 400, "Parameter out of range"),
            (f"/wsi/frames-tiles/{instance}/0/0/-1/0", 400, "Parameter out of range"),
            (f"/wsi/frames-tiles/{instance}/0/a/0/0", 404, "Unknown resource"),
        ]:
            assert_orthanc_error(client.get(path), status, error)
    gone = module_server.upload(secondary_capture(tmp_path / "gone.dcm", np.zeros((1, 8, 8), np.uint8)))[0]["ID"]
    assert module_server.get(f"/wsi/frames-pyramids/{gone}/0").status_code == 200
    module_server.client().delete(f"/instances/{gone}").raise_for_status()
    assert_orthanc_error(module_server.get(f"/wsi/frames-tiles/{gone}/0/0/0/0"), 404, "Unknown resource")
