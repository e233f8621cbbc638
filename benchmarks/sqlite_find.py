"""The SQL of /tools/find on a large SQLite index, without HTTP: how the query plans scale.

Builds (once, cached) an index of 2,500 patients x 2 studies x 2 series x 10 instances (117,500 resources)
by inserting rows directly, then times each query shape built by isengard_sqlite.find.build_find and prints
its plan. Usage: .venv/bin/python benchmarks/sqlite_find.py [--rebuild] [--plans]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from isengard.model import ResourceType
from isengard.query import FindQuery, TagConstraint
from isengard_sqlite.find import build_find
from isengard_sqlite.index import SqliteIndex
from isengard_sqlite.schema import configure_connection

CACHE = Path.home() / ".cache" / "isengard-benchmarks" / "sqlite-find-117500.sqlite"
NAMES = ["SMITH", "BROWN", "LEWIS", "JONES", "MILLER", "DAVIS", "GARCIA", "WILSON"]


def build(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)

    async def create() -> None:
        index = SqliteIndex(path)
        await index.start()
        await index.stop()

    asyncio.run(create())
    rng = random.Random(1)
    resources: list[tuple[int, int, str, int | None]] = []
    tags: list[tuple[int, str, str, str]] = []
    rid = 0

    def add(level: int, public: str, parent: int | None, values: dict[str, str]) -> int:
        nonlocal rid
        rid += 1
        resources.append((rid, level, public, parent))
        tags.extend((rid, k, v, v.upper()) for k, v in values.items())
        return rid

    for p in tqdm(range(2500), desc="building the index", unit="patient"):
        name = f"{rng.choice(NAMES)}^{p}"
        patient = add(1, f"p{p}", None, {"PatientID": f"PID{p}", "PatientName": name})
        for s in range(2):
            date = f"20{10 + rng.randint(0, 9)}0{rng.randint(1, 9)}15"
            study = add(
                2,
                f"p{p}s{s}",
                patient,
                {
                    "StudyInstanceUID": f"1.2.{p}.{s}",
                    "StudyDate": date,
                    "PatientID": f"PID{p}",
                    "PatientName": name,
                },
            )
            for e in range(2):
                series = add(3, f"p{p}s{s}e{e}", study, {"SeriesInstanceUID": f"1.2.{p}.{s}.{e}", "Modality": "CT"})
                for i in range(10):
                    add(
                        4,
                        f"p{p}s{s}e{e}i{i}",
                        series,
                        {"SOPInstanceUID": f"1.2.{p}.{s}.{e}.{i}", "InstanceNumber": str(i)},
                    )
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO resources (id, level, public_id, parent_id) VALUES (?, ?, ?, ?)", resources)
        db.executemany("INSERT INTO main_tags (resource_id, tag, value, norm) VALUES (?, ?, ?, ?)", tags)


def constraint(keyword: str, level: ResourceType, value: str, vr: str, sensitive: bool = True) -> TagConstraint:
    c = TagConstraint.parse(keyword, level, value, vr=vr, case_sensitive=sensitive)
    assert c is not None
    return c


QUERIES = {
    "Instance, exact SOPInstanceUID": FindQuery(
        ResourceType.INSTANCE, [constraint("SOPInstanceUID", ResourceType.INSTANCE, "1.2.1234.1.1.5", "UI")]
    ),
    "Study, exact PatientID": FindQuery(
        ResourceType.STUDY, [constraint("PatientID", ResourceType.PATIENT, "PID1234", "LO")]
    ),
    "Study, PatientName BRO*": FindQuery(
        ResourceType.STUDY, [constraint("PatientName", ResourceType.PATIENT, "BRO*", "PN", False)]
    ),
    "Study, StudyDate range (1 year of 10)": FindQuery(
        ResourceType.STUDY, [constraint("StudyDate", ResourceType.STUDY, "20150101-20151231", "DA")]
    ),
    "Series, PatientID and Modality": FindQuery(
        ResourceType.SERIES,
        [
            constraint("PatientID", ResourceType.PATIENT, "PID77", "LO"),
            constraint("Modality", ResourceType.SERIES, "CT", "CS"),
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="build the index again")
    parser.add_argument("--plans", action="store_true", help="print SQLite's query plans")
    args = parser.parse_args()
    if args.rebuild or not CACHE.exists():
        build(CACHE)
    db = sqlite3.connect(CACHE)
    configure_connection(db)
    print("| Query | Answers | Median (ms) |\n| --- | ---: | ---: |")
    for name, query in QUERIES.items():
        sql, params = build_find(query)
        times, rows = [], []
        for _ in range(20):
            t = time.perf_counter()
            rows = db.execute(sql, params).fetchall()
            times.append((time.perf_counter() - t) * 1000)
        print(f"| {name} | {len(rows)} | {statistics.median(times):.3f} |")
        if args.plans:
            print("  plan:", "; ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)))


if __name__ == "__main__":
    main()
