"""SIGKILL in the middle of concurrent ingests: after a restart, the index and the storage agree.

The kernel writes a file before indexing it and forgets it in the index before removing it, so a crash may leave
files nobody refers to, never an index entry without its file. This test kills the server while eight clients
upload, then checks: every acknowledged instance survived, every indexed instance has its file with the recorded
MD5, the change log has one NewInstance per instance, and the start-up sweep removes unreferenced files once they
are older than OrphanedFilesGracePeriod (and not before).
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.uid import generate_uid

from isengard.testing import ServerProcess, dicom_files, dicom_variant, index_under_test, sample, storage_files

INSTANCES = 400
CLIENTS = 8
KILL_AFTER = 80  # acknowledged uploads before the kill


def make_instances() -> dict[str, bytes]:
    """SOPInstanceUID -> file: small real files spread over a few patients."""
    out = {}
    for i in range(INSTANCES):
        uid = generate_uid()
        out[uid] = dicom_variant(sample("Series", "Lena-5.dcm"), SOPInstanceUID=uid, PatientID=f"CRASH-{i % 7}")
    return out


def upload_until_killed(server: ServerProcess, files: list[bytes], acknowledged: dict[str, str]) -> None:
    """Upload from several clients until the server dies; record the ids of the answers that said Success."""
    lock = threading.Lock()
    queue = list(files)

    def worker() -> None:
        with server.client(timeout=10) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    data = queue.pop()
                try:
                    r = client.post("/instances", content=data)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200 and r.json()["Status"] == "Success":
                    with lock:
                        acknowledged[r.json()["ID"]] = hashlib.md5(data).hexdigest()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()
    for t in threads:
        t.join(30)
    assert len(acknowledged) >= KILL_AFTER, "the uploads were too slow to kill the server in their middle"
    assert len(acknowledged) < INSTANCES, "every upload finished before the kill: nothing was interrupted"


def plant(server: ServerProcess, name: str, age: float) -> Path:
    """A file where the storage would keep one, last modified ``age`` seconds ago."""
    root = Path(server.config["StorageDirectory"])
    path = root / name[:2] / name[2:4] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left by a crash")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def check_consistency(server: ServerProcess, sent: dict[str, bytes], acknowledged: dict[str, str]) -> set[str]:
    """Every indexed instance readable with its recorded MD5; acknowledged ones all there. Returns indexed uuids."""
    with server.client() as client:
        files = dicom_files(client)
        assert set(acknowledged) <= set(files), "an acknowledged instance was lost"
        for instance, info in files.items():
            data = client.get(f"/instances/{instance}/file")
            assert data.status_code == 200, (instance, data.text)
            md5 = hashlib.md5(data.content).hexdigest()
            assert md5 == info["UncompressedMD5"] == client.get(f"/instances/{instance}/attachments/dicom/md5").text
            uid = pydicom.dcmread(io.BytesIO(data.content)).SOPInstanceUID
            assert data.content == sent[uid]
            assert acknowledged.get(instance, md5) == md5
            verify = client.post(f"/instances/{instance}/attachments/dicom/verify-md5")
            assert verify.status_code == 200, verify.text
        stats = client.get("/statistics").json()
        assert stats["CountInstances"] == len(files)
        assert int(stats["TotalDiskSize"]) == sum(i["CompressedSize"] for i in files.values())
        news: list[str] = []
        since = 0
        while True:
            page = client.get("/changes", params={"since": since, "limit": 1000}).json()
            news += [c["ID"] for c in page["Changes"] if c["ChangeType"] == "NewInstance"]
            since = page["Last"]
            if page["Done"]:
                break
        assert sorted(news) == sorted(files), "the change log disagrees with the index"
    return {info["Uuid"] for info in files.values()}


def integrity(index_dir: Path) -> str:
    [path] = [p for p in index_dir.iterdir() if p.suffix == ".sqlite"]
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_kill_during_concurrent_ingest_leaves_a_consistent_store(isengard: Any) -> None:
    server: ServerProcess = isengard({"StableAge": 3600})
    sent = make_instances()
    acknowledged: dict[str, str] = {}
    upload_until_killed(server, list(sent.values()), acknowledged)

    old_orphan = plant(server, str(uuidlib.uuid4()), age=3600)
    young_orphan = plant(server, str(uuidlib.uuid4()), age=0)
    old_temp = plant(server, f"{uuidlib.uuid4()}.tmp", age=3600)
    stranger = plant(server, "not-a-storage-file.txt", age=3600)  # not the storage's: left alone

    server.start()  # the same index and storage, after kill -9: the index must open (WAL recovery)
    assert wait_for(lambda: not old_orphan.exists() and not old_temp.exists()), "the sweep left old orphans"
    indexed = check_consistency(server, sent, acknowledged)
    assert young_orphan.exists(), "a file younger than the grace period may belong to an ingest in flight"
    assert stranger.exists()
    crash_orphans = storage_files(server) - indexed - {young_orphan.name, stranger.name}
    # only what the crash itself left, if anything: whole files not indexed yet, and writes cut short
    assert all(len(name) == 36 or (len(name) == 40 and name.endswith(".tmp")) for name in crash_orphans)

    server.stop()
    server.config["OrphanedFilesGracePeriod"] = 0
    server.start()
    assert wait_for(lambda: storage_files(server) == indexed | {stranger.name}), storage_files(server) ^ indexed
    assert check_consistency(server, sent, acknowledged) == indexed
    with server.client() as client:  # and it still ingests
        more = dicom_variant(sample("Series", "Lena-5.dcm"), SOPInstanceUID=generate_uid())
        assert client.post("/instances", content=more).json()["Status"] == "Success"
    server.stop()
    if index_under_test() == "sqlite":  # PostgreSQL recovers by itself; its plugin's tests cover lost connections
        assert integrity(Path(server.config["IndexDirectory"])) == "ok"
