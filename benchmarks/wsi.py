"""WSI: Isengard's DICOMizer and tile route against orthanc-wsi's (Debian's OrthancWSIDicomizer and WSI plugin).

- DICOMizer: a generated tiled JPEG TIFF pyramid (default 12288x8192, 512x512 tiles, 3 levels) turned into a
  DICOM folder (``--folder``) by ``isengard-wsi-dicomizer`` and by ``OrthancWSIDicomizer``, lossless (the JPEG
  tiles copied) and re-encoded (``--reencode=1 --pyramid=1``), with 1 and 4 threads: frames written per second
  of wall time (the process's start-up included), and the peak RSS of the process (``/usr/bin/time``), the
  medians of 3 runs.
- Tiles: the lossless outputs uploaded, Isengard's to Isengard, Orthanc's to Orthanc with the WSI plugin, then
  ``GET /wsi/tiles/{series}/0/{x}/{y}`` over every tile of the largest level: p50 and p95 with one client,
  tiles/s with 16 concurrent clients.

    .venv/bin/python benchmarks/wsi.py                  # the full run
    .venv/bin/python benchmarks/wsi.py --quick          # a 4096x2048 slide, one run of each: a dry run
    .venv/bin/python benchmarks/wsi.py --size 8192x8192 --no-orthanc

The ratio is oriented as run.py's: > 1 means Isengard does better.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import tifffile
from generate import DEFAULT_CACHE
from PIL import Image
from run import Suite, compared, load_average, log, report, work_folder
from servers import Server, orthanc_version
from tqdm import tqdm
from workloads import download, ingest, latencies, median_p95

from isengard_wsi import dicom_to_tiff  # noqa: F401 - registers tifffile's placeholder for given JPEG tiles

PLUGIN = Path(os.environ.get("ORTHANC_WSI", "/usr/share/orthanc/plugins/libOrthancWSI.so"))
DICOMIZERS = {
    "Isengard": [str(Path(sys.executable).parent / "isengard-wsi-dicomizer")],
    "Orthanc": [os.environ.get("ORTHANC_WSI_DICOMIZER", shutil.which("OrthancWSIDicomizer") or "OrthancWSIDicomizer")],
}
TIME = Path("/usr/bin/time")
TILE = 512
LEVELS = 3
CLIENTS = 16
NO_GZIP = {"Accept-Encoding": "identity"}


def _tile(x0: int, y0: int, scale: int, rng: np.random.Generator) -> bytes:
    """One JPEG tile of a smooth, stained-looking pattern (level-0 coordinates) with some grain, quality 90."""
    ys, xs = np.mgrid[y0 : y0 + TILE * scale : scale, x0 : x0 + TILE * scale : scale].astype(np.float32)
    wave = np.sin(xs / 700) * np.cos(ys / 500) + 0.5 * np.sin((xs + ys) / 90)
    base = np.stack([200 + 40 * wave, 150 + 60 * wave, 210 + 25 * wave], axis=-1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_pyramid(path: Path, width: int, height: int) -> int:
    """A tiled JPEG (YCbCr 4:2:0) TIFF of LEVELS levels, each half the previous; its number of tiles."""
    rng = np.random.default_rng(11)
    count = 0
    with tifffile.TiffWriter(path, bigtiff=True) as tiff, tqdm(desc="TIFF tiles", unit="tile", leave=False) as bar:
        for level in range(LEVELS):
            scale = 2**level
            w, h = -(-width // scale), -(-height // scale)

            def tiles(scale: int = scale, w: int = w, h: int = h) -> Iterator[bytes]:
                for y in range(0, h, TILE):
                    for x in range(0, w, TILE):
                        bar.update()
                        yield _tile(x * scale, y * scale, scale, rng)

            tiff.write(
                tiles(),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"outcolorspace": tifffile.PHOTOMETRIC.YCBCR},
                subsampling=(2, 2),
                subfiletype=1 if level else 0,
                metadata=None,
            )
            count += -(-w // TILE) * -(-h // TILE)
    return count


def source(cache: Path, width: int, height: int) -> Path:
    """The generated slide, kept in the benchmarks' cache folder (written once per size)."""
    path = cache / f"wsi-{width}x{height}-{TILE}.tiff"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        tiles = write_pyramid(partial, width, height)
        partial.rename(path)
        log(f"wrote {path} ({tiles} tiles, {path.stat().st_size / 1e6:.0f} MB)")
    return path


@dataclass
class Dicomized:
    seconds: float
    peak_rss: float  # MB
    frames: int
    files: list[Path]

    @property
    def per_second(self) -> float:
        return self.frames / self.seconds


def dicomize(kind: str, slide: Path, folder: Path, threads: int, reencode: bool) -> Dicomized:
    """Run one DICOMizer alone on ``slide``; wall time, peak RSS, and the frames of what it wrote."""
    folder.mkdir(parents=True)
    options = [f"--threads={threads}", f"--folder={folder}"]
    if reencode:
        options += ["--reencode=1", "--pyramid=1"]
    rss_file = folder.parent / f"{folder.name}.rss"
    command = [*DICOMIZERS[kind], *options, str(slide)]
    if TIME.exists():  # the peak of this process alone
        command = [str(TIME), "-f", "%M", "-o", str(rss_file), *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{kind} DICOMizer failed: {done.stderr[-2000:]}")
    if TIME.exists():
        peak = int(rss_file.read_text().split()[-1]) / 1024
    else:  # the largest child so far: right as long as each run uses more than the previous ones
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    files = sorted(folder.iterdir())
    frames = sum(int(pydicom.dcmread(f, stop_before_pixels=True).get("NumberOfFrames", 1)) for f in files)
    return Dicomized(seconds, peak, frames, files)


def dicomizers(suite: Suite, slide: Path, kinds: tuple[str, ...], workdir: Path, runs: int) -> dict[str, list[Path]]:
    """The DICOMizer rows, medians of ``runs`` (the two tools in turn); the lossless 4-thread outputs, kept for the
    tile rows."""
    outputs: dict[str, list[Path]] = {}
    for reencode in (False, True):
        mode = "re-encode (--reencode=1 --pyramid=1)" if reencode else "lossless (tiles copied)"
        for threads in (1, 4):
            rate = suite.row(f"DICOMizer, {mode}, --threads={threads} (frames/s)", True)
            rss = suite.row(f"DICOMizer, {mode}, --threads={threads}: peak RSS (MB)", False)
            done: dict[str, list[Dicomized]] = {kind: [] for kind in kinds}
            for rep in range(runs):
                for kind in kinds:
                    log(f"DICOMizer {kind}, {mode}, {threads} thread(s), run {rep + 1}/{runs}")
                    folder = workdir / f"dicomizer-{kind.lower()}-{int(reencode)}-{threads}-{rep}"
                    done[kind].append(dicomize(kind, slide, folder, threads, reencode))
                    if not reencode and threads == 4 and rep == runs - 1:
                        outputs[kind] = done[kind][-1].files
                    else:
                        shutil.rmtree(folder)
            for kind, results in done.items():
                rate.figures[kind] = statistics.median(r.per_second for r in results)
                rss.figures[kind] = statistics.median(r.peak_rss for r in results)
            counts = ", ".join(f"{kind} {results[0].frames:,}" for kind, results in done.items())
            rate.label += f" [{counts} frames; median of {runs}]"
    return outputs


def series_of(server: Server, instance: str) -> str:
    return httpx.get(f"{server.url}/instances/{instance}", timeout=60).json()["ParentSeries"]


def tiles(suite: Suite, outputs: dict[str, list[Path]], workdir: Path, passes: int) -> None:
    extra = {"Isengard": {}, "Orthanc": {"Plugins": [str(PLUGIN)]}}
    kinds = tuple(outputs)
    p50 = suite.row("GET /wsi/tiles/{series}/0/{x}/{y}, 1 client: p50 (ms)", False, decimals=2)
    p95 = suite.row("GET /wsi/tiles/{series}/0/{x}/{y}, 1 client: p95 (ms)", False, decimals=2)
    rate = suite.row(f"GET /wsi/tiles/{{series}}/0/{{x}}/{{y}}, {CLIENTS} clients (tiles/s)", True)
    cpu = suite.row(f"Server CPU time per tile, {CLIENTS} clients (ms)", False, decimals=2)
    for kind in kinds:
        server = Server(kind, workdir / f"tiles-{kind.lower()}", extra[kind])
        try:
            server.start()
            ids = ingest(server.url, outputs[kind], 1, f"upload to {kind}").answers
            series = series_of(server, ids[0])
            pyramid = httpx.get(f"{server.url}/wsi/pyramids/{series}", timeout=60).json()
            columns, rows = pyramid["TilesCount"][0]
            paths = [f"/wsi/tiles/{series}/0/{x}/{y}" for y in range(rows) for x in range(columns)]
            timings, warm = latencies(server.url, "GET", paths, len(paths) * passes, f"tiles 1 {kind}", headers=NO_GZIP)
            p50.figures[kind], p95.figures[kind] = (t * 1000 for t in median_p95(timings))
            before = server.cpu()
            batch = download(server.url, paths * passes, CLIENTS, f"tiles {CLIENTS} {kind}")
            cpu.figures[kind] = (server.cpu() - before) / batch.count * 1000
            rate.figures[kind] = batch.per_second
            suite.notes.append(
                f"{kind}: level 0 of {columns}x{rows} tiles ({pyramid['Sizes'][0][0]}x{pyramid['Sizes'][0][1]}), "
                f"{warm.headers.get('Content-Type')}, {batch.nbytes / batch.count / 1e3:.1f} kB per tile; "
                f"{len(pyramid['Sizes'])} levels, {len(outputs[kind])} files uploaded."
            )
        finally:
            server.remove()
    p50.label += f" [{passes} pass{'es' if passes > 1 else ''} over the level]"


def size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size, help="WIDTHxHEIGHT of the slide's base level (default 12288x8192)")
    parser.add_argument("--quick", action="store_true", help="a 4096x2048 slide, one pass over the tiles")
    parser.add_argument("--no-orthanc", action="store_true", help="measure Isengard alone")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated slide")
    parser.add_argument("--workdir", type=Path, help="where the outputs and servers go (default: a temp folder)")
    args = parser.parse_args()
    width, height = args.size or ((4096, 2048) if args.quick else (12288, 8192))
    passes = 1 if args.quick else 3  # over the level's tiles, and DICOMizer runs of each row
    kinds = compared(parser, args.no_orthanc, PLUGIN, f"no WSI plugin at {PLUGIN} (set $ORTHANC_WSI, or --no-orthanc)")
    workdir = work_folder(args.workdir, "wsi-")
    orthanc = "Orthanc (skipped)" if args.no_orthanc else f"{orthanc_version()} + WSI plugin"
    slide = source(args.cache, width, height)
    load_before, started = load_average(), time.monotonic()
    suite = Suite(None, set(), workdir, args.cache)  # run.py's table of rows
    try:
        outputs = dicomizers(suite, slide, kinds, workdir, passes)
        tiles(suite, outputs, workdir, passes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    details = (
        f"slide {width}x{height}, {TILE}x{TILE} JPEG tiles, {LEVELS} levels ({slide.stat().st_size / 1e6:.0f} MB); "
    )
    print(report(suite, orthanc, started, load_before, details=details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
