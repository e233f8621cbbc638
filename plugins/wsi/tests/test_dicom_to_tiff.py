"""isengard-wsi-dicom-to-tiff: TIFF -> our DICOMizer -> Isengard -> our DicomToTiff gives the source's levels and
tiles back, and the same file structure as Debian's OrthancWSIDicomToTiff writes from Orthanc on the same series."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.encaps import generate_frames

from isengard.testing import OrthancProcess, ServerProcess, reference_orthanc, require_tool, sample
from isengard_wsi.dicomizer import jpeg

DICOMIZER = str(Path(sys.executable).parent / "isengard-wsi-dicomizer")
PROG = "isengard-wsi-dicom-to-tiff"

#: name -> (sample, options of our DICOMizer)
SLIDES: dict[str, tuple[str, list[str]]] = {
    "ycbcr": ("LenaColorJpegYCbCr.tiff", []),
    "rgb": ("LenaColorJpegRGB.tiff", []),
    "grey": ("LenaGrayscaleJpeg.tiff", []),
    "tables": ("OrthancLogoJpeg.tiff", []),  # JPEGTables in the source, put back in each frame
    "raw": ("OrthancLogoRaw.tiff", ["--compression=none", "--tile-width=256", "--tile-height=256"]),
}
JPEG_SLIDES = ["ycbcr", "rgb", "grey", "tables"]


def to_tiff(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "isengard_wsi.dicom_to_tiff"]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("slides")
    out = {}
    for name, (file, options) in SLIDES.items():
        folder = root / name
        command = [DICOMIZER, f"--folder={folder}", *options, str(sample("WSI", file))]
        subprocess.run(command, check=True, capture_output=True)
        out[name] = sorted(folder.glob("*.dcm"))
    return out


@pytest.fixture(scope="module")
def series(module_server: ServerProcess, slides: dict[str, list[Path]]) -> dict[str, str]:
    return {name: module_server.upload(*files)[0]["ParentSeries"] for name, files in slides.items()}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, slides: dict[str, list[Path]]) -> Iterator[OrthancProcess]:
    with reference_orthanc(tmp_path_factory.mktemp("orthanc")) as o:
        with httpx.Client(base_url=o.url, timeout=30) as client:
            for files in slides.values():
                for path in files:
                    client.post("/instances", content=path.read_bytes()).raise_for_status()
        yield o


@pytest.fixture(scope="module")
def ours(module_server: ServerProcess, series: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TIFF of every slide, written by our tool from Isengard."""
    folder = tmp_path_factory.mktemp("ours")
    for name, series_id in series.items():
        done = to_tiff(f"--orthanc={module_server.url}", series_id, str(folder / f"{name}.tiff"))
        assert done.returncode == 0, done.stderr
    return folder


def stored_tiles(page: tifffile.TiffPage) -> list[bytes]:
    handle = page.parent.filehandle
    out = []
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        handle.seek(offset)
        out.append(handle.read(count))
    return out


def structure(path: Path) -> list[tuple[object, ...]]:
    with tifffile.TiffFile(path) as tiff:
        assert not any(page.subifds for page in tiff.pages)
        return [
            (page.shape, page.tile, int(page.compression), int(page.photometric), page.jpegtables)
            for page in tiff.pages
        ]


def frames(files: list[Path]) -> dict[tuple[int, int], list[bytes]]:
    """The frames of each level of a DICOMizer series (TILED_FULL, one instance per level), by level size."""
    out = {}
    for path in files:
        ds = pydicom.dcmread(path)
        count = int(ds.NumberOfFrames)
        size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            out[size] = list(generate_frames(ds.PixelData, number_of_frames=count))
        else:
            step = len(ds.PixelData) // count
            out[size] = [ds.PixelData[i * step : (i + 1) * step] for i in range(count)]
    return out


@pytest.mark.parametrize("name", JPEG_SLIDES)
def test_round_trip_keeps_the_jpeg_tiles(name: str, ours: Path, slides: dict[str, list[Path]]) -> None:
    """Same levels, sizes and tile sizes as the source TIFF; every tile is the stored frame byte for byte, which
    is the source tile itself, its JPEGTables merged in. The tiles of LenaColorJpegRGB are JFIF streams, YCbCr
    whatever the TIFF says: the DICOMizer labels them YBR_FULL_422, and they come back as YCbCr; the R,G,B
    streams of OrthancLogoJpeg stay RGB."""
    stored = frames(slides[name])
    with tifffile.TiffFile(sample("WSI", SLIDES[name][0])) as source, tifffile.TiffFile(ours / f"{name}.tiff") as tiff:
        assert len(tiff.pages) == len(source.pages)
        for mine, theirs in zip(tiff.pages, source.pages, strict=True):
            photometric = 6 if name == "rgb" else int(theirs.photometric)
            assert (mine.shape, mine.tile, int(mine.photometric)) == (theirs.shape, theirs.tile, photometric)
            assert int(mine.compression) == 7 and mine.jpegtables is None
            tiles = stored_tiles(mine)
            assert tiles == stored[(mine.imagewidth, mine.imagelength)]
            tables = bytes(theirs.jpegtables) if theirs.jpegtables is not None else None
            expected = [jpeg.merge_tables(tile, tables) for tile in stored_tiles(theirs)]
            if photometric == 2:  # RGB streams: the DICOMizer adds the Adobe marker that says so
                expected = [jpeg.with_adobe_rgb(tile) for tile in expected]
            assert tiles == [tile + b"\0" * (len(tile) % 2) for tile in expected]  # DICOM's even lengths


def test_round_trip_of_raw_tiles(ours: Path) -> None:
    """Uncompressed frames become uncompressed tiles: the pixels of the source, padded at the edges."""
    with (
        tifffile.TiffFile(sample("WSI", "OrthancLogoRaw.tiff")) as source,
        tifffile.TiffFile(ours / "raw.tiff") as tiff,
    ):
        assert [page.shape for page in tiff.pages] == [page.shape for page in source.pages]
        page = tiff.pages[0]
        assert page.tile == (256, 256) and int(page.compression) == 1 and int(page.photometric) == 2
        assert np.array_equal(page.asarray(), source.pages[0].asarray())


@pytest.mark.parametrize("name", JPEG_SLIDES)
def test_same_file_as_orthancs(
    name: str, ours: Path, orthanc: OrthancProcess, series: dict[str, str], tmp_path: Path
) -> None:
    """OrthancWSIDicomToTiff, from Orthanc, on the same files: same pages, tags that matter, and tiles."""
    tool = require_tool("OrthancWSIDicomToTiff", "to compare with Orthanc's converter")
    theirs = tmp_path / "theirs.tiff"
    subprocess.run([tool, f"--orthanc={orthanc.url}", series[name], str(theirs)], check=True, capture_output=True)
    assert structure(ours / f"{name}.tiff") == structure(theirs)
    with tifffile.TiffFile(ours / f"{name}.tiff") as a, tifffile.TiffFile(theirs) as b:
        for mine, reference in zip(a.pages, b.pages, strict=True):
            assert stored_tiles(mine) == stored_tiles(reference)


def test_reencode_and_background(
    module_server: ServerProcess, series: dict[str, str], slides: dict[str, list[Path]], tmp_path: Path
) -> None:
    """--reencode makes JPEG tiles at --jpeg-quality from raw frames; "--opt value" works as "--opt=value"."""
    out = tmp_path / "jpeg.tiff"
    done = to_tiff("--orthanc", module_server.url, "--reencode", "1", "--jpeg-quality=50", series["raw"], str(out))
    assert done.returncode == 0, done.stderr
    with tifffile.TiffFile(out) as tiff, tifffile.TiffFile(sample("WSI", "OrthancLogoRaw.tiff")) as source:
        page = tiff.pages[0]
        assert int(page.compression) == 7 and int(page.photometric) == 6 and page.shape == (420, 2000, 3)
        first = np.asarray(Image.open(io.BytesIO(stored_tiles(page)[0])))
        assert first.shape == (256, 256, 3)
        assert np.abs(first.astype(int) - source.pages[0].asarray()[:256, :256].astype(int)).mean() < 8


def test_errors_are_one_line(module_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out.tiff"
    phenix = module_server.upload(next(sample("Phenix").glob("*.dcm")))[0]["ParentSeries"]
    for arguments, message in [
        ([f"--orthanc={module_server.url}", "0123abcd-0000", str(out)], "unknown series"),
        ([f"--orthanc={module_server.url}", phenix, str(out)], "not a whole-slide image"),
        (["--orthanc=http://127.0.0.1:9/", "abcd", str(out)], "cannot reach the Orthanc server"),
        ([f"--orthanc={module_server.url}", "abcd"], "expected a series identifier and an output file"),
    ]:
        done = to_tiff(*arguments)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ") and message in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the temporary file
    assert to_tiff("--color=1,2", "x", "y").returncode == 2  # argparse's usage error
