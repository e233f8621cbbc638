"""Viewer: a 500-slice CT (512x512, 16 bits) shown by Isengard's viewer API and by Orthanc's Web viewer plugin.

- Data: one series of ``generate.py`` (Layout 1x1x1x500: 5 mm slices of a noisy CT-like phantom, 263 MB), kept in
  the benchmarks' cache; for the layers, a PET (128x128, 4 mm, every 20 mm), an RT Structure Set (a sphere and a
  cube outlined on the CT's slices) and an RT Dose (a Gaussian on a 96x96 grid, 4 mm), all in the CT's frame of
  reference (``isengard_viewer.phantom``).
- First image, on a fresh server right after the upload (nothing decoded yet): what each viewer asks before it
  can draw the middle slice (where both open a series). Isengard: ``/viewer/api/series/{id}/volume``, then
  ``reslice/axial?index=i&window=40,400&format=jpeg&quality=95`` (what the browser's stack asks for a grey
  picture). Orthanc: ``/web-viewer/series/{id}`` (its sorted instances), then
  ``/web-viewer/instances/jpeg95-{instance}_0`` (its viewer's default compression, a JSON with a JPEG in it).
- Whole series: the same, then every other slice outward from the middle, 3 requests at a time (the browser
  stack's prefetch); from the first request to the last answer. Then both again (warm).
- Reslices (Isengard only: Orthanc's Web viewer has no MPR): a cold request on a restarted server (the volume is
  loaded for it, except on the acquisition plane), then the median of 10 warm ones at other positions; axial,
  coronal, sagittal, oblique, and axial and coronal with the three layers (PET fused, structures, dose wash and
  three isodoses).
- Memory: each server's RSS (with its children) after the whole series, and Isengard's at the end.

    .venv/bin/python benchmarks/viewer.py            # 500 slices
    .venv/bin/python benchmarks/viewer.py --quick    # 100 slices: a dry run
    .venv/bin/python benchmarks/viewer.py --no-orthanc

The ratio is oriented as run.py's: > 1 means Isengard does better.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pydicom
from generate import DEFAULT_CACHE, Layout, generate
from run import Row, Suite, compared, load_average, log, report, work_folder
from servers import Server, orthanc_version
from tqdm import tqdm
from workloads import ingest

from isengard.testing import free_port
from isengard_viewer import phantom

PLUGIN = Path(os.environ.get("ORTHANC_WEBVIEWER", "/usr/share/orthanc/plugins/libOrthancWebViewer.so"))
PREFETCH = 3  # requests at a time, as the browser stack prefetches
WINDOW = "40,400"
WARM = 10
NO_GZIP = {"Accept-Encoding": "identity"}


def outward(count: int) -> list[int]:
    """Slice indices from the middle outward, as the stack loads them: m, m+1, m-1, m+2, ..."""
    middle = count // 2
    order = [middle]
    for step in range(1, count):
        order += [k for k in (middle + step, middle - step) if 0 <= k < count]
    return order[:count]


def layer_datasets(ct: list[Path]) -> dict[str, list[pydicom.Dataset]]:
    """A PET, an RT Structure Set and an RT Dose in the CT's frame of reference, around its middle."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in ct]
    first, last = headers[0], headers[-1]
    top, bottom = float(first.ImagePositionPatient[2]), float(last.ImagePositionPatient[2])
    middle = (top + bottom) / 2
    shapes = phantom.Shapes(
        sphere_center=(20.0, -10.0, middle + 30.0),
        sphere_radius=40.0,
        sphere_value=20000.0,
        cube_center=(-60.0, 30.0, middle - 40.0),
        cube_half_side=30.0,
        cube_value=6000.0,
        background=2000.0,
    )
    low = min(top, bottom)
    span = abs(top - bottom)
    pet_grid = phantom.Series(
        rows=128,
        columns=128,
        pixel_spacing=(4.0, 4.0),
        offsets=tuple(float(z) for z in np.arange(0.0, span + 1e-6, 20.0)),
        origin=(-254.0, -254.0, low),
        modality="PT",
    )
    pet = phantom.pet_series(pet_grid, shapes, phantom.PetDose(), like=first)
    for ds in pet:
        ds.WindowCenter, ds.WindowWidth = "12000", "24000"
    dose_grid = phantom.Series(
        rows=96,
        columns=96,
        pixel_spacing=(4.0, 4.0),
        offsets=tuple(4.0 * k for k in range(60)),
        origin=(-172.0, -202.0, middle - 118.0),
    )
    dose = phantom.rt_dose(dose_grid, phantom.GaussianDose(center=(20.0, -10.0, middle), sigma=40.0), first)
    return {"pet": pet, "rtstruct": [phantom.rt_structure_set(headers, shapes)], "rtdose": [dose]}


def upload_datasets(server: Server, datasets: list[pydicom.Dataset]) -> dict:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        for ds in datasets:
            answer = client.post("/instances", content=phantom.to_bytes(ds))
            answer.raise_for_status()
    return answer.json()


class Viewer:
    """One viewer's client: what it asks to open a series, and for one slice."""

    def __init__(self, server: Server, series: str) -> None:
        self.server = server
        self.series = series
        self.slices: list[str] = []

    def open(self, client: httpx.Client) -> int:
        """The series' description; the number of slices."""
        raise NotImplementedError

    def slice_path(self, index: int) -> str:
        raise NotImplementedError


class IsengardViewer(Viewer):
    def open(self, client: httpx.Client) -> int:
        answer = client.get(f"/viewer/api/series/{self.series}/volume")
        answer.raise_for_status()
        return int(answer.json()["Size"][2])

    def slice_path(self, index: int) -> str:
        return f"/viewer/api/series/{self.series}/reslice/axial?index={index}&window={WINDOW}&format=jpeg&quality=95"


class OrthancViewer(Viewer):
    def open(self, client: httpx.Client) -> int:
        answer = client.get(f"/web-viewer/series/{self.series}")
        answer.raise_for_status()
        self.slices = answer.json()["Slices"]
        return len(self.slices)

    def slice_path(self, index: int) -> str:
        return f"/web-viewer/instances/jpeg95-{self.slices[index]}"


def show_series(viewer: Viewer, desc: str) -> tuple[float, float, int]:
    """(seconds to the first image, seconds to every slice, bytes of the first image): open, the middle slice,
    then the others outward, PREFETCH at a time."""
    limits = httpx.Limits(max_connections=PREFETCH)
    with httpx.Client(base_url=viewer.server.url, timeout=600, headers=NO_GZIP, limits=limits) as client:
        started = time.perf_counter()
        count = viewer.open(client)
        order = outward(count)
        first = client.get(viewer.slice_path(order[0]))
        first.raise_for_status()
        first_seconds = time.perf_counter() - started

        def fetch(index: int) -> int:
            answer = client.get(viewer.slice_path(index))
            answer.raise_for_status()
            return len(answer.content)

        with ThreadPoolExecutor(PREFETCH) as pool:
            for _ in tqdm(pool.map(fetch, order[1:]), total=count - 1, desc=desc, unit="slice", leave=False):
                pass
        return first_seconds, time.perf_counter() - started, len(first.content)


def wait_loaded(server: Server, since: float, timeout: float = 600.0) -> float:
    """Seconds from ``since`` until Isengard has no volume loading (polled every 50 ms)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while time.perf_counter() - since < timeout:
            if not client.get("/viewer/api/cache").json()["Loading"]:
                return time.perf_counter() - since
            time.sleep(0.05)
    raise RuntimeError("the volume did not load")


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = client.get(path, params=params)
    seconds = time.perf_counter() - started
    answer.raise_for_status()
    return seconds


def reslices(suite: Suite, server: Server, series: str, count: int, layers: dict[str, str]) -> None:
    """Cold (restarted server) and warm latencies of each plane, in ms."""
    fused = {**layers, "dosewash": "1", "isodoses": "10,30,50", "window": WINDOW}
    cases: list[tuple[str, str, Callable[[int], dict[str, str]]]] = [
        ("axial", "axial", lambda k: {"index": str(count // 2 + k), "window": WINDOW}),
        ("coronal", "coronal", lambda k: {"index": str(256 + 8 * k), "window": WINDOW}),
        ("sagittal", "sagittal", lambda k: {"index": str(256 + 8 * k), "window": WINDOW}),
        ("oblique", "oblique", lambda k: {"normal": "0,0.5,0.866", "position": str(-300 + 7 * k), "window": WINDOW}),
        ("axial + PET, RT-STRUCT, RT Dose", "axial", lambda k: {"index": str(count // 2 + k), **fused}),
        ("coronal + PET, RT-STRUCT, RT Dose", "coronal", lambda k: {"index": str(256 + 8 * k), **fused}),
    ]
    for label, plane, params in tqdm(cases, desc="reslices", unit="plane", leave=False):
        cold = suite.row(f"Reslice {label}, cold: restarted server (ms)", False, decimals=0)
        warm = suite.row(f"Reslice {label}, warm: median of {WARM} (ms)", False, decimals=0)
        server.stop()
        server.port = free_port()  # the old one may still be held by the stopped process's sockets
        server.start()
        path = f"/viewer/api/series/{series}/reslice/{plane}"
        with httpx.Client(base_url=server.url, timeout=600, headers=NO_GZIP) as client:
            cold.figures["Isengard"] = timed(client, path, params(0)) * 1000
            wait_loaded(server, time.perf_counter())  # the background load a slice may have started
            timed(client, path, params(0))  # the layers' own volumes (PET, dose grid) too
            warm.figures["Isengard"] = (
                statistics.median(timed(client, path, params(k)) for k in range(1, WARM + 1)) * 1000
            )


def run(suite: Suite, files: list[Path], kinds: tuple[str, ...], workdir: Path) -> None:
    rows: dict[str, Row] = {
        "first": suite.row("First image, cold: series description + middle slice (ms)", False, decimals=0),
        "whole": suite.row(f"Whole series, cold: every slice, {PREFETCH} at a time (s)", False, decimals=2),
        "first-warm": suite.row("First image, warm (ms)", False, decimals=0),
        "whole-warm": suite.row("Whole series, warm (s)", False, decimals=2),
        "rss": suite.row("Server RSS after the whole series, cold then warm (MB)", False, decimals=0),
    }
    extra = {
        "Isengard": {},
        "Orthanc": {"Plugins": [str(PLUGIN)], "WebViewer": {"CachePath": str(workdir / "webviewer-cache")}},
    }
    for kind in kinds:
        server = Server(kind, workdir / kind.lower(), extra[kind])
        try:
            server.start()
            ids = ingest(server.url, files, 2, f"upload to {kind}").answers
            series = httpx.get(f"{server.url}/instances/{ids[0]}", timeout=60).json()["ParentSeries"]
            viewer = (IsengardViewer if kind == "Isengard" else OrthancViewer)(server, series)
            log(f"{kind}: series {series} uploaded, showing it cold then warm")
            started = time.perf_counter()
            first, whole, nbytes = show_series(viewer, f"{kind} cold")
            rows["first"].figures[kind], rows["whole"].figures[kind] = first * 1000, whole
            if kind == "Isengard":
                loaded = wait_loaded(server, started)
                suite.notes.append(f"Isengard: the volume was in memory {loaded:.1f} s after the first request.")
            first, whole, _ = show_series(viewer, f"{kind} warm")
            rows["first-warm"].figures[kind], rows["whole-warm"].figures[kind] = first * 1000, whole
            rows["rss"].figures[kind] = server.rss() / 1e6
            suite.notes.append(f"{kind}: the middle slice's answer is {nbytes / 1e3:.0f} kB.")
            if kind == "Isengard":
                log("Isengard: layers uploaded, reslices on a restarted server each")
                layers = {name: upload_datasets(server, datasets) for name, datasets in layer_datasets(files).items()}
                reslices(
                    suite,
                    server,
                    series,
                    len(files),
                    {
                        "overlay": layers["pet"]["ParentSeries"],
                        "rtstruct": layers["rtstruct"]["ID"],
                        "rtdose": layers["rtdose"]["ID"],
                    },
                )
                suite.row("Isengard RSS at the end (MB)", False, decimals=0).figures[kind] = server.rss() / 1e6
        finally:
            server.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 slices: a dry run")
    parser.add_argument("--slices", type=int, help="slices of the CT (default 500)")
    parser.add_argument("--no-orthanc", action="store_true", help="measure Isengard alone")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated DICOM files")
    parser.add_argument("--workdir", type=Path, help="where the servers keep their files (default: a temp folder)")
    args = parser.parse_args()
    slices = args.slices or (100 if args.quick else 500)
    missing = f"no Web viewer plugin at {PLUGIN} (apt-get install orthanc-webviewer, or --no-orthanc)"
    kinds = compared(parser, args.no_orthanc, PLUGIN, missing)
    workdir = work_folder(args.workdir, "viewer-")
    files = generate(Layout(1, 1, 1, slices), args.cache)
    orthanc = "Orthanc (skipped)" if args.no_orthanc else f"{orthanc_version()} + Web viewer plugin 2.8"
    load_before, started = load_average(), time.monotonic()
    suite = Suite(None, set(), workdir, args.cache)  # run.py's table of rows
    try:
        run(suite, files, kinds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    size = sum(path.stat().st_size for path in files) / 1e6
    details = f"CT of {slices} slices 512x512 16 bits ({size:.0f} MB), {PREFETCH} requests at a time; "
    print(report(suite, orthanc, started, load_before, label=" (--quick)" if args.quick else "", details=details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
