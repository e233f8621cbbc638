"""STOW-RS with dicomweb-client's store_instances, statuses and failure reasons with httpx; configuration."""

from __future__ import annotations

import io

import httpx
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from isengard.testing import ServerProcess, assert_orthanc_error, dicom_variant, sample

BOUNDARY = "a1b2c3"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _new_instance(study: str | None = None) -> bytes:
    """A real file made a new instance (new series and SOP instance UIDs, the study given or a new one)."""
    path = sorted(sample("Comunix", "Ct").glob("*.dcm"))[0]
    return dicom_variant(
        path,
        StudyInstanceUID=study or generate_uid(),
        SeriesInstanceUID=generate_uid(),
        SOPInstanceUID=generate_uid(),
    )


def _body(*parts: bytes, part_type: str = "application/dicom") -> bytes:
    chunks = [f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + p + b"\r\n" for p in parts]
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def server(module_server: ServerProcess) -> ServerProcess:
    """One server for the module: every test stores instances of new studies, so none sees another's."""
    return module_server


def _count(server: ServerProcess, study: str) -> int:
    return len(server.get(f"/dicom-web/studies/{study}/instances").json())


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def test_store_instances_with_dicomweb_client(server: ServerProcess) -> None:
    client = DICOMwebClient(url=f"{server.url}/dicom-web")
    study = generate_uid()
    first, second = _new_instance(study), _new_instance(study)
    result = client.store_instances([_read(first), _read(second)])
    stored = {str(item.ReferencedSOPInstanceUID) for item in result.ReferencedSOPSequence}
    assert stored == {str(_read(first).SOPInstanceUID), str(_read(second).SOPInstanceUID)}
    assert "FailedSOPSequence" not in result or not result.FailedSOPSequence
    assert _count(server, study) == 2
    found = client.search_for_instances(search_filters={"SOPInstanceUID": str(_read(first).SOPInstanceUID)})
    assert len(found) == 1


def test_store_answers_references_with_retrieve_urls(server: ServerProcess) -> None:
    data = _new_instance()
    ds = _read(data)
    r = server.post("/dicom-web/studies", content=_body(data), headers={"Content-Type": MULTIPART})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/dicom+json"
    body = r.json()
    assert body["00081190"]["Value"] == [f"{server.url}/dicom-web/studies/{ds.StudyInstanceUID}"]
    (item,) = body["00081199"]["Value"]
    assert item["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert item["00081150"]["Value"] == [ds.SOPClassUID]
    assert item["00081190"]["Value"][0].endswith(f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")
    assert body["00081198"] == {"vr": "SQ"}


def test_partial_failure_is_202_and_total_failure_409(server: ServerProcess) -> None:
    study = generate_uid()
    good, other_study = _new_instance(study), _new_instance()
    r = server.post(
        f"/dicom-web/studies/{study}",
        content=_body(good, other_study, b"not dicom"),
        headers={"Content-Type": MULTIPART},
    )
    assert r.status_code == 202
    body = r.json()
    assert len(body["00081199"]["Value"]) == 1
    reasons = sorted(item["00081197"]["Value"][0] for item in body["00081198"]["Value"])
    assert reasons == [0x0110, 0xC000]  # another study: processing failure (as Orthanc); not DICOM: cannot understand
    r = server.post(f"/dicom-web/studies/{study}", content=_body(other_study), headers={"Content-Type": MULTIPART})
    assert r.status_code == 409
    assert _count(server, study) == 1


def test_chunked_body_is_stored_part_by_part(server: ServerProcess) -> None:
    """A chunked body (no Content-Length) in small pieces: each part is found across chunk edges."""
    study = generate_uid()
    body = _body(*(_new_instance(study) for _ in range(3)))

    def pieces():  # 1000-byte chunks split the delimiters and headers anywhere
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    r = server.post("/dicom-web/studies", content=pieces(), headers={"Content-Type": MULTIPART})
    assert r.status_code == 200, r.text
    assert len(r.json()["00081199"]["Value"]) == 3
    assert _count(server, study) == 3


def test_truncated_body_keeps_the_whole_parts(server: ServerProcess) -> None:
    study = generate_uid()
    whole = _body(_new_instance(study), _new_instance(study))
    cut = whole[: len(whole) - 2000]  # the second part loses its end and the close delimiter
    r = server.post("/dicom-web/studies", content=cut, headers={"Content-Type": MULTIPART})
    assert r.status_code == 202
    body = r.json()
    assert len(body["00081199"]["Value"]) == 1
    assert [item["00081197"]["Value"] for item in body["00081198"]["Value"]] == [[0xC000]]
    assert _count(server, study) == 1
    # no delimiter at all: a 400, nothing stored
    assert_orthanc_error(
        server.post("/dicom-web/studies", content=_new_instance(study), headers={"Content-Type": MULTIPART}), 400
    )
    assert _count(server, study) == 1


def test_store_needs_multipart_related_dicom(server: ServerProcess) -> None:
    data = _new_instance()
    assert_orthanc_error(
        server.post("/dicom-web/studies", content=data, headers={"Content-Type": "application/dicom"}), 415
    )
    wrong_type = 'multipart/related; type="application/dicom+json"; boundary=x'
    assert_orthanc_error(server.post("/dicom-web/studies", content=data, headers={"Content-Type": wrong_type}), 415)
    client = DICOMwebClient(url=f"{server.url}/dicom-web")
    with pytest.raises(requests.HTTPError):
        client.store_instances([_read(data)], study_instance_uid=generate_uid())  # 409 raises in the client


def test_root_and_enable_options(isengard: object) -> None:
    moved = isengard({"DicomWeb": {"Root": "/dicomweb", "WadoRoot": "/wado-uri/"}})  # type: ignore[operator]
    assert moved.get("/dicomweb/studies").json() == []
    assert moved.get("/dicom-web/studies").status_code == 404
    assert moved.get("/wado-uri", params={"requestType": "WADO", "objectUID": "1.2"}).status_code == 404  # unknown UID
    off = isengard({"DicomWeb": {"Enable": False, "EnableWado": False}})  # type: ignore[operator]
    assert off.get("/dicom-web/studies").status_code == 404
    assert off.get("/wado", params={"requestType": "WADO", "objectUID": "1.2"}).status_code == 404
    host = isengard({"DicomWeb": {"Host": "pacs.example.org", "Ssl": True}})  # type: ignore[operator]
    data = _new_instance()
    r = host.post("/dicom-web/studies", content=_body(data), headers={"Content-Type": MULTIPART})
    assert r.json()["00081190"]["Value"][0].startswith("https://pacs.example.org/dicom-web/studies/")


def test_forwarded_header_names_the_public_host(server: ServerProcess) -> None:
    data = _new_instance()
    headers = {"Content-Type": MULTIPART, "Forwarded": 'for=1.2.3.4;host="proxy.example.org:8443";proto=https'}
    r = server.post("/dicom-web/studies", content=_body(data), headers=headers)
    assert r.json()["00081190"]["Value"][0].startswith("https://proxy.example.org:8443/dicom-web/studies/")


def test_routes_require_the_servers_credentials(isengard: object) -> None:
    secured = isengard({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})  # type: ignore[operator]
    assert_orthanc_error(httpx.get(f"{secured.url}/dicom-web/studies"), 401)
    session = requests.Session()
    session.auth = ("alice", "secret")
    assert DICOMwebClient(url=f"{secured.url}/dicom-web", session=session).search_for_studies() == []
