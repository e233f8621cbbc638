"""isengard-wsi-dicomizer on samples/WSI, compared with Debian's OrthancWSIDicomizer on the same inputs.

Each case is dicomized by both tools into folders: the levels, their sizes and frame counts must be the same; JPEG
tiles kept as they are must be the source's tiles byte for byte (their tables merged in); the pixels must be the
source's (decoded here with Pillow and tifffile, independently of the DICOMizer), exactly where nothing was
re-encoded and within JPEG tolerance where it was; both outputs ingest into Isengard with the same pyramid; and
dciodvfy (dicom3tools) finds no error in ours.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.encaps import generate_frames

from isengard.testing import ServerProcess, require_tool, sample, wait_job

DICOMIZER = str(Path(sys.executable).parent / "isengard-wsi-dicomizer")
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x80\x00\x00\x00\x00"

#: name -> (sample, options given to both DICOMizers, whether OrthancWSIDicomizer can read it)
CASES: dict[str, tuple[str, list[str], bool]] = {
    "jpeg-ycbcr": ("LenaColorJpegYCbCr.tiff", [], True),
    "jpeg-rgb": ("LenaColorJpegRGB.tiff", [], True),
    "grey": ("LenaGrayscaleJpeg.tiff", [], True),
    "logo-jpeg": ("OrthancLogoJpeg.tiff", [], True),
    "png": ("Lena2x2.png", [], True),
    "logo-pyramid": (
        "OrthancLogoJpeg.tiff",
        ["--pyramid=1", "--tile-width", "256", "--tile-height=256", "--smooth=1", "--threads=2"],
        True,
    ),
    "none": (
        "OrthancLogoJpeg.tiff",
        ["--compression=none", "--reencode=1", "--pyramid=1", "--tile-width=128", "--tile-height=128"],
        True,
    ),
    "jpeg2000": ("Lena2x2.png", ["--compression=jpeg2000"], True),
    "split": ("Lena2x2.png", ["--compression=none", "--max-size=1"], True),  # level 0 cut into a concatenation
    "raw": ("OrthancLogoRaw.tiff", [], False),  # OrthancWSIDicomizer reads uncompressed TIFF through OpenSlide only
}
#: The cases whose JPEG tiles are copied as they are.
LOSSLESS = ("jpeg-ycbcr", "jpeg-rgb", "grey", "logo-jpeg")


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DICOMIZER, *arguments], capture_output=True, text=True, timeout=300)


def dicomize(command: list[str], source: Path, target: Path, options: list[str]) -> list[Path]:
    done = subprocess.run([*command, f"--folder={target}", *options, str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return sorted(target.glob("*.dcm"))


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("ours")
    return {
        name: dicomize([DICOMIZER], sample("WSI", file), root / name, options)
        for name, (file, options, _) in CASES.items()
    }


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    command = [require_tool("OrthancWSIDicomizer", "the reference DICOMizer")]
    root = tmp_path_factory.mktemp("theirs")
    out = {}
    for name, (file, options, readable) in CASES.items():
        if readable:
            (root / name).mkdir()
            out[name] = dicomize(command, sample("WSI", file), root / name, options)
    return out


def levels(files: list[Path]) -> dict[tuple[int, int], list[pydicom.Dataset]]:
    """The instances of each level (by total size, largest first), parts of a concatenation in order."""
    found: dict[tuple[int, int], list[pydicom.Dataset]] = defaultdict(list)
    for path in files:
        ds = pydicom.dcmread(path)
        found[(int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))].append(ds)
    return {
        size: sorted(parts, key=lambda ds: int(ds.get("ConcatenationFrameOffsetNumber", 0)))
        for size, parts in sorted(found.items(), reverse=True)
    }


def shape(files: list[Path]) -> list[tuple[int, int, int, int, int]]:
    """(width, height, tile width, tile height, frames) of each level."""
    return [
        (*size, int(parts[0].Columns), int(parts[0].Rows), sum(int(ds.NumberOfFrames) for ds in parts))
        for size, parts in levels(files).items()
    ]


def frames(parts: list[pydicom.Dataset]) -> list[bytes]:
    out: list[bytes] = []
    for ds in parts:
        count = int(ds.NumberOfFrames)
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            out.extend(generate_frames(ds.PixelData, number_of_frames=count))
        else:
            size = len(ds.PixelData) // count
            out.extend(ds.PixelData[i * size : (i + 1) * size] for i in range(count))
    return out


def decode(frame: bytes, ds: pydicom.Dataset) -> np.ndarray:
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return np.frombuffer(frame, np.uint8).reshape(int(ds.Rows), int(ds.Columns), -1)
    pixels = np.asarray(Image.open(io.BytesIO(frame)))
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def stitch(parts: list[pydicom.Dataset]) -> np.ndarray:
    """A level's pixels, its frames placed row by row (TILED_FULL)."""
    ds = parts[0]
    width, height, tile_width, tile_height = (
        int(ds.TotalPixelMatrixColumns),
        int(ds.TotalPixelMatrixRows),
        int(ds.Columns),
        int(ds.Rows),
    )
    columns, rows = -(-width // tile_width), -(-height // tile_height)
    tiles = [decode(frame, ds) for frame in frames(parts)]
    assert len(tiles) == columns * rows
    grid = np.concatenate([np.concatenate(tiles[y * columns : (y + 1) * columns], axis=1) for y in range(rows)])
    return grid[:height, :width]


def tiff_tiles(path: Path, level: int) -> list[bytes]:
    """The JPEG tiles of a TIFF page as complete streams: the JPEGTables put after each tile's SOI."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.series[0].levels[level].keyframe
        tables = bytes(page.jpegtables) if page.jpegtables is not None else None
        out = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            tiff.filehandle.seek(offset)
            tile = tiff.filehandle.read(count)
            out.append(tile[:2] + tables[2:-2] + tile[2:] if tables else tile)
        return out


def source_pixels(path: Path, level: int = 0) -> np.ndarray:
    """The source decoded by this test: Pillow for JPEG tiles and images, tifffile for uncompressed TIFF."""
    if path.suffix != ".tiff":
        image = Image.open(path)
        pixels = np.asarray(image.convert("L" if image.mode == "L" else "RGB"))
        return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    with tifffile.TiffFile(path) as tiff:
        page = tiff.series[0].levels[level].keyframe
        if page.compression == 1:
            pixels = page.asarray()
            return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
        rgb = page.photometric == 2
        width, height, columns = page.imagewidth, page.imagelength, -(-page.imagewidth // page.tilewidth)
    decoded = []
    for tile in tiff_tiles(path, level):
        if rgb and b"JFIF" not in tile[:20]:
            tile = tile.replace(b"\xff\xc0", ADOBE_RGB + b"\xff\xc0", 1)  # no colour transform: say so to libjpeg
        pixels = np.asarray(Image.open(io.BytesIO(tile)))
        decoded.append(pixels.reshape(pixels.shape[0], pixels.shape[1], -1))
    rows = [np.concatenate(decoded[i : i + columns], axis=1) for i in range(0, len(decoded), columns)]
    return np.concatenate(rows)[:height, :width]


def halved(pixels: np.ndarray) -> np.ndarray:
    padded = np.pad(pixels, ((0, pixels.shape[0] % 2), (0, pixels.shape[1] % 2), (0, 0)), mode="edge").astype(int)
    return (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2] + 2) // 4


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case[2]])
def test_levels_are_orthancs(name: str, ours: dict[str, list[Path]], theirs: dict[str, list[Path]]) -> None:
    assert shape(ours[name]) == shape(theirs[name])


@pytest.mark.parametrize("name", LOSSLESS)
def test_jpeg_tiles_are_copied_byte_for_byte(name: str, ours: dict[str, list[Path]]) -> None:
    source = sample("WSI", CASES[name][0])
    for index, parts in enumerate(levels(ours[name]).values()):
        (ds,) = parts
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
        tiles = tiff_tiles(source, index)
        for frame, tile in zip(frames(parts), tiles, strict=True):
            if ds.PhotometricInterpretation == "RGB":  # an RGB stream says so to decoders, as Orthanc's do
                assert ADOBE_RGB in frame
                frame = frame.replace(ADOBE_RGB, b"", 1)
            assert frame[: len(tile)] == tile and frame[len(tile) :] in (b"", b"\0")


def test_photometric_follows_the_jpeg_stream(ours: dict[str, list[Path]]) -> None:
    """LenaColorJpegRGB says RGB in its TIFF tags but its tiles are JFIF (YCbCr): the frames are labelled as
    decoders read them; OrthancLogoJpeg's tiles are RGB (component ids R, G, B, no JFIF)."""
    expected = {
        "jpeg-ycbcr": "YBR_FULL_422",
        "jpeg-rgb": "YBR_FULL_422",
        "grey": "MONOCHROME2",
        "logo-jpeg": "RGB",
        "png": "YBR_FULL_422",
        "none": "RGB",
        "jpeg2000": "YBR_RCT",
        "raw": "YBR_FULL_422",
    }
    for name, photometric in expected.items():
        assert {pydicom.dcmread(path).PhotometricInterpretation for path in ours[name]} == {photometric}, name


@pytest.mark.parametrize("name", list(CASES))
def test_pixels_are_the_sources(name: str, ours: dict[str, list[Path]]) -> None:
    """Exact where the frames are the source's tiles or lossless encodings of them, within JPEG tolerance where
    re-encoded as JPEG; levels the source lacks compared with its halvings."""
    file, options, _ = CASES[name]
    source = sample("WSI", file)
    exact = name in (*LOSSLESS, "none", "jpeg2000", "split")
    expected = source_pixels(source)
    for index, parts in enumerate(levels(ours[name]).values()):
        pixels = stitch(parts).astype(int)
        if index and (source.suffix != ".tiff" or "--pyramid=1" in options):
            expected = halved(expected)  # made by halving: rounding differs from the DICOMizer's by at most 1
            assert pixels.shape == expected.shape
            assert np.abs(pixels - expected).mean() < (1 if exact else 5), (name, index)
            continue
        if index:
            expected = source_pixels(source, index)
        assert pixels.shape == expected.shape, (name, index)
        difference = np.abs(pixels - expected.astype(int))
        if exact:
            assert difference.max() == 0, (name, index)
        else:
            assert difference.mean() < 5 and np.percentile(difference, 99) < 24, (name, index)  # quality 90, 4:2:0


@pytest.mark.parametrize("name", ["jpeg-ycbcr", "grey", "logo-jpeg"])
def test_wsidicom_reads_the_source_back(name: str, ours: dict[str, list[Path]]) -> None:
    """wsidicom, a third-party WSI reader, opens the series as it is (no tag to add) and reads the source's pixels:
    exact for the lossless cases, the whole base level as one region."""
    from wsidicom import WsiDicom

    expected = source_pixels(sample("WSI", CASES[name][0]))
    with WsiDicom.open(ours[name][0].parent) as slide:
        assert (slide.size.width, slide.size.height) == (expected.shape[1], expected.shape[0])
        assert len(slide.levels) == len(levels(ours[name]))
        region = np.asarray(slide.read_region((0, 0), 0, (slide.size.width, slide.size.height)))
    region = region if region.ndim == 3 else region[..., None]
    expected = expected if expected.ndim == 3 else expected[..., None]
    assert np.array_equal(region[..., : expected.shape[2]], expected)


def test_every_file_is_a_whole_slide_instance(ours: dict[str, list[Path]]) -> None:
    for name, files in ours.items():
        datasets = [pydicom.dcmread(path) for path in files]
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1, name
        assert len({ds.PyramidUID for ds in datasets}) == 1, name
        for ds in datasets:
            assert ds.SOPClassUID == WSI_SOP_CLASS and ds.DimensionOrganizationType == "TILED_FULL"
            base = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)) == max(
                (int(d.TotalPixelMatrixColumns), int(d.TotalPixelMatrixRows)) for d in datasets
            )
            assert list(ds.ImageType) == (
                ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if base else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
            )
            shared = ds.SharedFunctionalGroupsSequence[0]
            assert shared.WholeSlideMicroscopyImageFrameTypeSequence[0].FrameType == ds.ImageType
            assert shared.PixelMeasuresSequence[0].PixelSpacing
            assert ds.OpticalPathSequence[0].OpticalPathIdentifier == "1"
            assert ds.TotalPixelMatrixOriginSequence[0].XOffsetInSlideCoordinateSystem == 20
            for keyword in (
                "PatientName",
                "PatientBirthDate",
                "PatientSex",
                "StudyID",
                "AccessionNumber",
                "ReferringPhysicianName",
                "AcquisitionContextSequence",
            ):
                assert keyword in ds, (name, keyword)  # Type 2: present, even empty
            if ds.SamplesPerPixel == 3:
                assert len(ds.OpticalPathSequence[0].ICCProfile) > 100


def test_dciodvfy_finds_no_error(ours: dict[str, list[Path]]) -> None:
    """dciodvfy counts the frames of a TILED_FULL instance against the whole matrix, which a concatenation's
    parts do not hold: the split case is checked on its last part only, where that count is right by chance
    only for smaller levels; its other parts are checked for every other error."""
    dciodvfy = require_tool("dciodvfy", "dicom3tools, to check the IOD")
    for name, files in ours.items():
        for path in files:
            report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True).stderr
            errors = [line for line in report.splitlines() if line.startswith("Error")]
            if name == "split":
                errors = [line for line in errors if "NumberOfFrames does not match expected value" not in line]
            assert errors == [], (name, path.name, errors)


def test_both_outputs_give_the_same_pyramid(
    isengard: Callable[..., ServerProcess], ours: dict[str, list[Path]], theirs: dict[str, list[Path]]
) -> None:
    server = isengard()
    for name, files in theirs.items():
        mine = server.upload(*ours[name])[0]["ParentSeries"]
        reference = server.upload(*files)[0]["ParentSeries"]
        a, b = server.get(f"/wsi/pyramids/{mine}"), server.get(f"/wsi/pyramids/{reference}")
        assert a.status_code == b.status_code == 200, name
        assert {**a.json(), "ID": None} == {**b.json(), "ID": None}, name
    raw = server.upload(*ours["raw"])[0]["ParentSeries"]
    assert server.get(f"/wsi/pyramids/{raw}").json()["Sizes"] == [[2000, 420]]


def _truncated_pyramid(path: Path) -> Path:
    """An uncompressed two-level TIFF pyramid whose last bytes (the second level's last tile) are cut off."""
    pixels = np.random.default_rng(7).integers(0, 255, (512, 768, 3), np.uint8)
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(pixels, tile=(128, 128), photometric="rgb")
        tiff.write(pixels[::2, ::2], tile=(128, 128), photometric="rgb", subfiletype=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


def _assert_one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isengard-wsi-dicomizer: error: "), done.stderr


def test_truncated_tiff_fails_leaving_nothing(tmp_path: Path) -> None:
    whole = sample("WSI", "OrthancLogoRaw.tiff").read_bytes()
    cases = {
        "tiles": whole[: len(whole) // 2],
        "lena": sample("WSI", "LenaColorJpegYCbCr.tiff").read_bytes()[:100_000],  # its IFDs are at the end
    }
    for name, data in cases.items():
        source = tmp_path / f"{name}.tiff"
        source.write_bytes(data)
        _assert_one_line_error(run(f"--folder={tmp_path / ('out-' + name)}", str(source)))
    _assert_one_line_error(run(f"--folder={tmp_path / 'out-late'}", str(_truncated_pyramid(tmp_path / "late.tiff"))))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []  # no folder, no staging folder


def test_failure_in_an_existing_folder_leaves_it_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mine.txt").write_text("kept")
    _assert_one_line_error(run(f"--folder={folder}", str(_truncated_pyramid(tmp_path / "late.tiff"))))
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_orthanc_target_stores_then_rolls_back(isengard: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """--orthanc posts each level when it is complete; a failure at the second level deletes the first."""
    server = isengard()
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"PatientName": "Slide^Test", "SeriesDescription": "H&E"}))
    done = run(f"--orthanc={server.url}", f"--dataset={dataset}", str(sample("WSI", "LenaGrayscaleJpeg.tiff")))
    assert done.returncode == 0, done.stderr
    instances = server.get("/instances").json()
    assert len(instances) == 4
    tags = server.get(f"/instances/{instances[0]}/simplified-tags").json()
    assert tags["PatientName"] == "Slide^Test" and tags["SeriesDescription"] == "H&E"
    _assert_one_line_error(run("--orthanc", server.url, str(_truncated_pyramid(tmp_path / "late.tiff"))))
    changes = server.get("/changes", params={"limit": 1000}).json()["Changes"]
    assert [change["ChangeType"] for change in changes].count("Deleted") == 4  # level 0, its series, study, patient
    assert len(server.get("/instances").json()) == 4


def test_plain_jpeg_that_fits_a_tile_is_one_frame_as_it_is(tmp_path: Path) -> None:
    image = tmp_path / "small.jpg"
    Image.fromarray(np.asarray(Image.open(sample("WSI", "Lena2x2.png")).convert("RGB"))[:200, :300]).save(image)
    (path,) = dicomize([DICOMIZER], image, tmp_path / "out", [])
    ds = pydicom.dcmread(path)
    assert (ds.Columns, ds.Rows, ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows) == (300, 200, 300, 200)
    (frame,) = frames([ds])
    data = image.read_bytes()
    assert frame[: len(data)] == data and ds.PhotometricInterpretation == "YBR_FULL_422"


def test_options_as_orthanc_spells_them() -> None:
    help_text = run("--help").stdout
    for option in (
        "--threads",
        "--dataset",
        "--sample-dataset",
        "--reencode",
        "--pyramid",
        "--smooth",
        "--levels",
        "--tile-width",
        "--tile-height",
        "--compression",
        "--jpeg-quality",
        "--max-size",
        "--folder",
        "--folder-pattern",
        "--orthanc",
        "--imaged-width",
        "--offset-x",
        "--username",
        "--password",
        "--optical-path",
        "--icc-profile",
        "--safety",
        "--lower-levels",
        "--openslide",
    ):
        assert option in help_text
    sample_dataset: dict[str, Any] = json.loads(run("--sample-dataset").stdout)
    assert "PatientName" in sample_dataset and "SpecimenDescriptionSequence" in sample_dataset
    _assert_one_line_error(run("--openslide=/usr/lib/libopenslide.so", "--folder=/nonexistent/x", "slide.svs"))
    assert run("--reencode").returncode != 0  # a Boolean option needs its value, as in OrthancWSIDicomizer


# -- POST /wsi/dicomize: the same conversion, as a job of the server ------------------------------------------
def _dicomized_pyramid(server: ServerProcess, answer: dict[str, Any]) -> dict[str, Any]:
    """The job's outcome: it succeeded, and its series has a pyramid."""
    assert answer["Path"] == f"/jobs/{answer['ID']}"
    job = wait_job(server, answer["ID"], timeout=120)
    assert job["State"] == "Success" and job["Type"] == "WsiDicomizer", job
    pyramid = server.get(f"/wsi/pyramids/{job['Content']['ParentSeries']}").json()
    assert len(job["Content"]["Instances"]) == len(pyramid["Sizes"])
    return pyramid


def test_dicomize_job_of_an_uploaded_tiff(isengard: Callable[..., ServerProcess]) -> None:
    """The body is the slide; options in the query string; instances stored through the ingest."""
    server = isengard()
    source = sample("WSI", "LenaColorJpegYCbCr.tiff")
    with tifffile.TiffFile(source) as tiff:
        sizes = [[page.imagewidth, page.imagelength] for page in (lv.keyframe for lv in tiff.series[0].levels)]
    response = server.post(
        "/wsi/dicomize", content=source.read_bytes(), headers={"Content-Type": "image/tiff"}, params={"MaxSize": 0}
    )
    assert response.status_code == 200, response.text
    assert _dicomized_pyramid(server, response.json())["Sizes"] == sizes
    assert (
        server.post(
            "/wsi/dicomize", content=b"II*\0", headers={"Content-Type": "image/tiff"}, params={"Nonsense": 1}
        ).status_code
        == 400
    )


def test_dicomize_job_of_a_path_in_the_folder(isengard: Callable[..., ServerProcess], tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "logo.tiff").write_bytes(sample("WSI", "OrthancLogoJpeg.tiff").read_bytes())
    (tmp_path / "secret.tiff").write_bytes(b"not for clients")
    (folder / "link.tiff").symlink_to(tmp_path / "secret.tiff")
    server = isengard({"WholeSlideImaging": {"DicomizerFolder": str(folder)}})
    body = {"Path": "sub/logo.tiff", "Pyramid": True, "TileWidth": 128, "TileHeight": 128, "Compression": "jpeg"}
    pyramid = _dicomized_pyramid(server, server.post("/wsi/dicomize", json=body).json())
    assert pyramid["TilesSizes"][0] == [128, 128] and len(pyramid["Sizes"]) > 1
    for path, status in (("../secret.tiff", 403), ("link.tiff", 403), (str(tmp_path / "secret.tiff"), 400)):
        assert server.post("/wsi/dicomize", json={"Path": path}).status_code == status, path
    assert server.post("/wsi/dicomize", json={"Path": "missing.tiff"}).status_code == 404
    assert server.post("/wsi/dicomize", json={"Path": "sub/logo.tiff", "TileWidth": -1}).status_code == 400


def test_dicomize_job_refuses_a_path_without_folder_and_rolls_back(
    isengard: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = isengard()
    assert server.post("/wsi/dicomize", json={"Path": "slide.tiff"}).status_code == 403
    truncated = _truncated_pyramid(tmp_path / "late.tiff")
    answer = server.post(
        "/wsi/dicomize", content=truncated.read_bytes(), headers={"Content-Type": "application/octet-stream"}
    ).json()
    job = wait_job(server, answer["ID"], timeout=60)
    assert job["State"] == "Failure" and "truncated" in job["ErrorDetails"], job
    assert server.get("/instances").json() == []  # the levels stored before the failure are deleted
