"""Metadata and attachments as in Orthanc: user metadata (UserMetadata) and attachments (UserContentType) with
revisions (ETag "revision-MD5", If-Match, 409 on a stale one), the server's own that clients cannot write (403),
and the DICOM attachment compressed and uncompressed, with StorageCompression off and on: sizes and MD5 equal to
those the reference Orthanc gave (tests/reference/writes.json; zlib output is deterministic)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from isengard.testing import ServerProcess, sample

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from reference_data import comparable, load

CONFIG = {
    "UserMetadata": {"Sample": 1024, "Other": 1025},
    "UserContentType": {"report": 1030, "notes": [1031, "text/plain"]},
}
COMPRESSED = load("writes")["compressed"]


def md5(data: bytes | str) -> str:
    return hashlib.md5(data.encode() if isinstance(data, str) else data).hexdigest()


def etag(revision: int, content: bytes | str) -> str:
    return f'"{revision}-{md5(content)}"'


def assert_error(response: httpx.Response, http_status: int, orthanc_status: int) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert (body["HttpStatus"], body["OrthancStatus"]) == (http_status, orthanc_status), body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("metadata"), CONFIG).start()
    server.upload(*(sample(p) for p in COMPRESSED))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def instance(client: httpx.Client) -> str:
    return client.get("/instances").json()[0]


def test_metadata_revisions(client: httpx.Client, instance: str) -> None:
    url = f"/instances/{instance}/metadata/Sample"
    created = client.put(url, content=b"hello")
    assert (created.status_code, created.text, created.headers["ETag"]) == (200, "", etag(0, "hello"))
    for route in (url, f"/instances/{instance}/metadata/1024"):
        got = client.get(route)
        assert (got.text, got.headers["ETag"]) == ("hello", etag(0, "hello"))
    for stale in (etag(5, "hello"), etag(0, "other"), '"5"'):
        assert_error(client.put(url, content=b"x", headers={"If-Match": stale}), 409, 43)
    assert_error(client.put(url, content=b"x", headers={"If-Match": "garbage"}), 400, 3)
    updated = client.put(url, content=b"world", headers={"If-Match": created.headers["ETag"]})
    assert updated.headers["ETag"] == etag(1, "world")
    assert client.get(url).text == "world"
    book_style = client.put(url, content=b"again", headers={"If-Match": '"1"'})  # the revision alone, as documented
    assert book_style.headers["ETag"] == etag(2, "again")
    assert_error(client.delete(url, headers={"If-Match": updated.headers["ETag"]}), 409, 43)
    assert client.delete(url, headers={"If-Match": book_style.headers["ETag"]}).status_code == 200
    assert_error(client.get(url), 404, 17)
    assert client.delete(url).status_code == 200  # already absent: fine, as in Orthanc
    assert_error(client.delete(url, headers={"If-Match": etag(2, "again")}), 404, 17)


def test_metadata_listing_by_number(client: httpx.Client, instance: str) -> None:
    client.put(f"/instances/{instance}/metadata/Other", content=b"2")
    client.put(f"/instances/{instance}/metadata/Sample", content=b"1")
    names = client.get(f"/instances/{instance}/metadata").json()
    assert names[:3] == ["IndexInSeries", "ReceptionDate", "RemoteAET"]
    assert names[-2:] == ["Sample", "Other"]  # by number, as Orthanc lists them
    expanded = client.get(f"/instances/{instance}/metadata", params={"expand": ""}).json()
    assert list(expanded) == names
    assert (expanded["Sample"], expanded["Other"], expanded["Origin"]) == ("1", "2", "RestApi")
    assert client.get(f"/instances/{instance}/metadata/2").text == expanded["ReceptionDate"]
    assert client.get(f"/instances/{instance}/metadata/1025").text == "2"


@pytest.mark.parametrize("level", ["patients", "studies", "series"])
def test_metadata_on_every_level(client: httpx.Client, level: str) -> None:
    resource = client.get(f"/{level}").json()[0]
    assert client.put(f"/{level}/{resource}/metadata/Sample", content="é".encode()).status_code == 200
    got = client.get(f"/{level}/{resource}/metadata/Sample")
    assert (got.text, got.headers["ETag"]) == ("é", etag(0, "é"))
    assert client.get(f"/{level}/{resource}/metadata", params={"expand": ""}).json()["Sample"] == "é"


def test_server_metadata_cannot_be_written(client: httpx.Client, instance: str) -> None:
    for name in ("ReceptionDate", "1023", "70000"):
        assert_error(client.put(f"/instances/{instance}/metadata/{name}", content=b"x"), 403, 46)
        assert_error(client.delete(f"/instances/{instance}/metadata/{name}"), 403, 46)
    assert_error(client.get(f"/instances/{instance}/metadata/Nope"), 404, 7)
    assert_error(client.get("/instances/nope/metadata/Sample"), 404, 17)


def test_user_attachments_with_revisions(client: httpx.Client, instance: str) -> None:
    url = f"/instances/{instance}/attachments/report"
    created = client.put(url, content=b"my report")
    assert (created.json(), created.headers["ETag"]) == ({}, etag(0, b"my report"))
    assert client.get(f"/instances/{instance}/attachments").json() == ["dicom", "report"]
    assert client.get(f"/instances/{instance}/attachments", params={"full": ""}).json() == {"dicom": 1, "report": 1030}
    info = client.get(f"{url}/info")
    assert comparable(info.json()) == {
        "CompressedMD5": md5(b"my report"),
        "CompressedSize": 9,
        "ContentType": 1030,
        "UncompressedMD5": md5(b"my report"),
        "UncompressedSize": 9,
    }
    assert info.headers["ETag"] == created.headers["ETag"]
    data = client.get(f"{url}/data")
    assert (data.content, data.headers["ETag"]) == (b"my report", created.headers["ETag"])
    assert [client.get(f"{url}/{p}").text for p in ("md5", "size", "is-compressed")] == [md5(b"my report"), "9", "0"]
    assert_error(client.put(url, content=b"v2", headers={"If-Match": etag(7, b"my report")}), 409, 43)
    replaced = client.put(url, content=b"v2", headers={"If-Match": created.headers["ETag"]})
    assert replaced.headers["ETag"] == etag(1, b"v2")
    assert client.get(f"{url}/data").content == b"v2"
    assert_error(client.delete(url, headers={"If-Match": created.headers["ETag"]}), 409, 43)
    assert client.delete(url, headers={"If-Match": replaced.headers["ETag"]}).status_code == 200
    assert client.delete(url).status_code == 200  # already absent
    assert client.get(f"/instances/{instance}/attachments").json() == ["dicom"]


def test_user_content_types(client: httpx.Client, instance: str) -> None:
    patient = client.get("/patients").json()[0]
    assert client.put(f"/patients/{patient}/attachments/notes", content=b"patient notes").status_code == 200
    notes = client.get(f"/patients/{patient}/attachments/notes/data")
    assert (notes.content, notes.headers["content-type"].split(";")[0]) == (b"patient notes", "text/plain")
    assert client.put(f"/instances/{instance}/attachments/1040", content=b"numeric").status_code == 200
    assert client.get(f"/instances/{instance}/attachments").json() == ["dicom", "1040"]
    assert client.delete(f"/instances/{instance}/attachments/1040").status_code == 200
    assert_error(client.get(f"/instances/{instance}/attachments/nope/info"), 404, 7)
    for method in ("PUT", "DELETE"):
        assert_error(client.request(method, f"/instances/{instance}/attachments/dicom", content=b"x"), 403, 46)
    assert_error(client.put(f"/instances/{instance}/attachments/5", content=b"x"), 403, 46)


def compressed_state(client: httpx.Client, instance: str) -> dict[str, Any]:
    return {
        "dicom": comparable(client.get(f"/instances/{instance}/attachments/dicom/info").json()),
        "is-compressed": client.get(f"/instances/{instance}/attachments/dicom/is-compressed").text,
    }


def check_round_trip(client: httpx.Client, path: str, instance: str, original: bytes) -> None:
    """Compressed as Orthanc compresses, uncompressed back; the file and its MD5 check unchanged throughout."""
    url = f"/instances/{instance}/attachments/dicom"
    plain = {
        "CompressedMD5": md5(original),
        "CompressedSize": len(original),
        "ContentType": 1,
        "UncompressedMD5": md5(original),
        "UncompressedSize": len(original),
    }
    for operation, state in (("compress", COMPRESSED[path]["dicom"]), ("uncompress", plain)):
        assert client.post(f"{url}/{operation}").json() == {}
        assert compressed_state(client, instance) == {
            "dicom": state,
            "is-compressed": str(int(operation == "compress")),
        }
        assert client.post(f"{url}/verify-md5").json() == {}
        assert client.get(f"/instances/{instance}/file").content == original
        stored = client.get(f"{url}/compressed-data").content
        assert (md5(stored), len(stored)) == (state["CompressedMD5"], state["CompressedSize"])
        assert client.get(f"{url}/compressed-size").text == str(state["CompressedSize"])
        assert client.get(f"/instances/{instance}/simplified-tags").status_code == 200


@pytest.mark.parametrize("path", sorted(COMPRESSED))
def test_compressing_the_dicom_file(client: httpx.Client, path: str) -> None:
    original = sample(path).read_bytes()
    instance = client.post("/instances", content=original).json()["ID"]
    check_round_trip(client, path, instance, original)
    stats = client.get(f"/instances/{instance}/statistics").json()
    assert (stats["DicomDiskSize"], stats["DicomUncompressedSize"]) == (str(len(original)), str(len(original)))


def test_storage_compression(isengard: Any) -> None:
    server = isengard({"StorageCompression": True})
    with server.client() as client:
        for path, recorded in COMPRESSED.items():
            original = sample(path).read_bytes()
            instance = client.post("/instances", content=original).json()["ID"]
            assert compressed_state(client, instance) == {"dicom": recorded["dicom"], "is-compressed": "1"}
            stats = client.get(f"/instances/{instance}/statistics").json()
            for key in ("DicomDiskSize", "DicomUncompressedSize"):
                assert stats[key] == recorded["statistics"][key], key
            assert client.get(f"/instances/{instance}/file").content == original
            assert client.get(f"/instances/{instance}/tags", params={"simplify": ""}).status_code == 200
            assert client.post(f"/instances/{instance}/attachments/dicom/uncompress").json() == {}
            check_round_trip(client, path, instance, original)


def test_storage_compression_keeps_the_header_apart(isengard: Any) -> None:
    server = isengard({"StorageCompression": True})
    path = next(iter(COMPRESSED))
    instance = server.upload(sample(path))[0]["ID"]
    attachments = server.get(f"/instances/{instance}/attachments", params={"full": ""}).json()
    assert attachments == COMPRESSED[path]["attachments"]
