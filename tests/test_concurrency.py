"""Many clients at once: no instance lost or duplicated, one NewInstance per instance, no orphan file.

The kernel checks "already stored?" before writing and the index decides again inside its transaction, so two
clients racing with the same instance must end with one record, one file and one change, whatever the timing.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydicom.uid import generate_uid

from isengard.testing import ServerProcess, dicom_files, dicom_variant, sample, storage_files

CLIENTS = 12


def all_changes(client: httpx.Client) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    since = 0
    while True:
        page = client.get("/changes", params={"since": since, "limit": 1000}).json()
        changes += page["Changes"]
        since = page["Last"]
        if page["Done"]:
            return changes


def together(server: ServerProcess, bodies: list[bytes]) -> list[httpx.Response]:
    """POST every body to /instances from CLIENTS clients released at the same instant."""
    barrier = threading.Barrier(min(CLIENTS, len(bodies)))
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(body: bytes) -> httpx.Response:
        if not hasattr(local, "client"):
            local.client = server.client()
            clients.append(local.client)
            barrier.wait()
        return local.client.post("/instances", content=body)

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(send, bodies))
    for client in clients:
        client.close()
    return responses


def assert_store_matches_index(server: ServerProcess, client: httpx.Client) -> dict[str, dict[str, Any]]:
    files = dicom_files(client)
    assert storage_files(server) == {info["Uuid"] for info in files.values()}, "orphan or missing files"
    return files


def test_same_instance_from_many_clients(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    body = sample("Brainix", "Flair", "IM-0001-0001.dcm").read_bytes()
    responses = together(server, [body] * CLIENTS * 2)
    assert {r.status_code for r in responses} == {200}
    statuses = Counter(r.json()["Status"] for r in responses)
    assert statuses == {"Success": 1, "AlreadyStored": CLIENTS * 2 - 1}
    assert len({r.json()["ID"] for r in responses}) == 1
    with server.client() as client:
        stats = client.get("/statistics").json()
        assert (stats["CountPatients"], stats["CountStudies"], stats["CountSeries"], stats["CountInstances"]) == (
            1,
            1,
            1,
            1,
        )
        kinds = Counter(c["ChangeType"] for c in all_changes(client))
        assert kinds == {"NewInstance": 1, "NewSeries": 1, "NewStudy": 1, "NewPatient": 1}
        [info] = assert_store_matches_index(server, client).values()
        assert info["UncompressedMD5"] == hashlib.md5(body).hexdigest()


def test_different_instances_each_sent_twice(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    template = sample("Series", "Lena-5.dcm")
    bodies = {
        uid: dicom_variant(template, SOPInstanceUID=uid, PatientID=f"RACE-{i % 6}", StudyInstanceUID=f"1.2.3.{i % 6}")
        for i, uid in enumerate(generate_uid() for _ in range(150))
    }
    sends = [*bodies.values(), *bodies.values()]
    random.Random(7).shuffle(sends)
    responses = together(server, sends)
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200][:3]
    successes = Counter(r.json()["ID"] for r in responses if r.json()["Status"] == "Success")
    assert len(successes) == len(bodies) and set(successes.values()) == {1}, "an instance was stored twice"
    with server.client() as client:
        stats = client.get("/statistics").json()
        assert (stats["CountPatients"], stats["CountStudies"], stats["CountInstances"]) == (6, 6, len(bodies))
        changes = all_changes(client)
        new_instances = Counter(c["ID"] for c in changes if c["ChangeType"] == "NewInstance")
        assert new_instances == successes
        assert Counter(c["ChangeType"] for c in changes if c["ChangeType"] != "NewInstance") == {
            "NewPatient": 6,
            "NewStudy": 6,
            "NewSeries": 6,
        }
        files = assert_store_matches_index(server, client)
        assert sorted(i["UncompressedMD5"] for i in files.values()) == sorted(
            hashlib.md5(b).hexdigest() for b in bodies.values()
        )


def test_concurrent_overwrites_keep_one_file(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"OverwriteInstances": True})
    template = sample("Series", "Lena-5.dcm")
    uid = generate_uid()
    variants = [dicom_variant(template, SOPInstanceUID=uid, ImageComments=f"version {i}") for i in range(CLIENTS * 2)]
    responses = together(server, variants)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["Status"] for r in responses} == {"Success"}
    with server.client() as client:
        [(instance, info)] = assert_store_matches_index(server, client).items()
        stored = client.get(f"/instances/{instance}/file").content
        assert stored in variants
        assert hashlib.md5(stored).hexdigest() == info["UncompressedMD5"]
        assert client.get("/statistics").json()["CountInstances"] == 1

        # sequentially: the replaced file goes, the new one is what the server returns
        last = dicom_variant(template, SOPInstanceUID=uid, ImageComments="the last word")
        assert client.post("/instances", content=last).json()["Status"] == "Success"
        [(same, newer)] = assert_store_matches_index(server, client).items()
        assert same == instance and newer["Uuid"] != info["Uuid"]
        assert client.get(f"/instances/{instance}/file").content == last
        assert client.get(f"/instances/{instance}/simplified-tags").json()["ImageComments"] == "the last word"


def test_uploads_and_deletions_interleaved(isengard: Callable[..., ServerProcess]) -> None:
    """Deleting patients while others upload into them: whatever survives is whole, nothing leaks."""
    server = isengard()
    template = sample("Series", "Lena-5.dcm")
    bodies = [dicom_variant(template, SOPInstanceUID=generate_uid(), PatientID=f"CHURN-{i % 3}") for i in range(90)]
    stop = threading.Event()

    def churn() -> int:
        deleted = 0
        with server.client() as client:
            while not stop.is_set():
                for patient in client.get("/patients").json():
                    deleted += client.delete(f"/patients/{patient}").status_code == 200
        return deleted

    with ThreadPoolExecutor(1) as pool:
        deleter = pool.submit(churn)
        responses = together(server, bodies)
        stop.set()
        assert deleter.result() > 0
    assert {r.status_code for r in responses} == {200}
    with server.client() as client:
        files = assert_store_matches_index(server, client)
        for instance in files:
            assert client.post(f"/instances/{instance}/attachments/dicom/verify-md5").status_code == 200
        stats = client.get("/statistics").json()
        assert stats["CountInstances"] == len(files)
        for patient in client.get("/patients").json():
            assert client.get(f"/patients/{patient}/instances").json(), "a patient left without instances"
