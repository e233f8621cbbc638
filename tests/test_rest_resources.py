"""The resource routes answer like Orthanc: every sample of the reference Orthanc is uploaded in its order, then
listings, resources, children, parents, statistics, metadata and attachments are compared with its recorded
answers (tests/reference). Writes (labels, protection, deletion) come last or use their own server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from isengard.testing import ServerProcess, sample

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from reference_data import as_isengard, comparable, load, upload_samples

LEVELS = ("patients", "studies", "series", "instances")
PARENT_OF = {"studies": "ParentPatient", "series": "ParentStudy", "instances": "ParentSeries"}
SINGULAR = {"patients": "patient", "studies": "study", "series": "series"}
STUDY_PATIENT_TAGS = "PatientMainDicomTags"
#: Metadata Orthanc 1.12 adds.
EXTRA_METADATA = {"PixelDataVR", "MainDicomTagsSignature"}
#: Orthanc finds no pixel data offset in a file without the DICM preamble; Isengard does.
NO_PREAMBLE = "TransferSyntaxes/1.2.840.10008.1.2.dcm"


@pytest.fixture(scope="module")
def uploads(server: ServerProcess) -> dict[str, dict[str, Any]]:
    return upload_samples(server)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("resources")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess, uploads: dict[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def expected(level: str) -> dict[str, dict[str, Any]]:
    """The recorded resources of a level by identifier, as Isengard should show them."""
    out = {}
    for resource in as_isengard(load(level)):
        out[resource["ID"]] = resource
    return out


def shown(answer: dict[str, Any]) -> dict[str, Any]:
    return comparable(answer)


@pytest.mark.parametrize("level", LEVELS)
def test_identifiers_and_their_order_are_orthanc_s(client: httpx.Client, level: str) -> None:
    assert client.get(f"/{level}").json() == [r["ID"] for r in load(level)]


@pytest.mark.parametrize("level", LEVELS)
def test_every_resource_reads_as_in_orthanc(client: httpx.Client, level: str) -> None:
    for rid, want in expected(level).items():
        answer = client.get(f"/{level}/{rid}").json()
        assert shown(answer) == want, rid
        assert answer["Labels"] == []
        assert answer.get("IsProtected", False) is False


@pytest.mark.parametrize("level", LEVELS)
def test_expanded_listing_and_paging(client: httpx.Client, level: str) -> None:
    want = list(expected(level).values())
    assert [shown(r) for r in client.get(f"/{level}", params={"expand": ""}).json()] == want
    ids = [r["ID"] for r in want]
    assert client.get(f"/{level}", params={"since": 2, "limit": 3}).json() == ids[2:5]
    assert client.get(f"/{level}", params={"since": len(ids) - 1, "limit": 10}).json() == ids[-1:]
    assert client.get(f"/{level}", params={"since": 0, "limit": 0}).json() == []
    page = client.get(f"/{level}", params={"since": 1, "limit": 2, "expand": ""}).json()
    assert [shown(r) for r in page] == want[1:3]


@pytest.mark.parametrize("missing", ["since", "limit"])
def test_paging_needs_since_and_limit_together(client: httpx.Client, missing: str) -> None:
    given = {"since": 3, "limit": 3}
    del given[missing]
    body = client.get("/patients", params=given).json()
    assert (body["HttpStatus"], body["OrthancStatus"]) == (400, 8)
    assert body["Details"] == f'Missing "{missing}" argument for GET request against: /patients'


def test_child_routes_list_descendants_in_orthanc_s_order(client: httpx.Client) -> None:
    """Orthanc lists the children of the last parent first at each step down; here 6 parents have several."""
    resources = {level: expected(level) for level in LEVELS}
    for route, ids in load("children").items():
        answer = client.get(route).json()
        assert [r["ID"] for r in answer] == ids, route
        level = route.rsplit("/", 1)[1]
        assert [shown(r) for r in answer] == [resources[level][i] for i in ids], route
        assert client.get(route, params={"expand": "false"}).json() == ids
    for series_id, series in resources["series"].items():
        assert [r["ID"] for r in client.get(f"/series/{series_id}/instances").json()] == series["Instances"]


def test_parent_routes_climb_to_every_ancestor(client: httpx.Client) -> None:
    resources = {level: expected(level) for level in LEVELS}
    for instance_id, instance in resources["instances"].items():
        series = resources["series"][instance["ParentSeries"]]
        study = resources["studies"][series["ParentStudy"]]
        for route, want in (
            ("series", series),
            ("study", study),
            ("patient", resources["patients"][study["ParentPatient"]]),
        ):
            assert shown(client.get(f"/instances/{instance_id}/{route}").json()) == want
    for series_id, series in list(resources["series"].items())[:10]:
        study = resources["studies"][series["ParentStudy"]]
        assert shown(client.get(f"/series/{series_id}/study").json()) == study
        patient = client.get(f"/series/{series_id}/patient").json()
        assert shown(patient) == resources["patients"][study["ParentPatient"]]
        assert shown(client.get(f"/studies/{series['ParentStudy']}/patient").json()) == shown(patient)


def test_series_status_and_expected_instances(client: httpx.Client) -> None:
    """Orthanc's rules: products of ImagesInAcquisition x NumberOfTemporalPositions, of NumberOfSlices x
    NumberOfTimeSlices, or CardiacNumberOfImages; the status from the IndexInSeries of the instances."""
    statuses = {(r["ExpectedNumberOfInstances"], r["Status"]) for r in load("series")}
    assert {(None, "Unknown"), (4, "Inconsistent")} <= statuses  # both kinds are in the samples
    answers = {r["ID"]: r for r in client.get("/series", params={"expand": ""}).json()}
    for series in load("series"):
        got = answers[series["ID"]]
        assert (got["ExpectedNumberOfInstances"], got["Status"]) == (
            series["ExpectedNumberOfInstances"],
            series["Status"],
        )


def test_statistics_per_resource_and_global(client: httpx.Client) -> None:
    for route, want in load("statistics").items():
        assert client.get(f"{route}/statistics").json() == want, route
    patients = load("patients")
    disk = sum(int(client.get(f"/patients/{p['ID']}/statistics").json()["DiskSize"]) for p in patients)
    assert client.get("/statistics").json() == {
        "CountInstances": len(load("instances")),
        "CountPatients": len(patients),
        "CountSeries": len(load("series")),
        "CountStudies": len(load("studies")),
        "TotalDiskSize": str(disk),
        "TotalDiskSizeMB": disk // 2**20,
        "TotalUncompressedSize": str(disk),
        "TotalUncompressedSizeMB": disk // 2**20,
    }


def test_dicom_attachments_have_orthanc_s_sizes_and_md5(client: httpx.Client) -> None:
    for instance_id, info in load("attachments").items():
        assert comparable(client.get(f"/instances/{instance_id}/attachments/dicom/info").json()) == info
        assert client.get(f"/instances/{instance_id}/attachments", params={"full": ""}).json() == {"dicom": 1}
    first = next(iter(load("attachments")))
    assert client.get(f"/instances/{first}/attachments").json() == ["dicom"]
    assert client.get(f"/instances/{first}/attachments/dicom").json() == [
        "compress",
        "compressed-data",
        "compressed-md5",
        "compressed-size",
        "data",
        "info",
        "is-compressed",
        "md5",
        "size",
        "uncompress",
        "verify-md5",
        "uuid",
    ]


def test_metadata_of_every_resource(client: httpx.Client, uploads: dict[str, dict[str, Any]]) -> None:
    """Per-reception values (dates, remote IP) excluded."""
    per_reception = {"RemoteIP", "RemoteAET", "ReceptionDate", "LastUpdate"}
    for route, recorded in load("metadata").items():
        want = {k: v for k, v in recorded.items() if k not in per_reception}
        got = client.get(f"{route}/metadata", params={"expand": ""}).json()
        allowed = EXTRA_METADATA | per_reception
        if route == f"/instances/{uploads[NO_PREAMBLE]['ID']}":
            allowed |= {"PixelDataOffset"}
        assert got.keys() - want.keys() <= allowed, route
        assert {k: got.get(k) for k in want} == want, route
        assert client.get(f"{route}/metadata").json() == list(got)


def test_shared_tags(client: httpx.Client) -> None:
    for route, want in load("shared-tags").items():
        got = client.get(f"{route}/shared-tags").json()
        for tag, entry in as_isengard(want).items():
            if int(tag[:4], 16) % 2:  # private tags: Orthanc names them from DCMTK's dictionary, Isengard pydicom's
                entry = {k: v for k, v in entry.items() if k != "Name"}
                got[tag] = {k: v for k, v in got[tag].items() if k != "Name"}
            elif tag == "0010,1000":  # retired since in the DICOM dictionary (and DCMTK's newer ones)
                entry = {**entry, "Name": "RETIRED_OtherPatientIDs"}
            assert got[tag] == entry, (route, tag)
        assert got.keys() == want.keys(), route
        simplified = client.get(f"{route}/shared-tags", params={"simplify": ""}).json()
        assert len(simplified) == len(want)
        short = client.get(f"{route}/shared-tags", params={"short": ""}).json()
        assert short == {tag: entry["Value"] for tag, entry in got.items()}


@pytest.mark.parametrize("level", LEVELS)
def test_unknown_identifiers_are_orthanc_errors(client: httpx.Client, level: str) -> None:
    routes = [f"/{level}/nope", f"/{level}/nope/statistics", f"/{level}/nope/metadata", f"/{level}/nope/labels"]
    routes += [f"/{level}/nope/{child}" for child in LEVELS[LEVELS.index(level) + 1 :]]
    for route in routes:
        response = client.get(route)
        assert response.status_code == 404, route
        assert response.json()["OrthancStatus"] == 17, route
    response = client.get(f"/{level}/{load(level)[0]['ID']}/nope")
    assert response.status_code == 404


def test_system_and_plugins_have_orthanc_s_shapes(client: httpx.Client) -> None:
    system = client.get("/system").json()
    for key, value in load("system").items():
        assert type(system[key]) is type(value), key
    assert system["ApiVersion"] >= load("system")["ApiVersion"]
    plugins = client.get("/plugins").json()
    assert "explorer.js" in plugins
    for name in plugins[:-1]:
        assert client.get(f"/plugins/{name}").json()["ID"] == name
    script = client.get("/plugins/explorer.js")
    assert script.headers["content-type"].startswith("application/javascript")


def test_labels(client: httpx.Client) -> None:
    study = load("studies")[0]["ID"]
    assert client.get(f"/studies/{study}/labels").json() == []
    assert client.put(f"/studies/{study}/labels/hello", content=b"").status_code == 200
    assert client.put(f"/studies/{study}/labels/world-2", content=b"").status_code == 200
    assert client.get(f"/studies/{study}/labels").json() == ["hello", "world-2"]
    assert client.get(f"/studies/{study}").json()["Labels"] == ["hello", "world-2"]
    assert client.get(f"/studies/{study}/labels/hello").status_code == 200
    assert client.get(f"/studies/{study}/labels/other").status_code == 404
    assert "hello" in client.get("/tools/labels").json()
    bad = client.put(f"/studies/{study}/labels/not%20valid", content=b"")
    assert bad.status_code == 400 and bad.json()["OrthancStatus"] == 3
    for label in ("hello", "world-2"):
        assert client.delete(f"/studies/{study}/labels/{label}").status_code == 200
    assert client.get(f"/studies/{study}/labels").json() == []


def test_protection_of_patients(client: httpx.Client) -> None:
    patient = load("patients")[0]["ID"]
    assert client.get(f"/patients/{patient}/protected").text == "0"
    for body, state in (("1", "1"), ("false", "0"), ("true", "1"), ("0", "0")):
        assert client.put(f"/patients/{patient}/protected", content=body).status_code == 200
        assert client.get(f"/patients/{patient}/protected").text == state
        assert client.get(f"/patients/{patient}").json()["IsProtected"] is (state == "1")
    bad = client.put(f"/patients/{patient}/protected", content="yes").json()
    assert (bad["HttpStatus"], bad["OrthancStatus"], bad["Details"]) == (400, 15, "Boolean value expected")
    assert client.get(f"/studies/{load('studies')[0]['ID']}/protected").status_code == 404


def test_deletion_cascades_to_empty_parents_as_in_orthanc(isengard: Any) -> None:
    writes = load("writes")
    server = isengard()
    for path, recorded in writes["uploads"].items():
        assert server.upload(sample(path))[0] == {**recorded, "Status": "Success"}
    with server.client() as client:
        for route, answer in writes["deletions"]:
            assert client.delete(route).json() == answer, route
            gone = client.get(route)
            assert gone.status_code == 404 and gone.json()["OrthancStatus"] == 17
        assert client.get("/statistics").json() == writes["statistics"]
        assert client.get("/patients").json() == []
        again = client.delete(writes["deletions"][0][0])
        assert again.status_code == 404 and again.json()["OrthancStatus"] == 17


def test_study_shows_the_patient_tags_of_its_own_first_instance(client: httpx.Client) -> None:
    for study in as_isengard(load("studies")):
        got = client.get(f"/studies/{study['ID']}").json()[STUDY_PATIENT_TAGS]
        assert got == study[STUDY_PATIENT_TAGS], study["ID"]


def test_series_metadata_as_in_orthanc(client: httpx.Client) -> None:
    for route, recorded in load("metadata").items():
        if route.startswith("/series/"):
            got = client.get(f"{route}/metadata", params={"expand": ""}).json()
            assert {k: got.get(k) for k in recorded} == recorded, route


def test_empty_instance_number_gives_an_empty_index_in_series(client: httpx.Client) -> None:
    empty = [r for r, m in load("metadata").items() if m.get("IndexInSeries") == ""]
    assert empty
    for route in empty:
        assert client.get(f"{route}/metadata/IndexInSeries").text == ""


def test_rest_uploads_have_no_called_aet(client: httpx.Client) -> None:
    instance = load("instances")[0]["ID"]
    assert "CalledAET" not in client.get(f"/instances/{instance}/metadata").json()
