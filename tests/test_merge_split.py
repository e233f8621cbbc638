"""Split and merge of studies (Orthanc Book, "Split/merge of DICOM studies"): series or instances move to a new
study, or into another study whose patient and study modules they take; the originals go unless KeepSource."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest

from isengard.testing import ServerProcess, assert_orthanc_error, sample

EPI = sorted(sample("Brainix", "Epi", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:3]
FLAIR = sorted(sample("Brainix", "Flair", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:2]
KNEE = sorted(sample("Knee", "T1", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:2]
KNEE += sorted(sample("Knee", "T2", "IM-0001-0001.dcm").parent.glob("*.dcm"))[:2]


@pytest.fixture
def server(isengard: Any) -> Iterator[ServerProcess]:
    server = isengard()
    server.upload(*EPI, *FLAIR, *KNEE)
    yield server


def study_named(c: httpx.Client, name: str) -> dict[str, Any]:
    [study] = c.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": name}, "Expand": True}).json()
    return dict(study)


def tags(c: httpx.Client, instance: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(c.get(f"/instances/{instance}/file").content), stop_before_pixels=True)


def test_split_moves_a_series_to_a_new_study(server: ServerProcess) -> None:
    with server.client() as c:
        study = study_named(c, "BRAINIX")
        series = study["Series"][1]
        moved = len(c.get(f"/series/{series}").json()["Instances"])
        body = {"Series": [series], "Replace": {"StudyDescription": "split"}, "Remove": ["AccessionNumber"]}
        result = c.post(f"/studies/{study['ID']}/split", json=body).json()
        assert set(result) == {"Description", "FailedInstancesCount", "InstancesCount", "TargetStudy", "TargetStudyUID"}
        assert result["InstancesCount"] == moved
        new = c.get(f"/studies/{result['TargetStudy']}").json()
        assert new["MainDicomTags"]["StudyInstanceUID"] == result["TargetStudyUID"]
        assert new["MainDicomTags"]["StudyDescription"] == "split" and "AccessionNumber" not in new["MainDicomTags"]
        assert new["ParentPatient"] == study["ParentPatient"] and len(new["Series"]) == 1
        assert c.get(f"/series/{series}").status_code == 404, "the originals go by default"
        assert c.get(f"/studies/{study['ID']}").json()["Series"] == [study["Series"][0]]
        ds = tags(c, c.get(f"/studies/{result['TargetStudy']}/instances").json()[0]["ID"])
        assert ds.StudyInstanceUID == result["TargetStudyUID"]


def test_split_of_instances_as_a_job_keeping_the_source(server: ServerProcess) -> None:
    with server.client() as c:
        study = study_named(c, "BRAINIX")
        instances = [i["ID"] for i in c.get(f"/studies/{study['ID']}/instances").json()[:2]]
        body = {"Instances": instances, "KeepSource": True, "Asynchronous": True}
        job = c.post(f"/studies/{study['ID']}/split", json=body).json()
        deadline = time.monotonic() + 30
        while (done := c.get(job["Path"]).json())["State"] not in ("Success", "Failure"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (done["State"], done["Type"]) == ("Success", "SplitStudy")
        assert done["Content"]["InstancesCount"] == 2
        assert len(c.get(f"/studies/{done['Content']['TargetStudy']}/instances").json()) == 2
        assert len(c.get(f"/studies/{study['ID']}/instances").json()) == 5


def test_merge_takes_the_patient_and_study_of_the_target(server: ServerProcess) -> None:
    with server.client() as c:
        target, source = study_named(c, "BRAINIX"), study_named(c, "KNEE")
        target_tags = tags(c, c.get(f"/studies/{target['ID']}/instances").json()[0]["ID"])
        result = c.post(f"/studies/{target['ID']}/merge", json={"Resources": [source["Series"][0]]}).json()
        assert result == {"Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": 2,
                          "TargetStudy": target["ID"]}  # fmt: skip
        merged = c.get(f"/studies/{target['ID']}").json()
        assert len(merged["Series"]) == 3
        assert c.get(f"/series/{source['Series'][0]}").status_code == 404
        for instance in c.get(f"/studies/{target['ID']}/instances").json():
            ds = tags(c, instance["ID"])
            for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate"):
                assert ds.get(keyword) == target_tags.get(keyword), keyword
        assert len(c.get("/patients").json()) == 2, "the knee patient keeps its other series"
        result = c.post(f"/studies/{target['ID']}/merge", json={"Resources": [source["ID"]], "KeepSource": True})
        assert result.json()["InstancesCount"] == 2
        assert c.get(f"/studies/{source['ID']}").status_code == 200
        assert len(c.get(f"/studies/{target['ID']}").json()["Series"]) == 4


def test_bad_split_and_merge_requests(server: ServerProcess) -> None:
    with server.client() as c:
        brainix, knee = study_named(c, "BRAINIX"), study_named(c, "KNEE")
        split = f"/studies/{brainix['ID']}/split"
        error = assert_orthanc_error(c.post(split, json={}), 400, "Bad request")
        assert error["Details"] == 'Both the "Series" and the "Instances" fields are missing'
        error = assert_orthanc_error(c.post(split, json={"Series": knee["Series"]}), 404, "Unknown resource")
        assert error["Details"] == f"This series does not belong to the study to be split: {knee['Series'][0]}"
        body = {"Series": brainix["Series"][:1], "Replace": {"SeriesDescription": "x"}}
        error = assert_orthanc_error(c.post(split, json=body), 400, "Parameter out of range")
        assert error["Details"] == ("Cannot modify the following tag while splitting a study (not in the "
                                    "patient/study modules): SeriesDescription (0008,103e)")  # fmt: skip
        assert_orthanc_error(c.post(split, json={"Series": "x"}), 400, "Bad file format")
        merge = f"/studies/{brainix['ID']}/merge"
        assert_orthanc_error(c.post(merge, json={}), 400, "Bad file format")
        error = assert_orthanc_error(c.post(merge, json={"Resources": [brainix["ParentPatient"]]}), 404)
        assert error["Details"].endswith("is a Patient")
        error = assert_orthanc_error(c.post(merge, json={"Resources": [brainix["ID"]]}), 404)
        assert error["Details"] == f"Cannot merge a study into the same study: {brainix['ID']}"
        error = assert_orthanc_error(c.post(merge, json={"Resources": brainix["Series"][:1]}), 404)
        assert error["Details"] == f"Cannot merge series {brainix['Series'][0]} into its parent study {brainix['ID']}"
        assert len(c.get("/instances").json()) == 9 and c.get("/jobs").json() == []
