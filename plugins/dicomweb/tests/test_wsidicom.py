"""wsidicom's DICOMweb source reading a whole-slide image from Isengard, as it reads the same files from a folder.

The slide is a sample TIFF pyramid converted by Debian's OrthancWSIDicomizer (orthanc-wsi 1.1), whose files lack
ImageType (type 1 in the VL Whole Slide Microscopy Image IOD, and how wsidicom tells levels from labels and
overviews): the test adds it, as newer dicomizers write it. wsidicom asks tiles as
``multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50`` (frames as stored).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from wsidicom import WsiDicom, WsiDicomWebClient

from isengard.testing import ServerProcess, require_tool, sample

SLIDE = ("WSI", "LenaColorJpegYCbCr.tiff")


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample slide as DICOM files: a 4-level pyramid of 64x64 JPEG tiles, 512x512 at its base."""
    folder = tmp_path_factory.mktemp("slide")
    dicomizer = require_tool("OrthancWSIDicomizer", "converts the sample TIFF slide to DICOM")
    subprocess.run([dicomizer, "--folder", str(folder), str(sample(*SLIDE))], check=True, capture_output=True)
    files = sorted(folder.glob("*.dcm"))
    base = max(int(pydicom.dcmread(f, stop_before_pixels=True).TotalPixelMatrixColumns) for f in files)
    for path in files:
        ds = pydicom.dcmread(path)
        original = int(ds.TotalPixelMatrixColumns) == base
        ds.ImageType = (
            ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if original else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
        )
        ds.save_as(path)
    return folder


@pytest.fixture(scope="module")
def slides(slide_folder: Path, module_server: ServerProcess) -> Iterator[tuple[WsiDicom, WsiDicom]]:
    """(over DICOMweb, from the folder)."""
    files = sorted(slide_folder.glob("*.dcm"))
    module_server.upload(*files)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    client = WsiDicomWebClient.create_client(f"{module_server.url}/dicom-web")
    with (
        WsiDicom.open_web(client, ds.StudyInstanceUID, ds.SeriesInstanceUID) as web,
        WsiDicom.open(slide_folder) as local,
    ):
        yield web, local


@pytest.mark.filterwarnings("ignore:No bulk data URI handler")  # pydicom: the ICC profile is a BulkDataURI
def test_wsidicom_reads_the_pyramid_over_dicomweb(slides: tuple[WsiDicom, WsiDicom]) -> None:
    web, local = slides
    assert [level.size for level in web.levels] == [level.size for level in local.levels]
    assert [level.size.width for level in web.levels] == [512, 256, 128, 64]
    assert [level.mpp for level in web.levels] == [level.mpp for level in local.levels]
    assert web.tile_size == local.tile_size


@pytest.mark.filterwarnings("ignore:No bulk data URI handler")
@pytest.mark.parametrize(
    ("level", "location", "size"), [(0, (10, 20), (100, 80)), (0, (100, 60), (230, 170)), (2, (0, 0), (128, 128))]
)
def test_wsidicom_regions_over_dicomweb_equal_the_files(
    slides: tuple[WsiDicom, WsiDicom], level: int, location: tuple[int, int], size: tuple[int, int]
) -> None:
    web, local = slides
    region = np.asarray(web.read_region(location, level, size))
    assert region.shape == (size[1], size[0], 3)
    assert np.array_equal(region, np.asarray(local.read_region(location, level, size)))
    assert web.read_encoded_tile(level, (0, 0)) == local.read_encoded_tile(level, (0, 0))
