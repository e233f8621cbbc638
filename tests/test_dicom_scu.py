"""The DICOM client over REST: C-STORE, C-FIND, C-MOVE and C-GET towards real peers.

Peers: dcmtk's storescp (receives what /store sends), a second Isengard ("PACS": C-FIND, C-MOVE and C-GET peer,
and store destination), and a scratch Orthanc when one is installed.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from isengard.testing import (
    ServerProcess,
    assert_orthanc_error,
    dicom_variant,
    free_port,
    reference_orthanc,
    require_tool,
    sample,
    wait_for_port,
)

BRAINIX = [sample("Brainix", "Flair", f"IM-0001-000{i}.dcm") for i in (1, 2, 3)]
TEST_1 = [
    sample("PatientWith2studies", "TEST_1_study_1234.dcm"),
    sample("PatientWith2studies", "TEST_1_study_2345.dcm"),
]
COMUNIX = [sample("Comunix", "Ct", "IM-0001-0001.dcm"), sample("Comunix", "Ct", "IM-0001-0002.dcm")]
DEAD_PORT = free_port()


@pytest.fixture(scope="module")
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp, accepting uncompressed transfer syntaxes only (its default); one process per association,
    since the client keeps its associations open a while (DicomAssociationCloseDelay) for more C-STOREs."""
    require_tool("storescp")
    port, folder = free_port(), tmp_path_factory.mktemp("storescp")
    process = subprocess.Popen(["storescp", "--fork", "-aet", "STORESCP", "-od", str(folder), str(port)])
    wait_for_port(port)
    yield port, folder
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def peers(
    tmp_path_factory: pytest.TempPathFactory, storescp: tuple[int, Path]
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(client, pacs): two Isengard servers that know each other; the PACS holds Brainix, TEST_1 and Comunix."""
    client_port, pacs_port = free_port(), free_port()
    pacs = ServerProcess(
        tmp_path_factory.mktemp("pacs"),
        {
            "DicomAet": "PACS",
            "DicomPort": pacs_port,
            "DicomModalities": {"client": ["CLIENT", "127.0.0.1", client_port]},
        },
    )
    client = ServerProcess(
        tmp_path_factory.mktemp("client"),
        {
            "DicomAet": "CLIENT",
            "DicomPort": client_port,
            "DicomScuTimeout": 5,
            "LogExportedResources": True,
            "QueryRetrieveSize": 4,
            "DicomModalities": {
                "pacs": ["PACS", "127.0.0.1", pacs_port],
                "storescp": ["STORESCP", "127.0.0.1", storescp[0]],
                "dead": ["DEAD", "127.0.0.1", DEAD_PORT],
            },
        },
    )
    pacs.start()
    client.start()
    pacs.upload(*BRAINIX, *TEST_1, *COMUNIX)
    yield client, pacs
    client.stop()
    pacs.stop()


@pytest.fixture
def client(peers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return peers[0]


@pytest.fixture
def pacs(peers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return peers[1]


def received(folder: Path) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f) for f in folder.iterdir() if f.is_file())}


def same_dataset(a: bytes, b: bytes) -> bool:
    """The same DICOM dataset (the file meta header is rewritten by whoever receives a file)."""
    return bool(pydicom.dcmread(io.BytesIO(a)) == pydicom.dcmread(io.BytesIO(b)))


def study_id(server: ServerProcess, uid: str) -> str | None:
    found = server.post("/tools/lookup", content=uid).json()
    return next((f["ID"] for f in found if f["Type"] == "Study"), None)


def forget_study(server: ServerProcess, uid: str) -> None:
    found = study_id(server, uid)
    if found:
        assert server.client().delete(f"/studies/{found}").status_code == 200


# -- C-STORE ---------------------------------------------------------------------------------------------------
def test_store_sends_each_file_as_stored(client: ServerProcess, storescp: tuple[int, Path]) -> None:
    uploaded = client.upload(BRAINIX[0], BRAINIX[1], TEST_1[0], sample("Formats", "Rle.dcm"))
    brainix_patient = uploaded[0]["ParentPatient"]
    resources = [brainix_patient, uploaded[2]["ID"], uploaded[3]["ID"]]
    report = client.post("/modalities/storescp/store", json={"Resources": resources, "Synchronous": True}).json()
    assert report == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 4,
        "LocalAet": "CLIENT",
        "ParentResources": resources,
        "RemoteAet": "STORESCP",
    }
    got = received(storescp[1])
    for path in (BRAINIX[0], BRAINIX[1], TEST_1[0], sample("Formats", "Rle.dcm")):
        original = pydicom.dcmread(path)
        copy = got[str(original.SOPInstanceUID)]
        # storescp takes uncompressed files only: compressed ones arrive decompressed, same pixels, same UIDs
        assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert copy.SeriesInstanceUID == original.SeriesInstanceUID
        assert (copy.pixel_array == original.pixel_array).all()
    exports = client.get("/exports").json()["Exports"]
    assert {e["SOPInstanceUID"] for e in exports if e["RemoteModality"] == "storescp"} >= {
        str(pydicom.dcmread(p).SOPInstanceUID) for p in (BRAINIX[0], TEST_1[0])
    }


def test_store_bodies(client: ServerProcess, storescp: tuple[int, Path]) -> None:
    [instance] = client.upload(BRAINIX[2])
    iid = instance["ID"]
    with client.client() as c:
        for content in (iid.encode(), f" {iid}\n".encode(), json.dumps(iid).encode(), json.dumps([iid]).encode()):
            report = c.post("/modalities/storescp/store", content=content).json()
            assert report["InstancesCount"] == 1 and report["ParentResources"] == [iid], report
        # (asynchronous requests run as jobs: tests/test_jobs.py)
        body = {"Resources": [iid], "Synchronous": True, "MoveOriginatorAet": "MOVER", "MoveOriginatorID": 12}
        report = c.post("/modalities/storescp/store", json=body).json()
        assert (report["InstancesCount"], report["MoveOriginatorAET"], report["MoveOriginatorID"]) == (1, "MOVER", 12)
        report = c.post("/modalities/storescp/store", json=[]).json()
        assert report["InstancesCount"] == 0 and "ParentResources" not in report
        unknown = "00000000-00000000-00000000-00000000-00000000"
        for content, status, orthanc_status, details in [
            (b"nonexistent", 400, 15, "Must provide a JSON value"),
            (b"", 400, 15, "Must provide a JSON value"),
            (b'["nonexistent"]', 400, 15, "This string is not a valid Orthanc identifier: nonexistent"),
            (b"{}", 400, 15, 'Missing field in JSON: "Resources"'),
            (json.dumps({"Resources": iid}).encode(), 400, 15, 'JSON field "Resources" must contain an array'),
            (b"[3]", 400, 15, "Resources to be exported must be specified as a JSON array of strings"),
            (b"12", 400, 15, "Must provide a JSON object, or a JSON array of strings"),
            (json.dumps({"Resources": [iid], "Synchronous": "no"}).encode(), 400, 15, None),
            (json.dumps({"Resources": [iid], "Timeout": "no"}).encode(), 400, 15, None),
            (json.dumps({"Resources": [iid], "MoveOriginatorID": "x"}).encode(), 400, 5, None),
            (json.dumps([iid, unknown]).encode(), 404, 17, None),
            (
                json.dumps({"Resources": [iid], "StorageCommitment": True}).encode(),
                500,
                9,
                'DicomAssociation - connecting to AET "STORESCP": '
                "the remote AET supports none of the requested services",
            ),  # storescp stores, but knows no storage commitment
        ]:
            error = assert_orthanc_error(c.post("/modalities/storescp/store", content=content), status)
            assert error["OrthancStatus"] == orthanc_status, (content, error)
            if details:
                assert error["Details"] == details
        error = assert_orthanc_error(
            c.post("/modalities/dead/store", content=iid), 500, "Error in the network protocol"
        )
        assert "DEAD" in error["Details"]


def test_store_straight(client: ServerProcess, storescp: tuple[int, Path]) -> None:
    path = sample("Formats", "Jpeg.dcm")
    original = pydicom.dcmread(path)
    r = client.post("/modalities/storescp/store-straight", content=path.read_bytes())
    assert r.json() == {"SOPClassUID": original.SOPClassUID, "SOPInstanceUID": original.SOPInstanceUID}
    assert (received(storescp[1])[original.SOPInstanceUID].pixel_array == original.pixel_array).all()
    assert study_id(client, original.StudyInstanceUID) is None  # not stored here
    for content in (b"garbage", b""):
        error = assert_orthanc_error(client.post("/modalities/storescp/store-straight", content=content), 400)
        assert error["OrthancStatus"] == 15


def test_store_to_an_isengard_peer(client: ServerProcess, pacs: ServerProcess) -> None:
    uids = {k: generate_uid() for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    data = dicom_variant(BRAINIX[0], PatientID="STORED", PatientName="STORED^COPY", **uids)
    instance = client.post("/instances", content=data).json()
    report = client.post("/modalities/pacs/store", content=instance["ID"]).json()
    assert (report["RemoteAet"], report["InstancesCount"], report["FailedInstancesCount"]) == ("PACS", 1, 0)
    assert same_dataset(pacs.get(f"/instances/{instance['ID']}/file").content, data)


# -- C-FIND ----------------------------------------------------------------------------------------------------
def test_deprecated_finds(client: ServerProcess) -> None:
    with client.client() as c:
        [patient] = c.post("/modalities/pacs/find-patient", json={"PatientName": "BRAIN*"}).json()
        assert patient["PatientID"] == "5Yp0E" and patient["QueryRetrieveLevel"] == "PATIENT"
        assert {"PatientName", "PatientBirthDate", "PatientSex"} <= set(patient)
        studies = c.post("/modalities/pacs/find-study", json={"PatientID": "TEST_1"}).json()
        assert sorted(s["StudyInstanceUID"] for s in studies) == ["1.2.3", "2.3.4"]
        assert {"StudyDate", "StudyDescription", "AccessionNumber"} <= set(studies[0])
        error = assert_orthanc_error(c.post("/modalities/pacs/find-study", json={"PatientID": "*"}), 400)
        assert error["OrthancStatus"] == 8  # a study search needs a real PatientID or AccessionNumber
        study_uid = pydicom.dcmread(BRAINIX[0]).StudyInstanceUID
        [series] = c.post(
            "/modalities/pacs/find-series", json={"PatientID": "5Yp0E", "StudyInstanceUID": study_uid}
        ).json()
        assert series["Modality"] == "MR"
        query = {"PatientID": "5Yp0E", "StudyInstanceUID": study_uid, "SeriesInstanceUID": series["SeriesInstanceUID"]}
        instances = c.post("/modalities/pacs/find-instance", json=query).json()
        assert len(instances) == 3
        [tree] = c.post("/modalities/pacs/find", json={"PatientName": "BRAINIX"}).json()
        assert tree["Studies"][0]["Series"][0]["SeriesInstanceUID"] == series["SeriesInstanceUID"]
        assert (
            assert_orthanc_error(c.post("/modalities/pacs/find-patient", json={"Nope": "x"}), 400)["OrthancStatus"]
            == 27
        )
        assert assert_orthanc_error(c.post("/modalities/pacs/find-patient", json=[]), 400)["OrthancStatus"] == 15


def new_query(c: httpx.Client, body: dict[str, Any], modality: str = "pacs") -> str:
    r = c.post(f"/modalities/{modality}/query", json=body)
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["Path"] == f"/queries/{created['ID']}"
    return str(created["ID"])


def test_query_and_its_answers(client: ServerProcess) -> None:
    with client.client() as c:
        qid = new_query(c, {"Level": "Study", "Query": {"PatientID": "TEST_1", "StudyDescription": ""}})
        assert qid in c.get("/queries").json()
        assert c.get(f"/queries/{qid}").json() == ["answers", "level", "modality", "query", "retrieve"]
        assert c.get(f"/queries/{qid}/answers").json() == ["0", "1"]
        full = c.get(f"/queries/{qid}/answers?expand").json()
        assert {a["0020,000d"]["Value"] for a in full} == {"1.2.3", "2.3.4"}
        assert full[0]["0020,000d"] == {
            "Name": "StudyInstanceUID",
            "Type": "String",
            "Value": full[0]["0020,000d"]["Value"],
        }
        simplified = c.get(f"/queries/{qid}/answers?expand&simplify").json()
        assert {a["StudyDescription"] for a in simplified} == {"Test CT", "Test CT 2"}
        assert list(simplified[0]) == sorted(simplified[0])
        short = c.get(f"/queries/{qid}/answers/1/content?short").json()
        assert short["0008,0052"] == "STUDY" and short["0010,0020"] == "TEST_1"
        assert c.get(f"/queries/{qid}/answers/0/content?simplify").json() == simplified[0]
        assert c.get(f"/queries/{qid}/answers/0").json() == ["content", "retrieve", "query-series", "query-instances"]
        assert c.get(f"/queries/{qid}/level").text == "Study"
        assert c.get(f"/queries/{qid}/modality").text == "pacs"
        assert c.get(f"/queries/{qid}/query?simplify").json() == {"PatientID": "TEST_1", "StudyDescription": ""}
        assert c.get(f"/queries/{qid}/query").json()["0010,0020"]["Value"] == "TEST_1"
        assert assert_orthanc_error(c.get(f"/queries/{qid}/answers/x/content"), 400)["OrthancStatus"] == 5
        assert assert_orthanc_error(c.get(f"/queries/{qid}/answers/2/content"), 400)["OrthancStatus"] == 3
        assert c.delete(f"/queries/{qid}").status_code == 200
        assert assert_orthanc_error(c.get(f"/queries/{qid}/level"), 404)["OrthancStatus"] == 17
        assert c.delete(f"/queries/{qid}").status_code == 200  # as Orthanc: forgetting twice is fine


def test_query_bad_bodies(client: ServerProcess) -> None:
    with client.client() as c:
        for body, orthanc_status, details in [
            ({"Query": {}}, 15, "The JSON body must contain field Level"),
            ({"Level": "Nope"}, 3, None),
            ({"Level": "Study", "Query": []}, 15, "The field Query must contain a JSON object"),
            ({"Level": "Study", "Query": {"Nope": "x"}}, 15, None),
            ({"Level": "Study", "Query": {"PatientName": 3}}, 15, None),
            ({"Level": "Study", "Normalize": "x"}, 15, "The field Normalize must contain a Boolean"),
            ([], 15, "Must provide a JSON object"),
        ]:
            error = assert_orthanc_error(c.post("/modalities/pacs/query", json=body), 400)
            assert error["OrthancStatus"] == orthanc_status, body
            if details:
                assert error["Details"] == details


def test_child_queries(client: ServerProcess) -> None:
    with client.client() as c:
        patients = new_query(c, {"Level": "Patient", "Query": {"PatientID": "TEST_1"}})
        operations = c.get(f"/queries/{patients}/answers/0").json()
        assert operations == ["content", "retrieve", "query-studies", "query-series", "query-instances"]
        r = c.post(f"/queries/{patients}/answers/0/query-studies", json={"Query": {"StudyDescription": "*CT 2"}})
        studies = r.json()["ID"]
        assert c.get(f"/queries/{studies}/level").text == "Study"
        assert c.get(f"/queries/{studies}/query?simplify").json() == {
            "PatientID": "TEST_1",
            "StudyDescription": "*CT 2",
        }
        [study] = c.get(f"/queries/{studies}/answers?expand&simplify").json()
        assert study["StudyInstanceUID"] == "2.3.4"
        series = c.post(f"/queries/{studies}/answers/0/query-series", json={}).json()["ID"]
        instances = c.post(f"/queries/{series}/answers/0/query-instances", json={"Query": {}}).json()["ID"]
        [instance] = c.get(f"/queries/{instances}/answers?expand&simplify").json()
        assert instance["SOPInstanceUID"] == pydicom.dcmread(TEST_1[1]).SOPInstanceUID
        assert c.get(f"/queries/{instances}/answers/0").json() == ["content", "retrieve"]
        assert assert_orthanc_error(c.post(f"/queries/{instances}/answers/0/query-series", json={}), 404)
        error = assert_orthanc_error(c.post(f"/queries/{series}/answers/0/query-instances", content=b"x"), 400)
        assert error["OrthancStatus"] == 15
        # QueryRetrieveSize is 4: the oldest of these five queries is gone
        new_query(c, {"Level": "Patient", "Query": {}})
        assert patients not in c.get("/queries").json() and len(c.get("/queries").json()) == 4
        assert_orthanc_error(c.get(f"/queries/{patients}"), 404)


# -- C-MOVE and C-GET ------------------------------------------------------------------------------------------
def test_query_then_retrieve_into_this_server(client: ServerProcess, pacs: ServerProcess) -> None:
    forget_study(client, "2.3.4")
    with client.client() as c:
        qid = new_query(c, {"Level": "Study", "Query": {"StudyInstanceUID": "2.3.4"}})
        report = c.post(f"/queries/{qid}/retrieve", content=b"").json()
        assert report == {
            "Description": "REST API",
            "LocalAet": "CLIENT",
            "Query": [{"0008,0050": "2345", "0008,0052": "STUDY", "0010,0020": "TEST_1", "0020,000d": "2.3.4"}],
            "RemoteAet": "PACS",
        }
        local = study_id(client, "2.3.4")
        assert local == study_id(pacs, "2.3.4")
        [instance] = c.get(f"/studies/{local}/instances").json()
        assert same_dataset(c.get(f"/instances/{instance['ID']}/file").content, TEST_1[1].read_bytes())
        full = c.post(f"/queries/{qid}/answers/0/retrieve", json={"TargetAet": "CLIENT", "Full": True}).json()
        assert full["Query"][0]["0020,000d"] == {"Name": "StudyInstanceUID", "Type": "String", "Value": "2.3.4"}
        simple = c.post(f"/queries/{qid}/answers/0/retrieve", content=b"CLIENT").json()
        assert simple["Query"] == report["Query"]
        # the PACS does not know this AET: it refuses the move
        error = assert_orthanc_error(c.post(f"/queries/{qid}/retrieve", content=b"NOBODY"), 500)
        assert error["OrthancStatus"] == 9 and "C-MOVE" in error["Details"]
        assert_orthanc_error(c.post(f"/queries/{qid}/answers/7/retrieve", json={}), 400)


def test_move_and_get(client: ServerProcess, pacs: ServerProcess) -> None:
    first = pydicom.dcmread(COMUNIX[0], stop_before_pixels=True)
    study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    forget_study(client, study_uid)
    with client.client() as c:
        body = {"Level": "Series", "Resources": [{"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}]}
        assert c.post("/modalities/pacs/move", json=body).json() == {}
        assert len(c.get(f"/studies/{study_id(client, study_uid)}/instances").json()) == 2
        forget_study(client, study_uid)
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": study_uid}]}
        report = c.post("/modalities/pacs/get", json=body).json()
        assert report == {
            "Description": "REST API",
            "LocalAet": "CLIENT",
            "Query": [{"0008,0052": "STUDY", "0020,000d": study_uid}],
            "RemoteAet": "PACS",
        }
        instances = c.get(f"/studies/{study_id(client, study_uid)}/instances").json()
        assert len(instances) == 2
        # C-GET takes the files as the peer sends them: still JPEG 2000
        syntax = c.get(f"/instances/{instances[0]['ID']}/metadata/TransferSyntax").text
        assert syntax == first.file_meta.TransferSyntaxUID
        for body, status, orthanc_status in [
            ([], 400, 15),
            ({"Level": "Study"}, 400, 15),
            ({"Level": "Nope", "Resources": []}, 400, 3),
            ({"Level": "Patient", "Resources": [{"Bad": "1"}]}, 400, 27),
            ({"Level": "Patient", "Resources": ["abc"]}, 400, 15),
            ({"Level": "Instance", "Resources": [{"SOPInstanceUID": "1.2"}]}, 400, 8),
        ]:
            for route in ("move", "get"):
                error = assert_orthanc_error(c.post(f"/modalities/pacs/{route}", json=body), status)
                assert error["OrthancStatus"] == orthanc_status, (route, body)
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": "1"}], "TargetAet": 3}
        assert assert_orthanc_error(c.post("/modalities/pacs/move", json=body), 400)["OrthancStatus"] == 5


def test_unreachable_peer(client: ServerProcess) -> None:
    with client.client() as c:
        for route, body in [
            ("query", {"Level": "Study", "Query": {}}),
            ("find-patient", {}),
            ("move", {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2"}]}),
            ("get", {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2"}]}),
        ]:
            error = assert_orthanc_error(c.post(f"/modalities/dead/{route}", json=body), 500)
            assert error["OrthancStatus"] == 9 and "TCP Initialization Error" in error["Details"]


def test_a_peer_that_stops_answering(client: ServerProcess) -> None:
    """A C-FIND the peer never answers ends after the modality's Timeout, and the server goes on serving."""
    release = threading.Event()

    def slow_find(event: evt.Event) -> Iterator[tuple[int, Any]]:
        release.wait(20)
        yield 0x0000, None

    ae = AE("SLOW")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, slow_find)])
    try:
        with client.client() as c:
            c.put("/modalities/slow", json={"AET": "SLOW", "Host": "127.0.0.1", "Port": port, "Timeout": 1})
            started = time.monotonic()
            error = assert_orthanc_error(c.post("/modalities/slow/query", json={"Level": "Study"}), 500)
            assert time.monotonic() - started < 7  # Timeout 1, with room for a loaded machine
            assert error["OrthancStatus"] == 9
            assert c.get("/system").status_code == 200
            c.delete("/modalities/slow")
    finally:
        release.set()
        server.shutdown()


# -- a scratch Orthanc -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, peers: tuple[ServerProcess, ServerProcess]) -> Iterator[str]:
    """An Orthanc of our own that knows the client, holding TEST_1; yields its REST URL."""
    config = {
        "Name": "Scratch",
        "DicomAet": "SCRATCH",
        "DicomModalities": {"client": ["CLIENT", "127.0.0.1", peers[0].config["DicomPort"]]},
    }
    with reference_orthanc(tmp_path_factory.mktemp("orthanc"), config) as o:
        for path in TEST_1:
            httpx.post(f"{o.url}/instances", content=path.read_bytes()).raise_for_status()
        peers[0].client().put("/modalities/orthanc", json=["SCRATCH", "127.0.0.1", o.dicom_port])
        yield o.url


def test_orthanc_as_peer(client: ServerProcess, orthanc: str) -> None:
    with client.client() as c:
        assert c.post("/modalities/orthanc/echo", json={}).json() == {}
        studies = c.post("/modalities/orthanc/find-study", json={"PatientID": "TEST_1"}).json()
        assert sorted(s["StudyInstanceUID"] for s in studies) == ["1.2.3", "2.3.4"]
        assert {s["RetrieveAETitle"] for s in studies} == {"SCRATCH"}
        qid = new_query(c, {"Level": "Series", "Query": {"StudyInstanceUID": "1.2.3", "Modality": ""}}, "orthanc")
        [series] = c.get(f"/queries/{qid}/answers?expand&simplify").json()
        assert series["Modality"] == "CT"
        forget_study(client, "1.2.3")
        report = c.post(f"/queries/{qid}/retrieve", json={"TargetAet": "CLIENT"}).json()
        assert report["RemoteAet"] == "SCRATCH"
        local = study_id(client, "1.2.3")
        assert local is not None
        [instance] = c.get(f"/studies/{local}/instances").json()
        assert instance["MainDicomTags"]["SOPInstanceUID"] == pydicom.dcmread(TEST_1[0]).SOPInstanceUID
