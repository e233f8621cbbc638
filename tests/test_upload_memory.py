"""POST /instances never holds a whole upload in memory: a ZIP of a study is spooled to a temporary file and
read one entry at a time, so the server's peak memory grows by about the largest entry, not the archive; the
temporary file goes away with the request, even when the client leaves halfway."""

from __future__ import annotations

import gzip
import io
import os
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from isengard.testing import ServerProcess

#: Same width for every instance's SOPInstanceUID, so that one serialized file is patched rather than rewritten.
UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"
INSTANCES = 400


def instance(uid: str, rows: int, side: int = 512) -> bytes:
    """A 16-bit secondary capture of rows x side pixels (1 MB with the defaults), of one patient and series."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
    ds.PatientID, ds.PatientName, ds.Modality = "MEMORY", "Upload^Memory", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{UID_ROOT}.1", f"{UID_ROOT}.2"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(rows * side, dtype=np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def study_zip(path: Path) -> bytes:
    """A ZIP (stored, not deflated: quick to build) of INSTANCES distinct 1 MB instances; the first of them."""
    placeholder = f"{UID_ROOT}.{10**9}".encode()
    base = instance(placeholder.decode(), rows=1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for n in range(INSTANCES):
            archive.writestr(f"study/{n}.dcm", base.replace(placeholder, f"{UID_ROOT}.{10**9 + n}".encode()))
    return base


def peak_rss(server: ServerProcess) -> int:
    """The server process's peak resident memory so far (VmHWM), in bytes."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def spool_files(server: ServerProcess) -> list[str]:
    """The anonymous temporary files the server has open (what /proc shows of an unlinked file)."""
    assert server.process is not None
    folder, found = Path(f"/proc/{server.process.pid}/fd"), []
    for fd in os.listdir(folder):
        try:
            target = os.readlink(folder / fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)"):
            found.append(target)
    return found


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.05)


def test_upload_memory_stays_below_the_body_size(isengard: Callable[..., ServerProcess], tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    first = study_zip(archive)
    zip_size = archive.stat().st_size
    server = isengard()
    with server.client(timeout=120) as c:
        warm_up = instance(f"{UID_ROOT}.3", rows=16)  # loads the code an upload runs, before the baseline
        assert c.post("/instances", content=warm_up).json()["Status"] == "Success"
        before = peak_rss(server)
        with archive.open("rb") as body:
            results = c.post("/instances", content=body).json()
        growth = peak_rss(server) - before
        print(f"ZIP of {zip_size >> 20} MB: peak RSS grew by {growth >> 20} MB")
        assert [r["Status"] for r in results] == ["Success"] * INSTANCES
        assert c.get("/statistics").json()["CountInstances"] == INSTANCES + 1
        assert c.get(f"/instances/{results[0]['ID']}/file").content == first
        assert growth < zip_size / 3

        big = instance(f"{UID_ROOT}.4", rows=16 * 1024, side=2048)  # 64 MB
        result = c.post("/instances", content=big).json()
        assert result["Status"] == "Success"
        assert c.get(f"/instances/{result['ID']}/file").content == big

        packed = instance(f"{UID_ROOT}.5", rows=8 * 1024, side=1024)  # 16 MB
        body = gzip.compress(packed, compresslevel=1)
        result = c.post("/instances", content=body, headers={"Content-Encoding": "gzip"}).json()
        assert result["Status"] == "Success"
        assert c.get(f"/instances/{result['ID']}/file").content == packed
        assert c.get("/statistics").json()["CountInstances"] == INSTANCES + 3


def test_spool_released_when_the_client_leaves(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    assert spool_files(server) == []
    head = instance(f"{UID_ROOT}.6", rows=16)
    with socket.create_connection(("127.0.0.1", server.config["HttpPort"])) as sock:
        sock.sendall(f"POST /instances HTTP/1.1\r\nHost: test\r\nContent-Length: {400 << 20}\r\n\r\n".encode())
        sock.sendall(head + bytes((50 << 20) - len(head)))  # 50 MB of the announced 400 MB, then gone
        wait_until(lambda: spool_files(server))
    wait_until(lambda: not spool_files(server))
    assert server.get("/statistics").json()["CountInstances"] == 0


def test_multipart_parts_stored_one_by_one(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    first, second = (instance(f"{UID_ROOT}.{n}", rows=1024) for n in (7, 8))  # 1 MB: spooled to disk by werkzeug
    files = {"a": ("a.dcm", first), "b": ("b.txt", b"not DICOM"), "c": ("c.dcm", second)}
    results = server.post("/instances", files=files).json()
    assert [r["Status"] for r in results] == ["Success", "Failure", "Success"]
    assert results[1]["Filename"] == "part1"
    assert server.get(f"/instances/{results[2]['ID']}/file").content == second
    assert spool_files(server) == []
