"""The DICOMweb client (``/dicom-web/servers/...``): one Isengard server talking to another over DICOMweb.

The remote server wants HTTP Basic credentials, which the local one has in its ``DicomWeb.Servers``; instances
must arrive byte for byte (STOW-RS sends the stored files, WADO-RS asks for ``transfer-syntax=*``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from isengard.testing import (
    ServerProcess,
    assert_orthanc_error,
    free_port,
    sample,
    self_signed_certificate,
    wait_job,
)

USER, PASSWORD = "alice", "wonderland"
#: Brainix: one study, two MR series of 22 instances each.
FILES = sorted(sample("Brainix").rglob("*.dcm"))

Factory = Callable[..., ServerProcess]


def _pair(isengard: Factory, **servers: Any) -> tuple[ServerProcess, ServerProcess]:
    """(local, remote): the local server knows the remote one as "remote", plus ``servers``."""
    remote = isengard({"AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}}, name="remote")
    definitions = {"remote": [f"{remote.url}/dicom-web/", USER, PASSWORD], **servers}
    local = isengard({"DicomWeb": {"Servers": definitions}}, name="local")
    return local, remote


def _files(server: ServerProcess, instances: list[str]) -> dict[str, bytes]:
    with server.client() as c:
        return {i: c.get(f"/instances/{i}/file").content for i in instances}


def _series_of(server: ServerProcess) -> dict[str, list[str]]:
    """SeriesInstanceUID: the instances of that series."""
    with server.client() as c:
        out = {}
        for series in c.get("/series", params={"expand": ""}).json():
            out[series["MainDicomTags"]["SeriesInstanceUID"]] = series["Instances"]
        return out


def test_servers_come_from_the_configuration_and_rest_and_survive_a_restart(isengard: Factory) -> None:
    described = {
        "Url": "http://192.0.2.1/dicom-web",
        "Username": "bob",
        "Password": "secret",
        "HttpHeaders": {"Authorization": "Bearer x"},
        "HasDelete": True,
    }
    local, remote = _pair(isengard, described=described)
    with local.client() as c:
        assert c.get("/dicom-web/servers").json() == ["described", "remote"]
        expanded = c.get("/dicom-web/servers", params={"expand": ""}).json()
        assert expanded["remote"] == {
            "HttpHeaders": [],
            "Password": None,
            "Pkcs11": False,
            "Timeout": 0,
            "Url": f"{remote.url}/dicom-web/",
            "Username": USER,
        }
        assert expanded["described"]["HttpHeaders"] == ["Authorization"]
        assert expanded["described"]["HasDelete"] is True
        assert expanded["described"]["Url"] == "http://192.0.2.1/dicom-web/"
        assert c.get("/dicom-web/servers/remote").json() == ["get", "post", "retrieve", "stow"]

        assert c.put("/dicom-web/servers/added", json={"Url": "http://192.0.2.2/dw", "Timeout": 5}).json() == {}
        assert c.put("/dicom-web/servers/short", json=["http://192.0.2.3/dw/"]).status_code == 200
        assert c.delete("/dicom-web/servers/described").json() == {}
        assert_orthanc_error(c.put("/dicom-web/servers/bad", json={"Url": "ftp://x"}), 400, "Bad file format")
        body = assert_orthanc_error(c.get("/dicom-web/servers/nope"), 404, "Accessing an inexistent item")
        assert body["Details"] == "Inexistent server: nope"
        body = assert_orthanc_error(c.delete("/dicom-web/servers/nope"), 404, "Accessing an inexistent item")
        assert body["Details"] == "Inexistent server: nope"
        assert_orthanc_error(c.post("/dicom-web/servers/nope/get", json={"Uri": "/studies"}), 404)
        assert_orthanc_error(c.post("/dicom-web/servers/nope/stow", json={"Resources": []}), 404)

    local.restart()
    with local.client() as c:
        assert c.get("/dicom-web/servers").json() == ["added", "remote", "short"]
        expanded = c.get("/dicom-web/servers", params={"expand": ""}).json()
        assert expanded["added"]["Timeout"] == 5
        assert expanded["short"]["Url"] == "http://192.0.2.3/dw/"


def test_get_and_post_proxy_qido_rs_with_the_servers_credentials(isengard: Factory) -> None:
    local, remote = _pair(isengard)
    remote.upload(*FILES)
    study = study_uid(FILES[0])
    with local.client() as c:
        r = c.post("/dicom-web/servers/remote/get", json={"Uri": "/studies"})
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("application/dicom+json")
        assert [s["0020000D"]["Value"] for s in r.json()] == [[study]]

        found = c.post(
            "/dicom-web/servers/remote/get",
            json={"Uri": f"/studies/{study}/series", "Arguments": {"Modality": "MR"}},
        ).json()
        assert len(found) == 2
        limited = c.post(
            "/dicom-web/servers/remote/get", json={"Uri": "/series?Modality=MR", "Arguments": {"limit": "1"}}
        ).json()
        assert len(limited) == 1
        nothing = c.post(
            "/dicom-web/servers/remote/get", json={"Uri": "/studies?PatientName=NOBODY", "Arguments": {}}
        ).json()
        assert nothing == []

        wado = c.post(
            "/dicom-web/servers/remote/get",
            json={"Uri": f"/studies/{study}/metadata", "HttpHeaders": {"Accept": "application/dicom+json"}},
        )
        assert len(wado.json()) == len(FILES)

        unknown = c.post("/dicom-web/servers/remote/get", json={"Uri": "/studies/1.2.3/metadata"})
        assert_orthanc_error(unknown, 404, "Unknown resource")

        # STOW-RS through /post: a body that is no multipart is refused by the remote (415: a network error)
        refused = c.post("/dicom-web/servers/remote/post", json={"Uri": "/studies", "Body": "{}"})
        assert_orthanc_error(refused, 500, "Error in the network protocol")


def study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.parametrize("chunked", [True, False])
def test_stow_sends_the_files_as_stored_inline_and_as_a_job(isengard: Factory, chunked: bool) -> None:
    local, remote = _pair(isengard)
    uploaded = local.upload(*FILES)
    if not chunked:
        definition = {"Url": f"{remote.url}/dicom-web/", "Username": USER, "Password": PASSWORD}
        local.client().put("/dicom-web/servers/remote", json={**definition, "ChunkedTransfers": False})
    by_series = _series_of(local)
    first_series, first = next(iter(by_series.items()))
    series_id = uploaded[[u["ID"] for u in uploaded].index(first[0])]["ParentSeries"]
    with local.client() as c:
        r = c.post("/dicom-web/servers/remote/stow", json={"Resources": [series_id]})
        assert r.status_code == 200, r.text
        sent = _files(local, first)
        megabytes = sum(len(data) for data in sent.values()) // (1024 * 1024)
        assert r.json() == {"InstancesCount": str(len(first)), "NetworkSizeMB": str(megabytes)}
    assert _files(remote, first) == sent
    assert set(_series_of(remote)) == {first_series}

    study = uploaded[0]["ParentStudy"]
    with local.client() as c:
        job = c.post("/dicom-web/servers/remote/stow", json={"Resources": [study], "Asynchronous": True}).json()
        assert job["Path"] == f"/jobs/{job['ID']}"
        done = wait_job(c, job["ID"])
    assert done["State"] == "Success", done
    assert done["Type"] == "DicomWebStowClient"
    assert done["Content"]["InstancesCount"] == str(len(FILES))
    everything = [u["ID"] for u in uploaded]
    assert _files(remote, everything) == _files(local, everything)


def test_stow_of_an_unknown_resource_is_a_404(isengard: Factory) -> None:
    local, _ = _pair(isengard)
    unknown = "-".join(["12345678"] * 5)
    r = local.post("/dicom-web/servers/remote/stow", json={"Resources": [unknown]})
    assert_orthanc_error(r, 404, "Unknown resource")


def test_retrieve_a_series_inline_and_a_study_as_a_job(isengard: Factory) -> None:
    local, remote = _pair(isengard)
    uploaded = remote.upload(*FILES)
    study = study_uid(FILES[0])
    by_series = _series_of(remote)
    series_uids = list(by_series)
    with local.client() as c:
        r = c.post(
            "/dicom-web/servers/remote/retrieve",
            json={"Resources": [{"Study": study, "Series": series_uids[0]}]},
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["ReceivedInstancesCount"] == str(len(by_series[series_uids[0]]))
        assert sorted(answer["Instances"]) == sorted(by_series[series_uids[0]])
        assert set(c.get("/instances").json()) == set(by_series[series_uids[0]])
        assert c.get(f"/instances/{answer['Instances'][0]}/metadata/Origin").text == "Plugins"

        job = c.post(
            "/dicom-web/servers/remote/retrieve",
            json={"Resources": [{"Study": study}], "Synchronous": False},
        ).json()
        done = wait_job(c, job["ID"])
    assert done["State"] == "Success", done
    assert done["Type"] == "DicomWebWadoRetrieveClient"
    assert done["Content"]["ReceivedInstancesCount"] == str(len(FILES))
    everything = [u["ID"] for u in uploaded]
    assert _files(local, everything) == _files(remote, everything)

    with local.client() as c:
        unknown = c.post("/dicom-web/servers/remote/retrieve", json={"Resources": [{"Study": "1.2.3"}]})
        assert_orthanc_error(unknown, 404, "Unknown resource")
        assert_orthanc_error(c.post("/dicom-web/servers/remote/retrieve", json={"Resources": [{}]}), 400)


def test_an_unreachable_server_is_a_network_error(isengard: Factory) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/dicom-web/"
    local, _ = _pair(isengard, nowhere=[nowhere])
    instance = local.upload(FILES[0])[0]["ID"]
    network = "Error in the network protocol"
    with local.client() as c:
        assert_orthanc_error(c.post("/dicom-web/servers/nowhere/get", json={"Uri": "/studies"}), 500, network)
        assert_orthanc_error(c.post("/dicom-web/servers/nowhere/stow", json={"Resources": [instance]}), 500, network)
        r = c.post("/dicom-web/servers/nowhere/retrieve", json={"Resources": [{"Study": "1.2.3"}]})
        assert_orthanc_error(r, 500, network)
        job = c.post("/dicom-web/servers/nowhere/stow", json={"Resources": [instance], "Synchronous": False}).json()
        failed = wait_job(c, job["ID"])
    assert failed["State"] == "Failure"
    assert failed["ErrorCode"] == 9


def test_wrong_credentials_are_orthancs_unauthorized(isengard: Factory) -> None:
    local, remote = _pair(isengard)
    with local.client() as c:
        c.put("/dicom-web/servers/remote", json=[f"{remote.url}/dicom-web/", USER, "wrong"])
        r = c.post("/dicom-web/servers/remote/get", json={"Uri": "/studies"})
    assert_orthanc_error(r, 401)


def test_https_servers_are_checked_against_the_trusted_authorities(isengard: Factory, tmp_path: Path) -> None:
    pem, cert = self_signed_certificate(tmp_path)
    secure = isengard({"SslEnabled": True, "SslCertificate": str(pem)}, name="secure")
    servers = {"secure": [f"{secure.url}/dicom-web/"]}
    trusting = isengard({"HttpsCACertificates": str(cert), "DicomWeb": {"Servers": servers}}, name="trusting")
    wary = isengard({"DicomWeb": {"Servers": servers}}, name="wary")
    careless = isengard({"HttpsVerifyPeers": False, "DicomWeb": {"Servers": servers}}, name="careless")
    secure.upload(FILES[0])
    for server in (trusting, careless):
        r = server.post("/dicom-web/servers/secure/get", json={"Uri": "/studies"})
        assert r.status_code == 200, r.text
        assert len(r.json()) == 1
    refused = wary.post("/dicom-web/servers/secure/get", json={"Uri": "/studies"})
    assert_orthanc_error(refused, 500, "Error in the network protocol")


def test_a_paused_retrieve_job_goes_on_when_resumed(isengard: Factory) -> None:
    local, remote = _pair(isengard)
    uploaded = remote.upload(*FILES)
    series = list(_series_of(remote))
    resources = [{"Study": study_uid(FILES[0]), "Series": series}]
    with local.client() as c:
        job = c.post("/dicom-web/servers/remote/retrieve", json={"Resources": resources, "Asynchronous": True}).json()
        assert c.post(f"/jobs/{job['ID']}/pause", json={}).status_code == 200
        paused = wait_job(c, job["ID"], "Paused", "Success")
        if paused["State"] == "Paused":
            assert c.post(f"/jobs/{job['ID']}/resume", json={}).status_code == 200
        done = wait_job(c, job["ID"])
    assert done["State"] == "Success", done
    assert done["Content"]["ReceivedInstancesCount"] == str(len(FILES))
    everything = [u["ID"] for u in uploaded]
    assert _files(local, everything) == _files(remote, everything)
