"""The DICOMizer on slides OpenSlide reads: an Aperio SVS written here as Aperio lays it out (tiled JPEG pyramid,
the thumbnail as second page, then the reduced levels, then the label and macro pages, ImageDescription starting
"Aperio Image Library"), once with JPEG tiles (read by tifffile, tiles copied) and once with JPEG 2000 tiles
(which tifffile cannot decode without imagecodecs: read by OpenSlide, re-encoded)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import openslide_bin
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.encaps import generate_frames

from isengard.testing import ServerProcess, require_tool
from isengard_wsi import dicom_to_tiff  # its import lets tifffile write JPEG tiles that are already encoded

DICOMIZER = str(Path(sys.executable).parent / "isengard-wsi-dicomizer")
HEAD = "Aperio Image Library v12.0.15 \r\n"
WIDTH, HEIGHT, TILE = 1000, 700, 256
_JPEG2000 = 33005  # Aperio's JPEG 2000 compression of RGB samples


def _encode(pixels: np.ndarray, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "jpeg":
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
    else:
        Image.fromarray(pixels).save(out, "JPEG2000", no_jp2=True, irreversible=False)
    return out.getvalue()


def _tiles(pixels: np.ndarray, kind: str) -> Iterator[bytes]:
    for y in range(0, pixels.shape[0], TILE):
        for x in range(0, pixels.shape[1], TILE):
            tile = np.full((TILE, TILE, 3), 255, np.uint8)
            part = pixels[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            yield _encode(tile, kind)


def slide_pixels() -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([xx * 255 // WIDTH, yy * 255 // HEIGHT, (xx + yy) % 256], -1).astype(np.uint8)


LABEL = np.full((120, 100, 3), 200, np.uint8)
LABEL[40:80, 20:80] = (0, 0, 255)
MACRO = np.full((100, 300, 3), 90, np.uint8)


def write_svs(path: Path, kind: str = "jpeg") -> list[np.ndarray]:
    """An Aperio SVS of three levels (JPEG or JPEG 2000 tiles), with thumbnail, label and macro; its levels."""
    image = slide_pixels()
    levels = [image, image[::2, ::2].copy(), image[::4, ::4].copy()]
    tags: dict[str, Any] = {"compression": "jpeg", "subsampling": (2, 2)}
    tags["compressionargs"] = {"outcolorspace": tifffile.PHOTOMETRIC.YCBCR}
    if kind != "jpeg":
        tags = {"compression": _JPEG2000}
    with tifffile.TiffWriter(path) as tiff:

        def level(pixels: np.ndarray, description: str) -> None:
            tiff.write(
                _tiles(pixels, kind),
                shape=pixels.shape,
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                description=HEAD + description + "|AppMag = 20|MPP = 0.5",
                metadata=None,
                **tags,
            )

        level(levels[0], f"{WIDTH}x{HEIGHT} [0,0 {WIDTH}x{HEIGHT}] ({TILE}x{TILE}) JPEG/RGB Q=90")
        thumbnail = image[::8, ::8].copy()
        size = f"{thumbnail.shape[1]}x{thumbnail.shape[0]}"
        tiff.write(thumbnail, description=f"{HEAD}{WIDTH}x{HEIGHT} -> {size} - ", metadata=None, photometric="rgb")
        for pixels in levels[1:]:
            level(pixels, f"{WIDTH}x{HEIGHT} -> {pixels.shape[1]}x{pixels.shape[0]} - ")
        for name, pixels, subfile in (("label", LABEL, 1), ("macro", MACRO, 9)):
            description = f"{HEAD}{name} {pixels.shape[1]}x{pixels.shape[0]}"
            tiff.write(pixels, description=description, metadata=None, photometric="rgb", subfiletype=subfile)
    return levels


# tifffile looks an encoder up for the compression it is told, even for tiles given encoded
tifffile.TIFF.COMPRESSORS._codecs.setdefault(_JPEG2000, dicom_to_tiff._no_encoder)


@pytest.fixture(scope="module")
def svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("svs") / "slide.svs"
    write_svs(path)
    return path


@pytest.fixture(scope="module")
def svs_j2k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("svs") / "slide-j2k.svs"
    write_svs(path, "jpeg2000")
    return path


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DICOMIZER, *arguments], capture_output=True, text=True, timeout=300)


def convert(source: Path, folder: Path, *options: str) -> list[pydicom.Dataset]:
    done = run(f"--folder={folder}", *options, str(source))
    assert done.returncode == 0, done.stderr
    return [pydicom.dcmread(path) for path in sorted(folder.glob("*.dcm"))]


def pixels(ds: pydicom.Dataset) -> np.ndarray:
    """The total pixel matrix of a TILED_FULL instance, decoded with Pillow."""
    frames = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
    columns = -(-ds.TotalPixelMatrixColumns // ds.Columns)
    rows = [
        np.concatenate([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames[y : y + columns]], 1)
        for y in range(0, len(frames), columns)
    ]
    return np.concatenate(rows, 0)[: ds.TotalPixelMatrixRows, : ds.TotalPixelMatrixColumns]


def image_types(instances: list[pydicom.Dataset]) -> list[str]:
    return ["\\".join(ds.ImageType) for ds in instances]


def test_openslide_reads_the_generated_svs(svs: Path, svs_j2k: Path) -> None:
    for path in (svs, svs_j2k):
        assert openslide.OpenSlide.detect_format(str(path)) == "aperio"
        with openslide.OpenSlide(str(path)) as slide:
            assert slide.level_dimensions == ((1000, 700), (500, 350), (250, 175))
            assert sorted(slide.associated_images) == ["label", "macro", "thumbnail"]
    assert tifffile.TiffFile(svs).is_svs


def test_svs_levels_are_copied_and_associated_images_added(svs: Path, tmp_path: Path) -> None:
    """tifffile reads the SVS pyramid: its JPEG tiles are the frames byte for byte; OpenSlide gives the label,
    macro and thumbnail, each an instance of the same series."""
    instances = convert(svs, tmp_path / "out")
    assert image_types(instances) == [
        "ORIGINAL\\PRIMARY\\VOLUME\\NONE",
        "DERIVED\\PRIMARY\\VOLUME\\RESAMPLED",
        "DERIVED\\PRIMARY\\VOLUME\\RESAMPLED",
        "ORIGINAL\\PRIMARY\\LABEL\\NONE",
        "ORIGINAL\\PRIMARY\\OVERVIEW\\NONE",
        "DERIVED\\PRIMARY\\THUMBNAIL\\RESAMPLED",
    ]
    assert len({ds.SeriesInstanceUID for ds in instances}) == 1
    assert [ds.InstanceNumber for ds in instances] == [1, 2, 3, 4, 5, 6]
    with tifffile.TiffFile(svs) as tiff:
        for ds, page in zip(instances[:3], tiff.series[0].levels, strict=True):
            page = page.keyframe
            stored = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                tiff.filehandle.seek(offset)
                stored.append(tiff.filehandle.read(count))
            frames = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
            assert [frame[: len(tile)] for frame, tile in zip(frames, stored, strict=True)] == stored  # items are even
    label, macro, thumbnail = instances[3:]
    assert (label.TotalPixelMatrixColumns, label.TotalPixelMatrixRows, label.NumberOfFrames) == (100, 120, 1)
    assert label.SpecimenLabelInImage == "YES" and label.BurnedInAnnotation == "YES"
    assert np.abs(pixels(label).astype(int) - LABEL).mean() < 3  # JPEG, chroma subsampled at the blue edges
    assert np.abs(pixels(label)[60, 50].astype(int) - (0, 0, 255)).max() <= 8
    assert np.abs(pixels(macro).astype(int) - MACRO).max() <= 2
    assert (thumbnail.Columns, thumbnail.Rows) == (TILE, TILE)  # tiled as the levels
    assert (thumbnail.TotalPixelMatrixColumns, thumbnail.TotalPixelMatrixRows) == (125, 88)


def test_dciodvfy_finds_no_error_in_any_instance(svs: Path, tmp_path: Path) -> None:
    """Levels, label (with the Slide Label module), overview and thumbnail are each valid (only the label and
    overview say the label is in the image)."""
    dciodvfy = require_tool("dciodvfy", "DICOM validation")
    instances = convert(svs, tmp_path / "out")
    assert [ds.SpecimenLabelInImage for ds in instances] == ["NO", "NO", "NO", "YES", "YES", "NO"]
    for path in sorted((tmp_path / "out").glob("*.dcm")):
        done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors)


def test_no_label_leaves_the_label_out(svs: Path, tmp_path: Path) -> None:
    instances = convert(svs, tmp_path / "out", "--no-label")
    assert "ORIGINAL\\PRIMARY\\LABEL\\NONE" not in image_types(instances)
    assert len(instances) == 5


def test_openslide_reads_what_tifffile_cannot(svs_j2k: Path, tmp_path: Path) -> None:
    """JPEG 2000 tiles: the levels come from OpenSlide's read_region, re-encoded as --compression says."""
    instances = convert(svs_j2k, tmp_path / "out", "--compression=jpeg2000", "--tile-width=300", "--tile-height=200")
    levels = [ds for ds in instances if ds.ImageType[2] == "VOLUME"]
    sizes = [(ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows, ds.Columns, ds.Rows) for ds in levels]
    assert sizes == [(1000, 700, 300, 200), (500, 350, 300, 200), (250, 175, 300, 200)]
    assert all(ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90" for ds in instances)
    with openslide.OpenSlide(str(svs_j2k)) as slide:
        expected = np.asarray(slide.read_region((0, 0), 0, (1000, 700)).convert("RGB"))
    assert np.array_equal(pixels(levels[0]), expected)  # lossless JPEG 2000 of OpenSlide's pixels
    assert np.abs(pixels(levels[0]).astype(int) - slide_pixels()).mean() < 2  # and those are the slide's
    assert len(instances) == 6


def test_openslide_option_names_the_library(svs_j2k: Path, tmp_path: Path) -> None:
    library = Path(openslide_bin.__file__).parent / "libopenslide.so.1"
    assert len(convert(svs_j2k, tmp_path / "out", f"--openslide={library}", "--no-label")) == 5
    done = run(f"--folder={tmp_path / 'bad'}", f"--openslide={tmp_path / 'nothing.so'}", str(svs_j2k))
    assert done.returncode == 1 and "cannot load the OpenSlide library" in done.stderr
    assert not (tmp_path / "bad").exists()


def test_tile_server_answers_only_the_volume_levels_and_the_thumbnail(
    svs: Path, tmp_path: Path, isengard: Callable[..., ServerProcess]
) -> None:
    """LABEL and OVERVIEW instances are no levels; the THUMBNAIL is one, as orthanc-wsi counts it."""
    convert(svs, tmp_path / "out")
    server = isengard()
    server.upload(*sorted((tmp_path / "out").glob("*.dcm")))
    (series,) = server.get("/series").json()
    pyramid = server.get(f"/wsi/pyramids/{series}").json()
    assert pyramid["Sizes"] == [[1000, 700], [500, 350], [250, 175], [125, 88]]
    assert server.get(f"/wsi/tiles/{series}/3/0/0").headers["content-type"] == "image/jpeg"
