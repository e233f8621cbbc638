"""Isengard against Orthanc on the same machine, same data, same client code; prints a Markdown table.

    .venv/bin/python benchmarks/run.py            # the full suite (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # a small dry run
    .venv/bin/python benchmarks/run.py --only find --only startup
    .venv/bin/python benchmarks/run.py --only backends   # SQLite vs PostgreSQL index (not in the default run)

Each row gives Isengard's figure, Orthanc's, and their ratio, always oriented so that > 1 means Isengard does
better (faster, or less memory). docs/benchmarks.md says what each row measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dicom
import index_backends
import pydicom
from generate import DEFAULT_CACHE, Layout, generate
from servers import Server, fresh, orthanc_version
from workloads import download, find_latencies, ingest, median_p95, route_exists

import isengard

KINDS = ("Isengard", "Orthanc")
GROUPS = ("startup", "ingest", "file", "preview", "find", "dicom", "backends")


@dataclass(frozen=True)
class Plan:
    """How much work each row does: the full suite, or a dry run of every code path."""

    ct: Layout
    find: Layout
    startups: int
    settle: float
    previews: int
    gzipped: int
    find_repeat: int


FULL = Plan(
    Layout(10, 2, 2, 50),
    Layout(250, 2, 2, 10, size=64),
    startups=5,
    settle=3.0,
    previews=300,
    gzipped=400,
    find_repeat=100,
)
QUICK = Plan(
    Layout(2, 2, 2, 10), Layout(10, 2, 2, 5, size=64), startups=2, settle=1.0, previews=20, gzipped=20, find_repeat=10
)


@dataclass
class Row:
    """One line of the table; ``higher_is_better`` orients the ratio so that > 1 always favours Isengard."""

    label: str
    higher_is_better: bool
    figures: dict[str, float | None] = field(default_factory=dict)
    decimals: int = 1

    def ratio(self) -> float | None:
        mine, theirs = self.figures.get("Isengard"), self.figures.get("Orthanc")
        if not mine or not theirs:
            return None
        return mine / theirs if self.higher_is_better else theirs / mine

    def cells(self) -> list[str]:
        figures = [self.figures.get(k) for k in KINDS]
        ratio = self.ratio()
        shown = ["n/a" if f is None else f"{f:,.{self.decimals}f}" for f in figures]
        return [self.label, *shown, "n/a" if ratio is None else f"{ratio:.2f}"]


class Suite:
    """The selected rows, in order; servers live only as long as the rows that need them."""

    def __init__(self, plan: Plan, groups: set[str], workdir: Path, cache: Path) -> None:
        self.plan = plan
        self.groups = groups
        self.workdir = workdir
        self.cache = cache
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.sections: list[str] = []  # tables of their own, after the main one

    def row(self, label: str, higher_is_better: bool, *, decimals: int = 1) -> Row:
        row = Row(label, higher_is_better, decimals=decimals)
        self.rows.append(row)
        return row

    @contextmanager
    def running(self, tag: str) -> Iterator[list[Server]]:
        """Both servers, fresh and side by side, removed afterwards."""
        with fresh([Server(kind, self.workdir / f"{tag}-{kind.lower()}") for kind in KINDS]) as servers:
            yield servers

    # -- rows --------------------------------------------------------------------------------------------------
    def startup(self) -> None:
        startup = self.row("Start-up, process start to first 200 on /system (s)", higher_is_better=False, decimals=2)
        idle = self.row("Idle RSS after start-up (MB)", higher_is_better=False)
        for kind in KINDS:
            seconds, rss = [], []
            for rep in range(self.plan.startups):
                log(f"start-up {kind} #{rep + 1}")
                server = Server(kind, self.workdir / f"startup-{kind.lower()}-{rep}")
                try:
                    seconds.append(server.start())
                    time.sleep(self.plan.settle)
                    rss.append(server.rss() / 1e6)
                finally:
                    server.remove()
            startup.figures[kind] = statistics.median(seconds)
            idle.figures[kind] = statistics.median(rss)

    def ingest_and_read(self, files: list[Path]) -> None:
        n = len(files)
        size = sum(f.stat().st_size for f in files) / n / 1e6
        if "ingest" in self.groups:
            row = self.row(f"REST ingest, {n:,} CT instances ({size:.2f} MB), 1 client (instances/s)", True)
            with self.running("ingest1") as servers:
                for server in servers:
                    row.figures[server.kind] = ingest(server.url, files, 1, f"ingest 1 client {server.kind}").per_second
        with self.running("ingest4") as servers:
            ids: dict[str, list[str]] = {}
            four = self.row(f"REST ingest, {n:,} CT instances, 4 concurrent clients (instances/s)", True)
            cpu = self.row("Server CPU time per instance during the 4-client ingest (ms)", False, decimals=2)
            loaded = self.row(f"Loaded RSS after the 4-client ingest of {n:,} instances (MB)", False)
            for server in servers:
                before = server.cpu()
                batch = ingest(server.url, files, 4, f"ingest 4 clients {server.kind}")
                cpu.figures[server.kind] = (server.cpu() - before) / n * 1000
                ids[server.kind] = batch.answers
                four.figures[server.kind] = batch.per_second
                loaded.figures[server.kind] = server.rss() / 1e6
            if "ingest" not in self.groups:
                for row in (four, cpu, loaded):
                    self.rows.remove(row)
            if ids["Isengard"] != ids["Orthanc"]:
                self.notes.append("Isengard and Orthanc gave different instance IDs for the same files.")
            if "file" in self.groups:
                self.files(servers, ids)
            if "preview" in self.groups:
                self.previews(servers, ids)

    def files(self, servers: list[Server], ids: dict[str, list[str]]) -> None:
        mbps = self.row("GET /instances/{id}/file, 4 clients (MB/s)", True)
        rps = self.row("GET /instances/{id}/file, 4 clients (requests/s)", True)
        count = min(self.plan.gzipped, len(ids["Isengard"]))
        gzipped = self.row(f"GET /instances/{{id}}/file, client accepts gzip, {count} files (MB/s)", True)
        for server in servers:
            paths = [f"/instances/{i}/file" for i in ids[server.kind]]
            batch = download(server.url, paths, 4, f"file {server.kind}")
            mbps.figures[server.kind] = batch.mb_per_second
            rps.figures[server.kind] = batch.per_second
            batch = download(server.url, paths[:count], 4, f"file (gzip) {server.kind}", gzip=True)
            gzipped.figures[server.kind] = batch.mb_per_second

    def previews(self, servers: list[Server], ids: dict[str, list[str]]) -> None:
        count = min(self.plan.previews, len(ids["Isengard"]))
        row = self.row(
            f"GET /instances/{{id}}/preview (512x512 CT to PNG), 4 clients, {count} images (requests/s)", True
        )
        for server in servers:
            paths = [f"/instances/{i}/preview" for i in ids[server.kind][:count]]
            if not route_exists(server.url, paths[0]):
                row.figures[server.kind] = None
                self.notes.append(f"{server.kind} has no /instances/{{id}}/preview yet: its figure is n/a.")
                continue
            batch = download(server.url, paths, 4, f"preview {server.kind}")
            row.figures[server.kind] = batch.per_second
            types = ", ".join(sorted(set(batch.answers)))
            self.notes.append(
                f"{server.kind}'s previews: {types}, {batch.nbytes / batch.count / 1e3:.0f} kB on average."
            )

    def find(self) -> None:
        layout = self.plan.find
        files = generate(layout, self.cache)
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        middle = pydicom.dcmread(files[len(files) // 2], stop_before_pixels=True)
        family = str(first.PatientName).split("^")[0]
        shapes = {
            "exact PatientID": {"PatientID": str(middle.PatientID)},
            f"wildcard PatientName {family[:3]}*": {"PatientName": f"{family[:3]}*"},
            "StudyDate range (1 year of 10)": {"StudyDate": "20180101-20181231"},
        }
        with self.running("find") as servers:
            load = self.row(
                f"REST ingest of the find index, {layout.count:,} small instances ({layout.size}x{layout.size}), "
                "4 clients (instances/s)",
                True,
            )
            cpu = self.row("Server CPU time per small instance during that ingest (ms)", False, decimals=2)
            for server in servers:
                before = server.cpu()
                load.figures[server.kind] = ingest(server.url, files, 4, f"find index {server.kind}").per_second
                cpu.figures[server.kind] = (server.cpu() - before) / len(files) * 1000
            for name, query in shapes.items():
                body = {"Level": "Study", "Query": query}
                median = self.row(f"/tools/find Study, {name}: median (ms)", False, decimals=2)
                p95 = self.row(f"/tools/find Study, {name}: p95 (ms)", False, decimals=2)
                counts = {}
                for server in servers:
                    timings, counts[server.kind] = find_latencies(
                        server.url, body, self.plan.find_repeat, f"find {name} {server.kind}"
                    )
                    median.figures[server.kind], p95.figures[server.kind] = (t * 1000 for t in median_p95(timings))
                if len(set(counts.values())) != 1:
                    self.notes.append(f"/tools/find {name}: different answer counts {counts}.")
                else:
                    median.label += f" [{counts['Isengard']} studies]"

    def run(self) -> None:
        if "startup" in self.groups:
            self.startup()
        if self.groups & {"ingest", "file", "preview"}:
            self.ingest_and_read(generate(self.plan.ct, self.cache))
        if "find" in self.groups:
            self.find()
        if "dicom" in self.groups:
            dicom.measure(self, quick=self.plan is QUICK)
        if "backends" in self.groups:
            table = index_backends.measure(self.workdir, self.cache, quick=self.plan is QUICK)
            self.sections.append("Isengard's index backends, SQLite against PostgreSQL:\n\n" + table)

    # -- report ------------------------------------------------------------------------------------------------
    def table(self, orthanc: str) -> str:
        head = ["Measure", "Isengard", orthanc, "Ratio (> 1: Isengard better)"]
        lines = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: |"]
        lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(suite: Suite, orthanc: str, started: float, load_before: str, *, label: str = "", details: str = "") -> str:
    """What a benchmark script prints: the run (when, how long, the machine, the versions, ``details``, the load),
    the suite's table, its notes and sections."""
    lines = [
        f"Run of {dt.datetime.now():%Y-%m-%d %H:%M}{label}, {(time.monotonic() - started) / 60:.1f} min: "
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, Isengard {isengard.__version__}, "
        f"{orthanc}; {details}load average {load_before} before, {load_average()} after. "
        f"Command: {' '.join(sys.argv)}",
        "",
        suite.table(orthanc),
    ]
    lines += [""] + [f"- {note}" for note in suite.notes] if suite.notes else []
    for section in suite.sections:
        lines += ["", section]
    return "\n".join(lines) + "\n"


def work_folder(parent: Path | None, name: str) -> Path:
    """A new folder for one run's servers and outputs: inside ``--workdir`` (made if missing), else a temp folder."""
    if parent:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"isengard-bench-{name}", dir=parent))


def compared(parser: argparse.ArgumentParser, no_orthanc: bool, plugin: Path, missing: str) -> tuple[str, ...]:
    """The servers a plugin's benchmark runs: Orthanc too unless ``--no-orthanc``, and then only with its plugin
    installed (else ``missing``, the error naming what to install)."""
    if no_orthanc:
        return ("Isengard",)
    if not plugin.exists():
        parser.error(missing)
    return ("Isengard", "Orthanc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few repetitions: a dry run")
    parser.add_argument("--only", action="append", choices=GROUPS, help="run only these rows (repeatable)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated DICOM files")
    parser.add_argument("--workdir", type=Path, help="where the servers keep their files (default: a temp folder)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    groups = set(args.only or [g for g in GROUPS if g != "backends"])  # backends: ~25 more minutes, opt-in
    workdir = work_folder(args.workdir, "")
    orthanc = orthanc_version()
    load_before, started = load_average(), time.monotonic()
    suite = Suite(plan, groups, workdir, args.cache)
    try:
        suite.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(suite, orthanc, started, load_before, label=" (--quick)" if args.quick else "")
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
