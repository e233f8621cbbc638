"""Deletion over DICOMweb: the DELETE routes of the server, and the client's ``servers/{name}/delete``.

The client's requests and errors are those Orthanc's plugin 1.7 sends and answers (checked against Debian's
orthanc-dicomweb); the server side, which that plugin lacks (405), answers 204 as other DICOMweb servers do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from isengard.testing import ServerProcess, assert_orthanc_error, sample

#: Brainix: one study, two MR series of 22 instances each.
FILES = sorted(sample("Brainix").rglob("*.dcm"))
#: The remote refuses the deletion of instances (the kernel's authorize hook, here through Lua).
FILTER = """
function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  return not (method == 'DELETE' and string.find(uri, '/instances/', 1, true))
end
"""

Factory = Callable[..., ServerProcess]


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _by_series(server: ServerProcess) -> dict[str, int]:
    with server.client() as c:
        found = c.get("/series", params={"expand": ""}).json()
    return {s["MainDicomTags"]["SeriesInstanceUID"]: len(s["Instances"]) for s in found}


def _deleted_changes(server: ServerProcess) -> Counter[str]:
    """How many resources of each level the kernel's deletion reported (the events a DELETE must cause)."""
    with server.client() as c:
        changes = c.get("/changes", params={"limit": 1000}).json()["Changes"]
    return Counter(change["ResourceType"] for change in changes if change["ChangeType"] == "Deleted")


@pytest.fixture
def pair(isengard: Factory, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    """(local, remote): the local server knows the remote one as "remote" (HasDelete) and "readonly" (without)."""
    script = tmp_path / "filter.lua"
    script.write_text(FILTER)
    remote = isengard({"LuaScripts": [str(script)]}, name="remote")
    remote.upload(*FILES)
    url = f"{remote.url}/dicom-web/"
    servers = {"remote": {"Url": url, "HasDelete": True}, "readonly": [url]}
    return isengard({"DicomWeb": {"Servers": servers}}, name="local"), remote


def test_the_client_deletes_remote_series_and_studies(pair: tuple[ServerProcess, ServerProcess]) -> None:
    local, remote = pair
    study, series, _ = _uids(FILES[0])
    other = next(s for s in _by_series(remote) if s != series)
    with local.client() as c:
        assert c.get("/dicom-web/servers/remote").json() == ["get", "post", "retrieve", "stow", "delete"]
        assert c.get("/dicom-web/servers/readonly").json() == ["get", "post", "retrieve", "stow"]
        body = {"Level": "Series", "StudyInstanceUID": study, "SeriesInstanceUID": series}
        r = c.post("/dicom-web/servers/remote/delete", json=body)
        assert r.status_code == 200 and r.json() == {}
        assert _by_series(remote) == {other: 22}
        assert _deleted_changes(remote) == {"Series": 1, "Instance": 22}
        # the remote's 404 is Orthanc's Unknown resource, as Orthanc's plugin answers it
        assert_orthanc_error(c.post("/dicom-web/servers/remote/delete", json=body), 404, "Unknown resource")
        # the remote's authorize hook refuses instances: its 403 is a network error, as in Orthanc's plugin
        body = {"Level": "instance", "StudyInstanceUID": study, "SeriesInstanceUID": other, "SOPInstanceUID": "1.2"}
        assert_orthanc_error(c.post("/dicom-web/servers/remote/delete", json=body), 500)
        body = {"Level": "Study", "StudyInstanceUID": study}
        assert c.post("/dicom-web/servers/remote/delete", json=body).json() == {}
    assert _by_series(remote) == {}
    with remote.client() as c:
        assert c.get("/patients").json() == []


@pytest.mark.parametrize(
    ("server", "body", "status", "error"),
    [
        ("readonly", {"Level": "Study", "StudyInstanceUID": "1.2"}, 400, "Bad file format"),
        ("unknown", {"Level": "Study", "StudyInstanceUID": "1.2"}, 404, "Accessing an inexistent item"),
        ("remote", {"Level": "Series", "StudyInstanceUID": "1.2"}, 400, "Bad file format"),
        ("remote", {"StudyInstanceUID": "1.2"}, 400, "Bad file format"),
        ("remote", ["Study"], 400, "Bad file format"),
        ("remote", {"Level": "Patient", "StudyInstanceUID": "1.2"}, 400, "Parameter out of range"),
    ],
)
def test_bad_client_deletions_are_orthancs_errors(
    pair: tuple[ServerProcess, ServerProcess], server: str, body: object, status: int, error: str
) -> None:
    local, remote = pair
    with local.client() as c:
        assert_orthanc_error(c.post(f"/dicom-web/servers/{server}/delete", json=body), status, error)
    assert sum(_by_series(remote).values()) == len(FILES)


def test_dicomweb_client_deletes_instances_series_and_studies(isengard: Factory) -> None:
    server = isengard()
    server.upload(*FILES)
    client = DICOMwebClient(url=f"{server.url}/dicom-web")
    study, series, instance = _uids(FILES[0])
    client.delete_instance(study, series, instance)
    assert _by_series(server)[series] == 21
    with pytest.raises(requests.HTTPError) as raised:
        client.delete_instance(study, series, instance)
    assert raised.value.response.status_code == 404
    client.delete_series(study, series)
    assert series not in _by_series(server)
    with server.client() as c:
        assert c.delete(f"/dicom-web/studies/{study}/series/1.2.3").status_code == 404
        r = c.delete(f"/dicom-web/studies/{study}")
        assert r.status_code == 204 and r.content == b""
        assert c.get("/studies").json() == []
    assert _deleted_changes(server) == {"Instance": len(FILES), "Series": 2, "Study": 1, "Patient": 1}
