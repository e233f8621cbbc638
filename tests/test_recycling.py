"""MaximumPatientCount and MaximumStorageSize: the least recently fed unprotected patient goes first, protected
patients stay, and MaximumStorageMode "Reject" refuses with Orthanc's FullStorage error (HTTP 507).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from isengard.testing import ServerProcess, assert_orthanc_error, dicom_files, dicom_variant, sample, storage_files

SMALL = sample("Series", "Lena-5.dcm")  # ~10 kB
LARGE = sample("Phenix", "IM-0001-0001.dcm")  # ~370 kB
HUGE = sample("TransferSyntaxes", "1.2.840.10008.1.2.4.57.dcm")  # ~720 kB


def instance_of(patient: str, template: Path = SMALL) -> bytes:
    return dicom_variant(
        template,
        PatientID=patient,
        PatientName=f"{patient}^TEST",
        StudyInstanceUID=generate_uid(),
        SeriesInstanceUID=generate_uid(),
        SOPInstanceUID=generate_uid(),
    )


def store(client: httpx.Client, body: bytes) -> str:
    r = client.post("/instances", content=body)
    assert r.status_code == 200, r.text
    assert r.json()["Status"] == "Success"
    return str(r.json()["ParentPatient"])


def patient_ids(client: httpx.Client) -> set[str]:
    return {client.get(f"/patients/{p}").json()["MainDicomTags"]["PatientID"] for p in client.get("/patients").json()}


def assert_no_orphans(server: ServerProcess, client: httpx.Client) -> None:
    assert storage_files(server) == {info["Uuid"] for info in dicom_files(client).values()}


def deleted_patients(client: httpx.Client) -> list[str]:
    changes = client.get("/changes", params={"limit": 1000}).json()["Changes"]
    return [c["ID"] for c in changes if c["ChangeType"] == "Deleted" and c["ResourceType"] == "Patient"]


def test_patient_count_recycles_oldest_unprotected(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"MaximumPatientCount": 3})
    with server.client() as client:
        ids = {name: store(client, instance_of(name)) for name in ("P1", "P2", "P3")}
        ids["P4"] = store(client, instance_of("P4"))
        assert patient_ids(client) == {"P2", "P3", "P4"}
        assert deleted_patients(client) == [ids["P1"]]

        r = client.put(f"/patients/{ids['P2']}/protected", content=b"1")
        assert r.status_code == 200, r.text
        assert client.get(f"/patients/{ids['P2']}/protected").text == "1"
        assert client.get(f"/patients/{ids['P2']}").json()["IsProtected"] is True
        ids["P5"] = store(client, instance_of("P5"))
        assert patient_ids(client) == {"P2", "P4", "P5"}, "the protected patient was recycled"

        # a new instance of P4 makes P5 the least recently fed patient
        store(client, instance_of("P4"))
        ids["P6"] = store(client, instance_of("P6"))
        assert patient_ids(client) == {"P2", "P4", "P6"}
        assert len(client.get(f"/patients/{ids['P4']}/instances").json()) == 2

        # a patient that is already stored takes no new room
        store(client, instance_of("P6"))
        assert patient_ids(client) == {"P2", "P4", "P6"}
        assert_no_orphans(server, client)

        # released from protection, P2 is again the oldest
        assert client.put(f"/patients/{ids['P2']}/protected", content=b"0").status_code == 200
        store(client, instance_of("P7"))
        assert patient_ids(client) == {"P4", "P6", "P7"}
        assert_no_orphans(server, client)


def test_storage_size_recycles_until_the_instance_fits(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"MaximumStorageSize": 1})  # MB: two of the large files fit, not three
    limit = 1024 * 1024
    with server.client() as client:
        for name in ("S1", "S2"):
            store(client, instance_of(name, LARGE))
        assert patient_ids(client) == {"S1", "S2"}
        store(client, instance_of("S3", LARGE))
        assert patient_ids(client) == {"S2", "S3"}
        assert int(client.get("/statistics").json()["TotalDiskSize"]) <= limit
        # one file that needs the room of both remaining patients
        store(client, instance_of("H1", HUGE))
        assert patient_ids(client) == {"H1"}
        assert int(client.get("/statistics").json()["TotalDiskSize"]) <= limit
        # small ones fit beside it without recycling
        for i in range(3):
            store(client, instance_of(f"T{i}"))
        assert patient_ids(client) == {"H1", "T0", "T1", "T2"}
        assert_no_orphans(server, client)


def test_everything_protected_means_full(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"MaximumPatientCount": 1})
    with server.client() as client:
        kept = store(client, instance_of("KEEP"))
        assert client.put(f"/patients/{kept}/protected", content=b"1").status_code == 200
        files = storage_files(server)
        body = assert_orthanc_error(client.post("/instances", content=instance_of("NEW")), 507)
        assert body["OrthancError"] == "The file storage is full" and body["OrthancStatus"] == 19
        assert patient_ids(client) == {"KEEP"} and storage_files(server) == files


def test_reject_mode_refuses_new_patients(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"MaximumPatientCount": 2, "MaximumStorageMode": "Reject"})
    with server.client() as client:
        store(client, instance_of("R1"))
        store(client, instance_of("R2"))
        files = storage_files(server)
        stats = client.get("/statistics").json()
        body = assert_orthanc_error(client.post("/instances", content=instance_of("R3")), 507)
        assert body["OrthancError"] == "The file storage is full" and body["OrthancStatus"] == 19
        assert patient_ids(client) == {"R1", "R2"}
        assert client.get("/statistics").json() == stats and storage_files(server) == files
        store(client, instance_of("R1"))  # an existing patient takes no new slot
        assert client.get("/statistics").json()["CountInstances"] == 3
        assert_no_orphans(server, client)


def test_reject_mode_on_storage_size(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"MaximumStorageSize": 1, "MaximumStorageMode": "Reject"})
    with server.client() as client:
        store(client, instance_of("Z1", LARGE))
        store(client, instance_of("Z2", LARGE))
        files = storage_files(server)
        assert_orthanc_error(
            client.post("/instances", content=instance_of("Z3", LARGE)), 507, "The file storage is full"
        )
        assert_orthanc_error(
            client.post("/instances", content=instance_of("Z1", LARGE)), 507, "The file storage is full"
        )
        assert patient_ids(client) == {"Z1", "Z2"} and storage_files(server) == files
        store(client, instance_of("Z3"))  # a small one still fits
        assert_no_orphans(server, client)
