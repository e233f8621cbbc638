"""The DICOM rows of the side-by-side benchmark (``run.py --only dicom``): the network services, not the REST API.

- C-STORE throughput: dcmtk's ``storescu`` sends the generated CT files to an empty server over one association,
  then (to another empty server) over four associations in parallel, four processes each sending a quarter.
- C-FIND latency at study level on the 10,000-instance index (loaded with ``storescu`` too): pynetdicom queries,
  timed one by one, over one association and with a new association per query (as ``findscu`` does).
- C-MOVE of one 500-instance study to dcmtk's ``storescp`` (receiving without writing: ``--ignore``).

Each server knows the benchmark's AETs, as a PACS would have to: the calling SCU (allowed to query and move) and
the move destination. dcmtk's tools and pynetdicom are the same for both servers.

Nagle's algorithm: Debian's DCMTK leaves it on unless $TCP_NODELAY is 1 (upstream DCMTK turns it off), and a
DIMSE exchange between two ends that leave it on stalls about 40 ms on the peer's delayed ACK. Isengard turns it
off on its own sockets; the rows run with TCP_NODELAY=1 in the environment of dcmtk's tools and of Orthanc, so
that every end does the same, and one more row shows a single-association C-STORE with Debian's default.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import pydicom
from generate import Layout, generate
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FindModel
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MoveModel
from servers import Server, fresh
from tqdm import tqdm
from workloads import median_p95

from isengard.testing import free_port

KINDS = ("Isengard", "Orthanc")
SCU_AET = "BENCHSCU"
DEST_AET = "BENCHDEST"
#: One study of 2 series x 250 CT images for the C-MOVE row; a small one for --quick.
MOVE_STUDY = Layout(1, 1, 2, 250)
MOVE_STUDY_QUICK = Layout(1, 1, 2, 10)
#: What a viewer's study list asks for, computed keys included.
STUDY_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


class Suite(Protocol):
    """What these rows use of run.py's Suite."""

    plan: Any
    workdir: Path
    cache: Path
    notes: list[str]

    def row(self, label: str, higher_is_better: bool, *, decimals: int = 1) -> Any: ...


class DicomServer(Server):
    """A benchmark server (same defaults as the others) whose DicomModalities hold the benchmark's AETs."""

    def __init__(self, kind: str, workdir: Path, dest_port: int) -> None:
        super().__init__(kind, workdir)
        self.aet = kind.upper()
        self.dest_port = dest_port
        self.dicom_port = 0

    def _command(self) -> list[str]:
        command = super()._command()
        path = self.workdir / "config.json"
        config = json.loads(path.read_text())
        config["DicomAet"] = self.aet
        config["DicomModalities"] = {
            "bench": [SCU_AET, "127.0.0.1", 104],
            "dest": [DEST_AET, "127.0.0.1", self.dest_port],
        }
        path.write_text(json.dumps(config, indent=2))
        self.dicom_port = int(config["DicomPort"])
        return command

    def count_instances(self) -> int:
        return int(httpx.get(self.url + "/statistics", timeout=60).json()["CountInstances"])


@contextmanager
def tcp_nodelay(value: str | None) -> Iterator[None]:
    """$TCP_NODELAY for the processes started meanwhile (dcmtk's tools, Orthanc): "1" turns Nagle off."""
    saved = os.environ.pop("TCP_NODELAY", None)
    if value is not None:
        os.environ["TCP_NODELAY"] = value
    try:
        yield
    finally:
        os.environ.pop("TCP_NODELAY", None)
        if saved is not None:
            os.environ["TCP_NODELAY"] = saved


def no_delay(event: evt.Event) -> None:
    """The benchmark's own pynetdicom client leaves no PDU waiting on Nagle either."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextmanager
def running(suite: Suite, tag: str, dest_port: int = 104) -> Iterator[list[DicomServer]]:
    """Both servers, fresh and side by side, removed afterwards."""
    with fresh([DicomServer(kind, suite.workdir / f"{tag}-{kind.lower()}", dest_port) for kind in KINDS]) as servers:
        yield servers


@contextmanager
def storescp(workdir: Path) -> Iterator[int]:
    """dcmtk's storescp as the move destination, receiving every instance without writing it; its port."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "storescp.log", "wb") as log:
        process = subprocess.Popen(["storescp", "--ignore", "-aet", DEST_AET, str(port)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while subprocess.run(["echoscu", "-aec", DEST_AET, "127.0.0.1", str(port)], capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError("storescp did not start")
                time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(10)


def storescu(server: DicomServer, files: list[Path], associations: int) -> float:
    """Seconds for ``associations`` storescu processes, each sending a contiguous share of ``files`` over one
    association (as separate senders would: different patients), until the last one is done."""
    n = len(files)
    shares = [files[i * n // associations : (i + 1) * n // associations] for i in range(associations)]
    command = ["storescu", "-aet", SCU_AET, "-aec", server.aet, "127.0.0.1", str(server.dicom_port)]
    with open(server.workdir / "storescu.log", "ab") as log:
        started = time.perf_counter()
        processes = [subprocess.Popen([*command, *map(str, share)], stdout=log, stderr=log) for share in shares]
        codes = [p.wait() for p in processes]
        seconds = time.perf_counter() - started
    stored = server.count_instances()
    if any(codes) or stored != n:
        raise RuntimeError(f"storescu into {server.kind}: exit codes {codes}, {stored} of {n} instances stored")
    return seconds


def associate(server: DicomServer, model: str) -> Association:
    ae = AE(ae_title=SCU_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(model)
    assoc = ae.associate(
        "127.0.0.1", server.dicom_port, ae_title=server.aet, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)]
    )
    if not assoc.is_established:
        raise RuntimeError(f"{server.kind} refused the association from {SCU_AET}")
    return assoc


def study_query(**values: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_KEYS:
        setattr(ds, keyword, values.get(keyword, ""))
    return ds


def c_find(assoc: Association, query: Dataset) -> int:
    """The number of answers of one C-FIND; fails unless it ends in success."""
    answers = 0
    for status, identifier in assoc.send_c_find(query, FindModel):
        code = int(status.get("Status", -1)) if status else -1
        if code in (0xFF00, 0xFF01) and identifier is not None:
            answers += 1
        elif code != 0x0000:
            raise RuntimeError(f"C-FIND failed with status 0x{code:04X}")
    return answers


def find_latencies(
    server: DicomServer, query: Dataset, repeat: int, desc: str, *, fresh: bool
) -> tuple[list[float], int]:
    """Seconds of each of ``repeat`` sequential C-FINDs (after a warm-up) and the number of answers; ``fresh``:
    each query on a new association, its set-up and release included in the time."""
    assoc = associate(server, FindModel)
    try:
        count = c_find(assoc, query)
        timings = []
        for _ in tqdm(range(repeat), desc=desc, unit="query", leave=False):
            started = time.perf_counter()
            if fresh:
                one = associate(server, FindModel)
                c_find(one, query)
                one.release()
            else:
                c_find(assoc, query)
            timings.append(time.perf_counter() - started)
    finally:
        assoc.release()
    return timings, count


def c_move(server: DicomServer, study_uid: str) -> tuple[float, int]:
    """Seconds of one C-MOVE of a study to the destination, to its final response, and the instances it sent."""
    assoc = associate(server, MoveModel)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        started = time.perf_counter()
        responses = list(assoc.send_c_move(query, DEST_AET, MoveModel))
        seconds = time.perf_counter() - started
    finally:
        assoc.release()
    final = responses[-1][0]
    if int(final.Status) != 0x0000:
        raise RuntimeError(f"C-MOVE from {server.kind} ended with status 0x{int(final.Status):04X}")
    return seconds, int(final.get("NumberOfCompletedSuboperations", 0))


# -- rows -------------------------------------------------------------------------------------------------------
def measure(suite: Suite, *, quick: bool) -> None:
    ct = generate(suite.plan.ct, suite.cache)
    with tcp_nodelay("1"):
        store_rows(suite, ct)
        find_rows(suite, generate(suite.plan.find, suite.cache))
        move_rows(suite, generate(MOVE_STUDY_QUICK if quick else MOVE_STUDY, suite.cache))
    with tcp_nodelay(None):
        nagle_row(suite, ct)


def store_rows(suite: Suite, files: list[Path]) -> None:
    n = len(files)
    size = sum(f.stat().st_size for f in files) / n / 1e6
    one = suite.row(f"C-STORE (storescu), {n:,} CT instances ({size:.2f} MB), 1 association (instances/s)", True)
    four = suite.row(f"C-STORE (storescu), {n:,} CT instances, 4 associations in parallel (instances/s)", True)
    cpu = suite.row("Server CPU time per instance during the 4-association C-STORE (ms)", False, decimals=2)
    with running(suite, "cstore1") as servers:
        for server in servers:
            log(f"C-STORE 1 association {server.kind}")
            one.figures[server.kind] = n / storescu(server, files, 1)
    with running(suite, "cstore4") as servers:
        for server in servers:
            log(f"C-STORE 4 associations {server.kind}")
            before = server.cpu()
            four.figures[server.kind] = n / storescu(server, files, 4)
            cpu.figures[server.kind] = (server.cpu() - before) / n * 1000


def nagle_row(suite: Suite, files: list[Path]) -> None:
    """The first quarter of the files only: at 40 ms per instance, all of them would take minutes."""
    files = files[: max(1, len(files) // 4)]
    n = len(files)
    row = suite.row(f"C-STORE (storescu), {n:,} CT instances, 1 association, no $TCP_NODELAY (instances/s)", True)
    with running(suite, "cstore-nagle") as servers:
        for server in servers:
            log(f"C-STORE 1 association, Nagle on in DCMTK, {server.kind}")
            row.figures[server.kind] = n / storescu(server, files, 1)


def find_rows(suite: Suite, files: list[Path]) -> None:
    n = len(files)
    middle = pydicom.dcmread(files[n // 2], stop_before_pixels=True)
    by_patient = ("exact PatientID", study_query(PatientID=str(middle.PatientID)))
    by_date = ("StudyDate range (1 year of 10)", study_query(StudyDate="20180101-20181231"))
    shapes = [(*by_patient, False), (*by_date, False), (*by_patient, True)]
    repeat = suite.plan.find_repeat
    with running(suite, "cfind") as servers:
        load = suite.row(f"C-STORE of the find index, {n:,} small instances, 4 associations (instances/s)", True)
        for server in servers:
            log(f"C-STORE find index {server.kind}")
            load.figures[server.kind] = n / storescu(server, files, 4)
        for name, query, fresh in shapes:
            how = "a new association per query" if fresh else "one association"
            median = suite.row(f"C-FIND Study, {name}, {how}: median (ms)", False, decimals=2)
            p95 = suite.row(f"C-FIND Study, {name}, {how}: p95 (ms)", False, decimals=2)
            counts = {}
            for server in servers:
                desc = f"C-FIND {name} ({how}) {server.kind}"
                timings, counts[server.kind] = find_latencies(server, query, repeat, desc, fresh=fresh)
                median.figures[server.kind], p95.figures[server.kind] = (t * 1000 for t in median_p95(timings))
            if len(set(counts.values())) != 1:
                suite.notes.append(f"C-FIND {name}: different answer counts {counts}.")
            else:
                median.label += f" [{counts['Isengard']} studies]"


def move_rows(suite: Suite, files: list[Path]) -> None:
    n = len(files)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    size = sum(f.stat().st_size for f in files) / n / 1e6
    rate = suite.row(f"C-MOVE of a {n}-instance study ({size:.2f} MB each) to dcmtk's storescp (instances/s)", True)
    cpu = suite.row("Server CPU time per instance during that C-MOVE (ms)", False, decimals=2)
    with storescp(suite.workdir / "storescp") as dest_port, running(suite, "cmove", dest_port) as servers:
        for server in servers:
            log(f"C-MOVE {server.kind}")
            storescu(server, files, 1)
            before = server.cpu()
            seconds, sent = c_move(server, study_uid)
            if sent != n:
                raise RuntimeError(f"C-MOVE from {server.kind}: {sent} of {n} instances sent")
            rate.figures[server.kind] = n / seconds
            cpu.figures[server.kind] = (server.cpu() - before) / n * 1000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
