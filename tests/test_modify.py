"""Modification over REST, as Orthanc does it: a single instance is answered (not stored); patients, studies,
series and bulk requests store new resources (new UIDs at and below the level, consistent across the request)
and answer Orthanc's report, or a job; the safety rules on the DICOM identifiers give Orthanc's 400s."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset

from isengard.testing import ServerProcess, assert_orthanc_error, sample, wait_job

EPI = sorted(sample("Brainix", "Epi", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:4]
FLAIR = sorted(sample("Brainix", "Flair", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:3]
KNEE = sorted(sample("Knee", "T1", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:3]
REPORT = {"Description", "FailedInstancesCount", "ID", "InstancesCount", "IsAnonymization", "Path", "PatientID"}
REPORT |= {"Type"}


@pytest.fixture
def server(isengard: Any) -> Iterator[ServerProcess]:
    server = isengard()
    server.upload(*EPI, *FLAIR, *KNEE)
    yield server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server the tests that change nothing share."""
    server = ServerProcess(tmp_path_factory.mktemp("modify")).start()
    server.upload(*EPI, *FLAIR, *KNEE)
    yield server
    server.discard()


def dataset(response: httpx.Response) -> Dataset:
    return pydicom.dcmread(io.BytesIO(response.content))


def brainix(c: httpx.Client) -> dict[str, Any]:
    [study] = c.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": "BRAINIX"}, "Expand": True}).json()
    return dict(study)


def test_instance_modification_answers_a_file_and_stores_nothing(server: ServerProcess) -> None:
    with server.client() as c:
        instance = c.get("/instances").json()[0]
        before = dataset(c.get(f"/instances/{instance}/file"))
        body = {"Replace": {"PatientName": "hello"}, "Remove": ["InstitutionName"], "RemovePrivateTags": True}
        response = c.post(f"/instances/{instance}/modify", json=body)
        assert response.headers["content-type"] == "application/dicom"
        after = dataset(response)
        assert str(after.PatientName) == "hello" and "InstitutionName" not in after
        assert not [e for e in after if e.tag.is_private]
        assert after.SOPInstanceUID != before.SOPInstanceUID == before.file_meta.MediaStorageSOPInstanceUID
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert (after.StudyInstanceUID, after.SeriesInstanceUID) == (before.StudyInstanceUID, before.SeriesInstanceUID)
        assert after.PixelData == before.PixelData
        assert len(c.get("/instances").json()) == 10
        # Replacing an identifier moves the modification to its level (Orthanc's rule for single instances)
        moved = dataset(c.post(f"/instances/{instance}/modify", json={"Replace": {"PatientID": "P"}, "Force": True}))
        assert moved.PatientID == "P" and moved.StudyInstanceUID != before.StudyInstanceUID
        kept = dataset(c.post(f"/instances/{instance}/modify", json={"Keep": ["SOPInstanceUID"], "Force": True}))
        assert kept.SOPInstanceUID == before.SOPInstanceUID


def test_study_modification_stores_a_new_study(server: ServerProcess) -> None:
    with server.client() as c:
        study = brainix(c)
        result = c.post(f"/studies/{study['ID']}/modify", json={"Replace": {"InstitutionName": "My clinic"}}).json()
        assert set(result) == REPORT
        assert (result["Type"], result["InstancesCount"], result["IsAnonymization"]) == ("Study", 7, False)
        assert result["PatientID"] == study["ParentPatient"], "the study stays with its patient"
        new = c.get(f"/studies/{result['ID']}").json()
        assert new["MainDicomTags"]["InstitutionName"] == "My clinic"
        assert new["MainDicomTags"]["StudyInstanceUID"] != study["MainDicomTags"]["StudyInstanceUID"]
        assert len(new["Series"]) == 2
        assert c.get(f"/studies/{result['ID']}/metadata/ModifiedFrom").text == study["ID"]
        assert c.get(f"/studies/{study['ID']}").status_code == 200, "KeepSource defaults to true"
        for instance in c.get(f"/studies/{result['ID']}/instances").json():
            source = c.get(f"/instances/{instance['ID']}/metadata/ModifiedFrom").text
            before = dataset(c.get(f"/instances/{source}/file"))
            after = dataset(c.get(f"/instances/{instance['ID']}/file"))
            assert after.PatientID == before.PatientID and after.PixelData == before.PixelData
            assert after.SOPInstanceUID != before.SOPInstanceUID
        changes = c.get("/changes?limit=1000").json()["Changes"]
        assert any(ch["ChangeType"] == "ModifiedStudy" and ch["ID"] == result["ID"] for ch in changes)


def test_series_modification_without_keep_source_replaces_the_series(server: ServerProcess) -> None:
    with server.client() as c:
        study = brainix(c)
        series = study["Series"][0]
        count = len(c.get(f"/series/{series}").json()["Instances"])
        body = {"Replace": {"SeriesDescription": "renamed"}, "KeepSource": False, "Transcode": "1.2.840.10008.1.2.5"}
        result = c.post(f"/series/{series}/modify", json=body).json()
        assert set(result) == REPORT | {"Transcode"} and result["Transcode"] == "1.2.840.10008.1.2.5"
        assert c.get(f"/series/{series}").status_code == 404
        new = c.get(f"/series/{result['ID']}").json()
        assert new["ParentStudy"] == study["ID"], "a series modification stays in its study"
        assert len(new["Instances"]) == count and new["MainDicomTags"]["SeriesDescription"] == "renamed"
        metadata = c.get(f"/instances/{new['Instances'][0]}/metadata/TransferSyntax").text
        assert metadata == "1.2.840.10008.1.2.5"


def test_patient_modification_needs_a_new_patient_id(server: ServerProcess) -> None:
    with server.client() as c:
        patient = brainix(c)["ParentPatient"]
        error = assert_orthanc_error(c.post(f"/patients/{patient}/modify", json={"Replace": {"PatientName": "X"}}), 400)
        assert error["Details"] == "When modifying a patient, her PatientID is required to be modified"
        body = {"Replace": {"PatientID": "NEW", "PatientName": "NEW^NAME"}, "Force": True}
        result = c.post(f"/patients/{patient}/modify", json=body).json()
        assert result["Type"] == "Patient" and result["ID"] == result["PatientID"] != patient
        assert c.get(f"/patients/{result['ID']}").json()["MainDicomTags"]["PatientID"] == "NEW"
        assert len(c.get(f"/patients/{result['ID']}/instances").json()) == 7


def test_bulk_modification_of_mixed_levels(server: ServerProcess) -> None:
    with server.client() as c:
        study = brainix(c)
        [epi, flair] = study["Series"]
        instance = c.get(f"/series/{epi}").json()["Instances"][0]
        body = {"Resources": [instance, flair], "Replace": {"SeriesDescription": "H"}}
        result = c.post("/tools/bulk-modify", json=body).json()
        assert set(result) == {"Description", "FailedInstancesCount", "InstancesCount", "IsAnonymization", "Resources"}
        assert result["InstancesCount"] == 4
        types = [r["Type"] for r in result["Resources"]]
        assert types == ["Instance"] * 4 + ["Series"] * 2 + ["Study", "Patient"]
        series = {r["ID"] for r in result["Resources"] if r["Type"] == "Series"}
        assert series == {epi, flair}, "at the instance level (the default), the series stay"
        result = c.post("/tools/bulk-modify", json={**body, "Level": "Series"}).json()
        assert not {r["ID"] for r in result["Resources"] if r["Type"] == "Series"} & {epi, flair}
        assert_orthanc_error(c.post("/tools/bulk-modify", json={"Replace": {}}), 400, "Bad file format")


def test_asynchronous_modification_is_a_job(server: ServerProcess) -> None:
    with server.client() as c:
        study = brainix(c)["ID"]
        job = c.post(f"/studies/{study}/modify", json={"Replace": {"StudyID": "42"}, "Asynchronous": True}).json()
        assert set(job) == {"ID", "Path"}
        done = wait_job(c, job["ID"])
        assert (done["State"], done["Type"]) == ("Success", "ResourceModification")
        assert set(done["Content"]) == REPORT and done["Content"]["InstancesCount"] == 7
        assert c.get(f"/studies/{done['Content']['ID']}").json()["MainDicomTags"]["StudyID"] == "42"


@pytest.mark.parametrize(
    ("route", "body", "error", "details"),
    [
        ("studies", {"Replace": {"PatientID": "X"}}, "Bad request",
         'Marking tag "PatientID" as to be replaced requires the "Force" option to be set to true'),
        ("studies", {"Replace": {"PatientID": "X"}, "Force": True}, "Bad request",
         "When modifying a study, the parent PatientID cannot be manually modified"),
        ("series", {"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}, "Bad request",
         "When modifying a series, the parent StudyInstanceUID cannot be manually modified"),
        ("studies", {"Keep": ["StudyInstanceUID"]}, "Bad request",
         'Marking tag "StudyInstanceUID" as to be kept requires the "Force" option to be set to true'),
        ("studies", {"Remove": ["PatientID"], "Force": True}, "Bad request", None),
        ("studies", {"Replace": {"NoSuchTag": "x"}}, "Unknown DICOM tag", None),
        ("studies", {"Replace": {"PatientName": 3}}, "Bad type for a parameter",
         "Bad Parameter type for tag 0010,0010"),
        ("studies", {"Replace": []}, "Bad request", None),
        ("studies", {"Transcode": "1.2.3"}, "Bad file format", "Unknown transfer syntax UID: 1.2.3"),
        ("studies", [], "Bad file format", None),
    ],
)  # fmt: skip
def test_bad_bodies_store_nothing(shared: ServerProcess, route: str, body: Any, error: str, details: str) -> None:
    with shared.client() as c:
        study = brainix(c)
        target = study["ID"] if route == "studies" else study["Series"][0]
        answer = assert_orthanc_error(c.post(f"/{route}/{target}/modify", json=body), 400, error)
        if details is not None:
            assert answer["Details"] == details
        assert len(c.get("/instances").json()) == 10
        assert c.get("/jobs").json() == []
