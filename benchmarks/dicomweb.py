"""DICOMweb: Isengard's plugin against Orthanc's (Debian's orthanc-dicomweb), same data, same client code.

- QIDO-RS study searches on an index of S studies (one small instance each): median and p95 latency of each
  query shape, one client, after a warm-up.
- WADO-RS ``/metadata`` of one series of I CT instances (512x512, full headers as DICOM JSON): time for the
  whole answer, and its size.
- WADO-RS ``/frames/1`` of every instance of that series: frames/s and MB/s, one client, then several.

    .venv/bin/python benchmarks/dicomweb.py                          # 10,000 studies, a 500-instance series
    .venv/bin/python benchmarks/dicomweb.py --studies 500 --instances 50 --runs 20   # a quick run
    .venv/bin/python benchmarks/dicomweb.py --no-orthanc             # Isengard alone

Each part gets its own pair of fresh servers (run.py's defaults; Orthanc with the DICOMweb plugin, whose
defaults agree with Isengard's: ``/dicom-web/`` root, full metadata read from the files, case-sensitive QIDO),
loaded by concurrent ``POST /instances`` (neither server has a faster route), and measured one after the other,
the other server idle. The table's ratio is oriented as run.py's: > 1 means Isengard does better.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pydicom
from generate import DEFAULT_CACHE, Layout, generate
from run import Suite, compared, load_average, log, report, work_folder
from servers import Server, fresh, orthanc_version
from workloads import download, ingest, latencies, median_p95

PLUGIN = Path(os.environ.get("ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"))
ROOT = "/dicom-web"
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"'
JSON = {"Accept": "application/dicom+json"}
LOAD_CLIENTS = 4


@contextmanager
def running(workdir: Path, tag: str, kinds: tuple[str, ...]) -> Iterator[list[Server]]:
    """Fresh servers side by side, Orthanc with its DICOMweb plugin; removed afterwards."""
    extra: dict[str, dict[str, Any]] = {"Isengard": {}, "Orthanc": {"Plugins": [str(PLUGIN)]}}
    with fresh([Server(kind, workdir / f"{tag}-{kind.lower()}", extra[kind]) for kind in kinds]) as servers:
        yield servers


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def load(suite: Suite, servers: list[Server], files: list[Path], label: str | None) -> None:
    """POST every file with concurrent clients; a row of the rate if ``label``."""
    row = suite.row(label, True) if label else None
    for server in servers:
        batch = ingest(server.url, files, LOAD_CLIENTS, f"loading {len(files):,} files into {server.kind}")
        if row:
            row.figures[server.kind] = batch.per_second


def qido(suite: Suite, args: argparse.Namespace, kinds: tuple[str, ...]) -> None:
    layout = Layout(max(1, args.studies // 2), 2, 1, 1, size=32)  # 2 studies per patient, one tiny image each
    files = generate(layout, args.cache)
    middle = header(files[len(files) // 2])
    family = str(middle.PatientName).split("^")[0]
    # Query strings as written, not built by httpx: it percent-encodes "*" and "^" (and spaces as "+"), which
    # Orthanc 1.10.1 + DICOMweb 1.7 do not decode in QIDO-RS arguments (PatientName=%2A finds nothing there).
    shapes = {  # query -> timed runs; the last one answers every study
        f"PatientID={middle.PatientID}": args.runs,
        f"PatientName={family[:3]}*": args.runs,
        "StudyDate=20180101-20181231": args.runs,
        "limit=100": args.runs,
        "ModalitiesInStudy=CT": max(3, args.runs // 10),
    }
    with running(args.workdir, "qido", kinds) as servers:
        label = f"REST ingest of {layout.count:,} studies of one small instance, {LOAD_CLIENTS} clients (instances/s)"
        load(suite, servers, files, label)
        for query, runs in shapes.items():
            median = suite.row(f"QIDO-RS /studies?{query}: median (ms)", False, decimals=2)
            p95 = suite.row(f"QIDO-RS /studies?{query}: p95 (ms) [{runs} runs]", False, decimals=2)
            counts = {}
            for server in servers:
                path, desc = f"{ROOT}/studies?{query}", f"{query} {server.kind}"
                timings, warm = latencies(server.url, "GET", path, runs, desc, headers=JSON)
                counts[server.kind] = len(warm.json())
                median.figures[server.kind], p95.figures[server.kind] = (t * 1000 for t in median_p95(timings))
            if len(set(counts.values())) == 1:
                median.label += f" [{counts[kinds[0]]:,} studies]"
            else:
                suite.notes.append(f"QIDO-RS {query}: different answer counts {counts}.")


def series(suite: Suite, args: argparse.Namespace, kinds: tuple[str, ...]) -> None:
    files = generate(Layout(1, 1, 1, args.instances), args.cache)
    first = header(files[0])
    series_path = f"{ROOT}/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    frames = [f"{series_path}/instances/{header(f).SOPInstanceUID}/frames/1" for f in files]
    n = len(files)
    with running(args.workdir, "series", kinds) as servers:
        load(suite, servers, files, None)
        first = suite.row(f"WADO-RS series /metadata, {n} CT instances, full: first request (ms)", False, decimals=1)
        median = suite.row("WADO-RS series /metadata, the next requests: median (ms)", False, decimals=1)
        p95 = suite.row(f"WADO-RS series /metadata: p95 (ms) [{args.metadata_runs} runs]", False, decimals=1)
        for server in servers:
            desc = f"metadata {server.kind}"
            started = time.perf_counter()  # Isengard makes its metadata cache then (EnableMetadataCache)
            httpx.get(f"{server.url}{series_path}/metadata", headers=JSON, timeout=300).raise_for_status()
            first.figures[server.kind] = (time.perf_counter() - started) * 1000
            timings, warm = latencies(
                server.url, "GET", f"{series_path}/metadata", args.metadata_runs, desc, headers=JSON
            )
            median.figures[server.kind], p95.figures[server.kind] = (t * 1000 for t in median_p95(timings))
            items = len(warm.json())
            encoding = warm.headers.get("Content-Encoding", "identity")
            suite.notes.append(
                f"{server.kind}'s series /metadata: {items} items, {len(warm.content) / 1e6:.2f} MB of JSON, "
                f"{warm.num_bytes_downloaded / 1e6:.2f} MB on the wire ({encoding})."
            )
            if items != n:
                suite.notes.append(f"{server.kind}'s series /metadata has {items} items for {n} instances.")
        for clients in (1, args.clients):
            who = f"{clients} client{'s' if clients > 1 else ''}"
            rate = suite.row(f"WADO-RS /frames/1 of {n} CT instances (512x512, 16 bits), {who} (frames/s)", True)
            mbps = suite.row(f"WADO-RS /frames/1, {who} (MB/s)", True)
            cpu = suite.row(f"Server CPU time per frame, {who} (ms)", False, decimals=2)
            for server in servers:
                before = server.cpu()
                batch = download(server.url, frames, clients, f"frames {clients} {server.kind}", accept=FRAME_ACCEPT)
                cpu.figures[server.kind] = (server.cpu() - before) / n * 1000
                rate.figures[server.kind], mbps.figures[server.kind] = batch.per_second, batch.mb_per_second
                if clients == 1:
                    types = ", ".join(sorted({t.split(";")[0] for t in batch.answers}))
                    suite.notes.append(f"{server.kind}'s frames: {types}, {batch.nbytes / n:,.0f} bytes each.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10_000, help="studies in the QIDO-RS index (even)")
    parser.add_argument("--instances", type=int, default=500, help="CT instances of the series (metadata, frames)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs of each QIDO-RS query")
    parser.add_argument("--metadata-runs", type=int, default=10, help="timed runs of the series /metadata")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the second frames row")
    parser.add_argument("--no-orthanc", action="store_true", help="measure Isengard alone")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated DICOM files")
    parser.add_argument("--workdir", type=Path, help="where the servers keep their files (default: a temp folder)")
    args = parser.parse_args()
    missing = f"no DICOMweb plugin at {PLUGIN} (set $ORTHANC_DICOMWEB, or --no-orthanc)"
    kinds = compared(parser, args.no_orthanc, PLUGIN, missing)
    args.workdir = work_folder(args.workdir, "dicomweb-")
    orthanc = "Orthanc (skipped)" if args.no_orthanc else f"{orthanc_version()} + DICOMweb plugin"
    load_before, started = load_average(), time.monotonic()
    suite = Suite(None, set(), args.workdir, args.cache)  # run.py's table of rows; its plan is run.py's own rows'
    try:
        log("QIDO-RS")
        qido(suite, args, kinds)
        log("WADO-RS series")
        series(suite, args, kinds)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print(report(suite, orthanc, started, load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
