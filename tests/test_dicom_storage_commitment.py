"""Storage commitment (Push Model) between real peers: two Isengard servers, a scratch Orthanc, and pynetdicom.

"A" asks, "B" (or Orthanc) answers on an association of its own; the REST side reads the verdict. A holds three
Brainix images; B and Orthanc hold the first two only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

from isengard.testing import ServerProcess, assert_orthanc_error, free_port, instance_id, reference_orthanc, sample

FLAIR = sorted(sample("Brainix", "Flair").glob("*.dcm"))[:3]
MR, CT = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2"
NO_SUCH_OBJECT, CLASS_INSTANCE_CONFLICT = 0x0112, 0x0119


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A knows B, and Orthanc on a DICOM port chosen now, where the ``orthanc`` fixture starts it."""
    a_port, b_port = free_port(), free_port()
    modalities = {"b": ["ISB", "127.0.0.1", b_port], "orthanc": ["ORTHC", "127.0.0.1", free_port()]}
    a = ServerProcess(
        tmp_path_factory.mktemp("a"), {"DicomAet": "ISA", "DicomPort": a_port, "DicomModalities": modalities}
    )
    b = ServerProcess(
        tmp_path_factory.mktemp("b"),
        {"DicomAet": "ISB", "DicomPort": b_port, "DicomModalities": {"a": ["ISA", "127.0.0.1", a_port]}},
    )
    a.start()
    b.start()
    a.upload(*FLAIR)
    b.upload(*FLAIR[:2])
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, peers: tuple[ServerProcess, ServerProcess]
) -> Iterator[httpx.Client]:
    """Debian's Orthanc where A expects it, knowing A as a modality and holding the first two images."""
    a = peers[0]
    config = {
        "Name": "scratch",
        "DicomAet": "ORTHC",
        "DicomPort": a.config["DicomModalities"]["orthanc"][2],
        "DicomModalities": {"a": ["ISA", "127.0.0.1", a.config["DicomPort"]]},
    }
    with (
        reference_orthanc(tmp_path_factory.mktemp("orthanc"), config) as o,
        httpx.Client(base_url=o.url, timeout=30) as client,
    ):
        for path in FLAIR[:2]:
            assert client.post("/instances", content=path.read_bytes()).status_code == 200
        yield client


def verdict(client: httpx.Client | ServerProcess, transaction_uid: str) -> dict[str, Any]:
    """The report once the peer's N-EVENT-REPORT came (it is Pending until then)."""
    deadline = time.monotonic() + 15
    while True:
        report = client.get(f"/storage-commitment/{transaction_uid}").json()
        if report["Status"] != "Pending":
            return report
        assert time.monotonic() < deadline, "no N-EVENT-REPORT came"
        time.sleep(0.05)


def commit(server: ServerProcess, modality: str, body: Any) -> str:
    r = server.post(f"/modalities/{modality}/storage-commitment", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["Path"] == f"/storage-commitment/{answer['ID']}"
    assert answer["ID"].startswith("2.25.")
    return str(answer["ID"])


def test_a_peer_reports_what_it_stores(peers: tuple[ServerProcess, ServerProcess]) -> None:
    a, _ = peers
    transaction = commit(a, "b", {"Resources": [instance_id(p) for p in FLAIR]})
    report = verdict(a, transaction)
    assert report["RemoteAET"] == "ISB"
    assert report["Status"] == "Failure"
    assert report["Success"] == [{"SOPClassUID": MR, "SOPInstanceUID": uid(p)} for p in FLAIR[:2]]
    [failure] = report["Failures"]
    assert failure["SOPInstanceUID"] == uid(FLAIR[2]) and failure["FailureReason"] == NO_SUCH_OBJECT
    assert "not available" in failure["Description"]
    error = assert_orthanc_error(a.post(f"/storage-commitment/{transaction}/remove"), 500, "Bad sequence of calls")
    assert transaction in error["Details"]
    assert a.get(f"/instances/{instance_id(FLAIR[0])}").status_code == 200  # nothing removed


def test_dicom_instances_and_a_class_conflict(peers: tuple[ServerProcess, ServerProcess]) -> None:
    a, _ = peers
    body = {"DicomInstances": [{"SOPClassUID": MR, "SOPInstanceUID": uid(FLAIR[0])}, [CT, uid(FLAIR[1])]]}
    report = verdict(a, commit(a, "b", body))
    assert report["Success"] == [{"SOPClassUID": MR, "SOPInstanceUID": uid(FLAIR[0])}]
    assert [(f["SOPClassUID"], f["FailureReason"]) for f in report["Failures"]] == [(CT, CLASS_INSTANCE_CONFLICT)]


def test_store_then_commit_then_remove(peers: tuple[ServerProcess, ServerProcess]) -> None:
    """/store with StorageCommitment chains the request; once B committed, A may delete its copy."""
    a, b = peers
    body = {"Resources": [instance_id(FLAIR[2])], "StorageCommitment": True}
    r = a.post("/modalities/b/store", json=body)
    assert r.status_code == 200, r.text
    transaction = r.json()["StorageCommitmentTransactionUID"]
    report = verdict(a, transaction)
    assert (report["Status"], report["Failures"]) == ("Success", [])
    assert report["Success"] == [{"SOPClassUID": MR, "SOPInstanceUID": uid(FLAIR[2])}]
    r = a.post(f"/storage-commitment/{transaction}/remove")
    assert (r.status_code, r.json()) == (200, {})
    assert a.get(f"/instances/{instance_id(FLAIR[2])}").status_code == 404
    assert a.get(f"/instances/{instance_id(FLAIR[1])}").status_code == 200
    assert b.get(f"/instances/{instance_id(FLAIR[2])}").status_code == 200
    a.upload(FLAIR[2])


def test_with_orthanc_both_ways(peers: tuple[ServerProcess, ServerProcess], orthanc: httpx.Client) -> None:
    a, _ = peers
    report = verdict(a, commit(a, "orthanc", {"Resources": [instance_id(p) for p in FLAIR]}))
    assert (report["RemoteAET"], report["Status"]) == ("ORTHC", "Failure")
    assert [s["SOPInstanceUID"] for s in report["Success"]] == [uid(p) for p in FLAIR[:2]]
    assert [f["FailureReason"] for f in report["Failures"]] == [NO_SUCH_OBJECT]
    # Orthanc asks A, which answers on an association of its own
    body = {"Resources": [instance_id(p) for p in FLAIR[:2]], "DicomInstances": [[MR, "1.2.3.4"]]}
    r = orthanc.post("/modalities/a/storage-commitment", json=body)
    assert r.status_code == 200, r.text
    report = verdict(orthanc, r.json()["ID"])
    assert (report["RemoteAET"], report["Status"]) == ("ISA", "Failure")
    assert [s["SOPInstanceUID"] for s in report["Success"]] == [uid(p) for p in FLAIR[:2]]
    assert [(f["SOPInstanceUID"], f["FailureReason"]) for f in report["Failures"]] == [("1.2.3.4", NO_SUCH_OBJECT)]


def test_bad_requests(peers: tuple[ServerProcess, ServerProcess]) -> None:
    a, _ = peers
    with a.client() as c:
        for body, status in [
            ([instance_id(FLAIR[0])], 400),
            ({}, 400),
            ({"Resources": "x"}, 400),
            ({"DicomInstances": [{"SOPClassUID": MR}]}, 400),
            ({"DicomInstances": [[MR]]}, 400),
            ({"Resources": ["01234567-01234567-01234567-01234567-01234567"]}, 404),
        ]:
            assert_orthanc_error(c.post("/modalities/b/storage-commitment", json=body), status)
        assert_orthanc_error(c.post("/modalities/nope/storage-commitment", json={"Resources": []}), 404)
        error = assert_orthanc_error(c.get("/storage-commitment/1.2.3"), 404, "Accessing an inexistent item")
        assert "1.2.3" in error["Details"]
        assert_orthanc_error(c.post("/storage-commitment/1.2.3/remove"), 404)
        assert c.get("/system").status_code == 200


def test_unknown_aets_are_refused(peers: tuple[ServerProcess, ServerProcess]) -> None:
    """B reports to the requestor's DICOM server, so it answers known modalities only."""
    _, b = peers
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", b.config["DicomPort"], ae_title="ISB")
    assert assoc.is_established
    try:
        request = Dataset()
        request.TransactionUID = "1.2.3.4"
        request.ReferencedSOPSequence = []
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
    finally:
        assoc.release()
    assert int(status.Status) == 0x0124
    assert b.get("/system").status_code == 200
