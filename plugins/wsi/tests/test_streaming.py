"""isengard-wsi-dicomizer streams a slide: its peak memory does not grow with the slide (the issue: "Streaming, one
level at a time: peak RSS does not grow with the slide", tested on "a multi-GB pyramid").

Two tiled JPEG TIFF pyramids of the same kind are written here, a small one (about 50 MB) and a large one (about
2 GB, less when the disk is short), each tile the same JPEG stream so that writing them is quick. Each is dicomized
with the default ``--max-size`` (10 MB instances, a concatenation per level) and with ``--max-size=0`` (one
instance per level: the level goes through the frame spool on disk, never memory). The peak RSS of the DICOMizer
process alone (its ``ru_maxrss``, taken by a small parent process) may exceed the small slide's by a few MB only;
the outputs must hold every tile once, byte for byte.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from PIL import Image

from isengard_wsi import dicom_to_tiff  # noqa: F401 - registers tifffile's placeholder for given JPEG tiles

DICOMIZER = str(Path(sys.executable).parent / "isengard-wsi-dicomizer")
TILE = 512
LEVELS = 3  # level 0, then each half the previous
BIG = 2_000_000_000  # bytes of tiles in the large slide
SMALL = 50_000_000
#: How much more the large slide's conversion may use than the small one's (the issue's "does not grow").
RSS_MARGIN_MB = 30
#: Room kept free on the disk besides what the test writes.
DISK_MARGIN = 2_000_000_000


@dataclass(frozen=True)
class Slide:
    path: Path
    grids: list[tuple[int, int]]  # tiles (columns, rows) of each level, level 0 first
    tile: bytes  # every tile of every level

    @property
    def tile_bytes(self) -> int:
        return len(self.tile) * sum(columns * rows for columns, rows in self.grids)


@dataclass(frozen=True)
class Run:
    peak_rss_mb: float
    files: list[Path]


def noisy_tile() -> bytes:
    """A 512x512 colour JPEG (YCbCr 4:2:0) of noise at high quality: large, like a busy stained region."""
    pixels = np.random.default_rng(7).integers(0, 256, (TILE, TILE, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def write_slide(path: Path, target: int, tile: bytes) -> Slide:
    """A square pyramid whose tiles add up to about ``target`` bytes; tifffile writes the given streams as they
    are (no JPEGTables), so each frame the DICOMizer copies is ``tile`` itself."""
    tiles_wanted = target / len(tile)
    step = 2 ** (LEVELS - 1)  # each level exactly half the one above, as tifffile finds a pyramid
    side = step * max(1, round(math.sqrt(tiles_wanted / sum(4**-level for level in range(LEVELS))) / step))
    grids = [(side >> level, side >> level) for level in range(LEVELS)]
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for level, (columns, rows) in enumerate(grids):
            tiff.write(
                (tile for _ in range(columns * rows)),
                shape=(rows * TILE, columns * TILE, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"outcolorspace": tifffile.PHOTOMETRIC.YCBCR},
                subsampling=(2, 2),
                subfiletype=1 if level else 0,
                metadata=None,
            )
    return Slide(path, grids, tile)


#: Runs a command and writes its peak RSS (kB) to a file. The command must be a child of a small process: Linux
#: counts in a process's ru_maxrss the memory of the one that exec'd it (pytest here, when spawned directly).
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def dicomize(slide: Slide, folder: Path, *options: str) -> Run:
    """Run the console script, and measure its own peak RSS."""
    peak = folder.with_suffix(".rss")
    command = [DICOMIZER, f"--folder={folder}", *options, str(slide.path)]
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(peak), *command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Run(int(peak.read_text()) / 1024, sorted(folder.glob("*.dcm")))


def check_output(slide: Slide, run: Run, *, one_per_level: bool) -> None:
    """Every level complete (frames and total size from the headers), and every frame is the tile itself."""
    frames: dict[int, int] = {}
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in run.files]
    for ds in headers:
        assert ds.DimensionOrganizationType == "TILED_FULL"
        frames[ds.TotalPixelMatrixColumns] = frames.get(ds.TotalPixelMatrixColumns, 0) + int(ds.NumberOfFrames)
        assert ds.TotalPixelMatrixRows == ds.TotalPixelMatrixColumns
    assert frames == {columns * TILE: columns * rows for columns, rows in slide.grids}
    if one_per_level:
        assert len(run.files) == LEVELS
    else:
        assert len(run.files) > slide.tile_bytes // (10 * 1024 * 1024)  # cut at --max-size, 10 MB
    # Frames copied as they are: the output is the tiles plus an 8-byte item header per frame and small headers.
    frame_count = sum(frames.values())
    written = sum(path.stat().st_size for path in run.files)
    padded = len(slide.tile) + len(slide.tile) % 2
    assert 0 < written - frame_count * (padded + 8) < len(run.files) * 64 * 1024
    for path in run.files:  # the last frame of each file, then the sequence delimiter
        with open(path, "rb") as f:
            f.seek(-(padded + 8), os.SEEK_END)
            assert f.read(len(slide.tile)) == slide.tile
            f.seek(-8, os.SEEK_END)
            assert f.read() == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def test_peak_memory_does_not_grow_with_the_slide(tmp_path: Path) -> None:
    tile = noisy_tile()
    small = write_slide(tmp_path / "small.tiff", SMALL, tile)
    # The disk holds the slide, then either its output, or its --max-size=0 output and the frame spool.
    size = min(BIG, (shutil.disk_usage(tmp_path).free - DISK_MARGIN) // 3)
    assert size >= 20 * SMALL, f"not enough free disk in {tmp_path} for a large slide"
    big = write_slide(tmp_path / "big.tiff", size, tile)
    assert big.path.stat().st_size > big.tile_bytes > 0.9 * size
    try:
        for options, one_per_level in (((), False), (("--max-size=0",), True)):
            name = "max-size-0" if options else "default"
            small_run = dicomize(small, tmp_path / f"small-{name}", *options)
            check_output(small, small_run, one_per_level=one_per_level)
            big_run = dicomize(big, tmp_path / f"big-{name}", *options)
            try:
                check_output(big, big_run, one_per_level=one_per_level)
            finally:
                shutil.rmtree(tmp_path / f"big-{name}")
            print(
                f"{name}: small slide {small.tile_bytes / 1e6:.0f} MB peak RSS {small_run.peak_rss_mb:.1f} MB, "
                f"large slide {big.tile_bytes / 1e9:.2f} GB peak RSS {big_run.peak_rss_mb:.1f} MB"
            )
            assert big_run.peak_rss_mb - small_run.peak_rss_mb < RSS_MARGIN_MB, (name, small_run, big_run)
    finally:
        big.path.unlink()
