"""Anonymization over REST on real samples, checked tag by tag against the PS3.15 profiles: what the profile
removes is gone (at every depth), what it empties is empty, private tags are gone, UIDs are renewed consistently
across a study (references between its instances included), pixel data is untouched, and the result re-ingests
as one new patient with one new study. Bad bodies answer Orthanc's 400s and store nothing."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset

from isengard import ORTHANC_VERSION
from isengard.dicom.profiles import PROFILES
from isengard.testing import ServerProcess, assert_orthanc_error, reference_orthanc, sample

BRAINIX = sorted(sample("Brainix", "Epi", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:6]
BRAINIX += sorted(sample("Brainix", "Flair", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:6]
RTH = [sample("HierarchicalAnonymization", "RTH", "CT01.dcm"), sample("HierarchicalAnonymization", "RTH", "RT.dcm")]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("anonymize")).start()
    server.upload(*BRAINIX, *RTH)
    yield server
    server.discard()


def find_study(client: httpx.Client, patient_name: str) -> str:
    [study] = client.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": patient_name}}).json()
    return str(study)


def files(client: httpx.Client, study: str) -> dict[str, Dataset]:
    """The instances of a study as datasets, by the id of the instance they were made from (AnonymizedFrom)."""
    out = {}
    for instance in client.get(f"/studies/{study}/instances").json():
        origin = client.get(f"/instances/{instance['ID']}/metadata/AnonymizedFrom").text
        out[origin] = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance['ID']}/file").content))
    return out


def original(client: httpx.Client, instance: str) -> Dataset:
    return pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance}/file").content))


def walk(ds: Dataset) -> Iterator[tuple[int, Any]]:
    """Every element at every depth: (tag, element)."""
    for elem in ds:
        yield int(elem.tag), elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def assert_follows_profile(before: Dataset, after: Dataset, version: str) -> None:
    profile = PROFILES[version]
    present = {tag for tag, _ in walk(after)}
    assert not present & profile.removals, [hex(t) for t in present & profile.removals]
    assert not [t for t in present if profile.in_removed_range(t)]
    assert not [t for t in present if t >> 16 & 1], "private tags left"
    for tag, elem in walk(after):
        if tag in profile.clearings:
            assert elem.value in (None, "", b"") or (elem.VR == "SQ" and len(elem.value) == 0), hex(tag)
    for keyword in ("PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber", "InstitutionName"):
        if before.get(keyword):
            assert after.get(keyword) != before.get(keyword), keyword
    assert after.PatientIdentityRemoved == "YES"
    assert after.DeidentificationMethod == f"Orthanc {ORTHANC_VERSION} - {profile.method}"
    assert UUID.match(after.PatientID)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert after.get(keyword) != before.get(keyword)
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    if "PixelData" in before:
        assert after.PixelData == before.PixelData


def test_study_anonymization_follows_the_2023b_profile(server: ServerProcess) -> None:
    with server.client() as c:
        patients = set(c.get("/patients").json())
        study = find_study(c, "BRAINIX")
        result = c.post(f"/studies/{study}/anonymize", json={}).json()
        assert set(result) == {"Description", "FailedInstancesCount", "ID", "InstancesCount", "IsAnonymization"} | {
            "Path", "PatientID", "Type"}  # fmt: skip
        assert (result["InstancesCount"], result["FailedInstancesCount"], result["Type"]) == (12, 0, "Study")
        assert result["IsAnonymization"] is True and result["Path"] == f"/studies/{result['ID']}"
        assert set(c.get("/patients").json()) == patients | {result["PatientID"]}
        new = c.get(f"/studies/{result['ID']}").json()
        assert new["ParentPatient"] == result["PatientID"] and len(new["Series"]) == 2
        assert re.match(r"^Anonymized\d+$", new["PatientMainDicomTags"]["PatientName"])
        assert c.get(f"/studies/{result['ID']}/metadata/AnonymizedFrom").text == study
        for series in new["Series"]:
            source = c.get(f"/series/{series}/metadata/AnonymizedFrom").text
            assert len(c.get(f"/series/{series}").json()["Instances"]) == 6
            assert c.get(f"/series/{source}").json()["ParentStudy"] == study
        anonymized = files(c, result["ID"])
        assert len(anonymized) == 12
        assert len({ds.StudyInstanceUID for ds in anonymized.values()}) == 1
        assert len({ds.SeriesInstanceUID for ds in anonymized.values()}) == 2
        assert len({ds.PatientID for ds in anonymized.values()}) == 1
        series_map: dict[str, set[str]] = {}
        for source, after in anonymized.items():
            before = original(c, source)
            assert_follows_profile(before, after, "2023b")
            series_map.setdefault(before.SeriesInstanceUID, set()).add(after.SeriesInstanceUID)
            assert after.FrameOfReferenceUID != before.FrameOfReferenceUID
        assert all(len(new_uids) == 1 for new_uids in series_map.values())
        assert len(c.get(f"/studies/{study}/instances").json()) == 12, "the source is kept"


def test_references_between_instances_are_renewed_together(server: ServerProcess) -> None:
    with server.client() as c:
        [ct_id] = [i for i in c.get("/instances").json() if original(c, i).Modality == "CT"]
        study = c.get(f"/series/{c.get(f'/instances/{ct_id}').json()['ParentSeries']}").json()["ParentStudy"]
        result = c.post(f"/studies/{study}/anonymize", json={"DicomVersion": "2021b"}).json()
        anonymized = files(c, result["ID"])
        ct = next(ds for ds in anonymized.values() if ds.Modality == "CT")
        rt = next(ds for ds in anonymized.values() if ds.Modality == "RTSTRUCT")
        frame = rt.ReferencedFrameOfReferenceSequence[0]
        assert frame.FrameOfReferenceUID == ct.FrameOfReferenceUID
        referenced_study = frame.RTReferencedStudySequence[0]
        assert referenced_study.ReferencedSOPInstanceUID == ct.StudyInstanceUID == rt.StudyInstanceUID
        referenced_series = referenced_study.RTReferencedSeriesSequence[0]
        assert referenced_series.SeriesInstanceUID == ct.SeriesInstanceUID
        assert referenced_series.ContourImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
        for source, after in anonymized.items():
            assert_follows_profile(original(c, source), after, "2021b")


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_single_instance_with_each_dicom_version(server: ServerProcess, version: str) -> None:
    with server.client() as c:
        count = len(c.get("/instances").json())
        instance = c.get("/instances").json()[0]
        response = c.post(f"/instances/{instance}/anonymize", json={"DicomVersion": version})
        assert response.headers["content-type"] == "application/dicom"
        after = pydicom.dcmread(io.BytesIO(response.content))
        before = original(c, instance)
        present = {tag for tag, _ in walk(after)}
        assert not present & PROFILES[version].removals
        assert after.DeidentificationMethod == f"Orthanc {ORTHANC_VERSION} - {PROFILES[version].method}"
        assert after.PixelData == before.PixelData
        assert len(c.get("/instances").json()) == count, "a single instance is answered, not stored"


def test_replace_keep_and_private_tags_leave_the_profile(server: ServerProcess) -> None:
    """As in Orthanc, a body that changes the profile no longer claims it in DeidentificationMethod."""
    with server.client() as c:
        instance = next(i for i in c.get("/instances").json() if any(e.tag.is_private for e in original(c, i)))
        before = original(c, instance)
        body = {"Replace": {"PatientName": "Hello", "0010-1001": "World"}, "Keep": ["StudyDescription"]}
        body["KeepPrivateTags"] = True
        after = pydicom.dcmread(io.BytesIO(c.post(f"/instances/{instance}/anonymize", json=body).content))
        assert (str(after.PatientName), str(after.OtherPatientNames)) == ("Hello", "World")
        assert after.StudyDescription == before.StudyDescription
        assert any(int(e.tag) >> 16 & 1 for e in after)
        assert after.get("DeidentificationMethod") == before.get("DeidentificationMethod")  # not Orthanc's
        assert after.PatientIdentityRemoved == "YES"


def test_anonymized_files_reingest_as_one_new_patient(server: ServerProcess, tmp_path: Any) -> None:
    with server.client() as c:
        study = find_study(c, "BRAINIX")
        result = c.post(f"/studies/{study}/anonymize", json={"KeepSource": False}).json()
        assert c.get(f"/studies/{study}").status_code == 404, "KeepSource false deletes the original"
        data = [c.get(f"/instances/{i['ID']}/file").content for i in c.get(f"/studies/{result['ID']}/instances").json()]
    fresh = ServerProcess(tmp_path / "fresh").start()
    try:
        with fresh.client() as c:
            for blob in data:
                assert c.post("/instances", content=blob).json()["Status"] == "Success"
            assert c.get("/patients").json() == [result["PatientID"]]
            assert c.get("/studies").json() == [result["ID"]]
    finally:
        fresh.discard()


def test_asynchronous_anonymization_is_a_job(server: ServerProcess) -> None:
    with server.client() as c:
        series = next(
            s for s in c.get("/series").json() if "AnonymizedFrom" not in c.get(f"/series/{s}/metadata").json()
        )
        job = c.post(f"/series/{series}/anonymize", json={"Asynchronous": True}).json()
        assert set(job) == {"ID", "Path"} and job["Path"] == f"/jobs/{job['ID']}"
        deadline = time.monotonic() + 30
        while (state := c.get(job["Path"]).json())["State"] not in ("Success", "Failure"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (state["State"], state["Type"], state["Progress"]) == ("Success", "ResourceModification", 100)
        content = state["Content"]
        assert content["Type"] == "Series" and content["IsAnonymization"] is True
        assert c.get(f"/series/{content['ID']}/metadata/AnonymizedFrom").text == series
        assert any(ch["ChangeType"] == "AnonymizedSeries" and ch["ID"] == content["ID"]
                   for ch in c.get("/changes?limit=1000").json()["Changes"])  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "error", "details"),
    [
        ({"DicomVersion": "2099"}, 400, "Parameter out of range",
         "Unknown specific version of the DICOM standard: 2099"),
        ({"DicomVersion": 2021}, 400, "Bad file format", None),
        ({"Keep": ["PatientID"]}, 400, "Bad request",
         'Marking tag "PatientID" as to be kept requires the "Force" option to be set to true'),
        ({"Keep": ["PatientID"], "Force": True}, 400, "Bad request",
         "When modifying a patient, her PatientID is required to be modified"),
        ({"Replace": {"StudyInstanceUID": "1.2.3"}}, 400, "Bad request",
         'Marking tag "StudyInstanceUID" as to be replaced requires the "Force" option to be set to true'),
        ({"Replace": {"NoSuchTag": "x"}}, 400, "Unknown DICOM tag", None),
        ({"Remove": "PatientName"}, 400, "Bad request", None),
    ],
)  # fmt: skip
def test_bad_bodies_store_nothing(server: ServerProcess, body: Any, status: int, error: str, details: str) -> None:
    with server.client() as c:
        count, patients = len(c.get("/instances").json()), len(c.get("/patients").json())
        study = c.get("/studies").json()[0]
        for path in (f"/studies/{study}/anonymize", f"/instances/{c.get('/instances').json()[0]}/anonymize"):
            answer = assert_orthanc_error(c.post(path, json=body), status, error)
            if details is not None:
                assert answer["Details"] == details
        assert (len(c.get("/instances").json()), len(c.get("/patients").json())) == (count, patients)
        assert_orthanc_error(c.post(f"/studies/{study}/anonymize", content=b"[1]"), 400, "Bad file format")


# -- against Orthanc itself ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Orthanc 1.10.1 of our own (its newest profile is 2021b); yields its REST URL."""
    with reference_orthanc(tmp_path_factory.mktemp("orthanc"), why="to compare anonymizations with Orthanc's") as o:
        yield o.url


COMPARED = [BRAINIX[0], RTH[1], sample("HierarchicalAnonymization", "2019-03-28", "PR000000.dcm")]


@pytest.mark.parametrize("version", ["2017c", "2021b"])
@pytest.mark.parametrize("path", COMPARED, ids=lambda p: p.name)
def test_same_tags_as_orthanc(server: ServerProcess, orthanc: str, path: Any, version: str) -> None:
    """The same attributes survive, with the same values, and the same UIDs are renewed as in Orthanc 1.10.1."""
    data = path.read_bytes()
    theirs_id = httpx.post(f"{orthanc}/instances", content=data).json()["ID"]
    ours_id = server.post("/instances", content=data).json()["ID"]
    body = {"DicomVersion": version}
    theirs = pydicom.dcmread(io.BytesIO(httpx.post(f"{orthanc}/instances/{theirs_id}/anonymize", json=body).content))
    ours = pydicom.dcmread(io.BytesIO(server.post(f"/instances/{ours_id}/anonymize", json=body).content))
    before = pydicom.dcmread(path)
    assert {int(e.tag) for e in ours} == {int(e.tag) for e in theirs}
    for elem in theirs:
        tag = int(elem.tag)
        if elem.VR == "UI":
            assert (ours[tag].value == before[tag].value) == (elem.value == before[tag].value), elem.keyword
        elif elem.VR != "SQ" and elem.keyword not in ("PatientName", "PatientID", "DeidentificationMethod"):
            assert ours[tag].value == elem.value, elem.keyword
