"""SQLite against PostgreSQL as Isengard's index (``run.py --only backends``, or this file alone): the same
server, storage and client code, only ``"PostgreSQL": {"EnableIndex": ...}`` differs.

For 10,000 and 100,000 small instances (32x32 pixels: the index is measured, not the disk), each backend gets an
empty server, a REST ingest with 4 concurrent clients, then /tools/find latencies on the full index: exact
match, wildcards (prefix and infix), a date range, at study level, and one exact match at instance level.

    .venv/bin/python benchmarks/index_backends.py            # 10k and 100k (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/index_backends.py --quick    # 500 and 2,000 instances: a dry run

PostgreSQL is the local server that the tests use (PGHOST/PGPORT/PGUSER, default 127.0.0.1:5432 as postgres),
with a scratch database per run, dropped afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from generate import DEFAULT_CACHE, Layout, generate
from servers import cpu_seconds
from workloads import find_latencies, ingest, median_p95

from isengard.testing import ServerProcess
from isengard_postgres.testing import create_database, drop_database, problem, section

BACKENDS = ("SQLite", "PostgreSQL")
FULL = (Layout(500, 2, 2, 5, size=32), Layout(2500, 2, 2, 10, size=32))
QUICK = (Layout(25, 2, 2, 5, size=32), Layout(100, 2, 2, 5, size=32))
CLIENTS = 4


@dataclass
class Row:
    label: str
    decimals: int = 1
    figures: dict[str, float] = field(default_factory=dict)

    def cells(self) -> list[str]:
        return [
            self.label,
            *(f"{self.figures[b]:,.{self.decimals}f}" if b in self.figures else "n/a" for b in BACKENDS),
        ]


def queries(files: list[Path]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name -> (level, query) for a spread of /tools/find shapes, with values taken from the data set."""
    middle = pydicom.dcmread(files[len(files) // 2], stop_before_pixels=True)
    family, given = str(middle.PatientName).split("^")[:2]
    return {
        "exact PatientID": ("Study", {"PatientID": str(middle.PatientID)}),
        f"wildcard PatientName {family[:3]}*": ("Study", {"PatientName": f"{family[:3]}*"}),
        f"wildcard PatientName *{family[2:5]}*^{given[0]}*": ("Study", {"PatientName": f"*{family[2:5]}*^{given[0]}*"}),
        "StudyDate range (1 year of 10)": ("Study", {"StudyDate": "20180101-20181231"}),
        "exact SOPInstanceUID (instance level)": ("Instance", {"SOPInstanceUID": str(middle.SOPInstanceUID)}),
    }


def start(backend: str, workdir: Path) -> tuple[ServerProcess, str | None]:
    config: dict[str, Any] = {"StableAge": 60}  # the kernel's default (ServerProcess uses 2 s for tests)
    database = None
    if backend == "PostgreSQL":
        database = create_database(f"isengard_bench_{uuid.uuid4().hex[:12]}")
        config["PostgreSQL"] = section(database, IndexConnectionsCount=10)
    return ServerProcess(workdir / backend.lower(), config).start(timeout=60), database


def measure_layout(layout: Layout, cache: Path, workdir: Path, repeat: int) -> list[Row]:
    files = generate(layout, cache)
    n = f"{layout.count:,}"
    load = Row(f"{n} instances: REST ingest, {CLIENTS} clients (instances/s)")
    cpu = Row(f"{n} instances: server CPU per instance during the ingest (ms)", 2)
    rows = [load, cpu]
    shapes = queries(files)
    finds = {name: (Row(f"{n} instances: /tools/find {level}, {name}: median (ms)", 2),
                    Row(f"{n} instances: /tools/find {level}, {name}: p95 (ms)", 2))
             for name, (level, _) in shapes.items()}  # fmt: skip
    counts: dict[str, dict[str, int]] = {}
    for backend in BACKENDS:
        server, database = start(backend, workdir)
        try:
            assert server.process is not None
            before = cpu_seconds(server.process.pid)
            load.figures[backend] = ingest(server.url, files, CLIENTS, f"ingest {n} {backend}").per_second
            cpu.figures[backend] = (cpu_seconds(server.process.pid) - before) / layout.count * 1000
            for name, (level, query) in shapes.items():
                body = {"Level": level, "Query": query}
                timings, count = find_latencies(server.url, body, repeat, f"find {name} {backend}")
                counts.setdefault(name, {})[backend] = count
                finds[name][0].figures[backend], finds[name][1].figures[backend] = (
                    t * 1000 for t in median_p95(timings)
                )
        finally:
            server.discard()
            if database:
                drop_database(database)
            shutil.rmtree(workdir / backend.lower(), ignore_errors=True)
    for name, (median, p95) in finds.items():
        answers = set(counts[name].values())
        median.label += f" [{counts[name]['SQLite']} answers]" if len(answers) == 1 else f" [differ: {counts[name]}]"
        rows += [median, p95]
    return rows


def measure(workdir: Path, cache: Path, *, quick: bool) -> str:
    """The Markdown table of every row, for ``run.py``'s report."""
    reason = problem()
    if reason is not None:
        return f"Index backends: not measured ({reason})."
    rows: list[Row] = []
    for layout in QUICK if quick else FULL:
        rows += measure_layout(layout, cache, workdir, 10 if quick else 50)
    lines = ["| Measure | " + " | ".join(BACKENDS) + " |", "| --- | ---: | ---: |"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few repetitions: a dry run")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated DICOM files")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="isengard-bench-backends-"))
    try:
        print(measure(workdir, args.cache, quick=args.quick))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
