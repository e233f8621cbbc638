"""Bad input of every kind: each gets Orthanc's JSON error, the server keeps serving, nothing is half-stored.

One server serves the whole module (MaximumUploadSize 2 MB, so that oversize bodies and ZIP bombs are cheap to
build); each test checks that /statistics and the storage folder changed only by what it stored on purpose.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from isengard.testing import ServerProcess, assert_orthanc_error, dicom_variant, sample, storage_files

UPLOAD_MB = 2
UNKNOWN_ID = "0badc0de-00000000-00000000-00000000-00000000"
#: Routes whose effect is the server's own life, not data: never called with junk.
LIFECYCLE_ROUTES = {"/tools/shutdown", "/tools/reset"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("bad-input"), {"MaximumUploadSize": UPLOAD_MB}).start()
    srv.upload(sample("Phenix", "IM-0001-0001.dcm"))  # real resources, so that routes reach their body parsing
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def unchanged(server: ServerProcess, client: httpx.Client) -> Iterator[None]:
    """The test must leave the counts and the storage folder as it found them, and the server serving."""
    stats, files = client.get("/statistics").json(), storage_files(server)
    yield
    assert server.process is not None and server.process.poll() is None, "the server died"
    assert client.get("/system").status_code == 200
    assert client.get("/statistics").json() == stats
    assert storage_files(server) == files


def transfer_syntax(uid: str) -> bytes:
    return sample("TransferSyntaxes", f"{uid}.dcm").read_bytes()


# -- truncated and malformed DICOM ---------------------------------------------------------------------------
SYNTAXES = {
    "implicit": "1.2.840.10008.1.2",
    "explicit": "1.2.840.10008.1.2.1",
    "big-endian": "1.2.840.10008.1.2.2",
    "encapsulated-jpeg": "1.2.840.10008.1.2.4.50",
    "encapsulated-rle": "1.2.840.10008.1.2.5",
}


def pixel_data_span(data: bytes, uid: str) -> tuple[int, int]:
    """Where the pixel data element starts and ends (some files carry trailing padding after it)."""
    fp = io.BytesIO(data)
    pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    start = fp.tell()
    implicit = uid == SYNTAXES["implicit"]
    header = 8 if implicit else 12
    (length,) = struct.unpack_from(">I" if uid == SYNTAXES["big-endian"] else "<I", data, start + header - 4)
    if length != 0xFFFFFFFF:
        return start, start + header + length
    pos = start + header
    while True:  # encapsulated: items up to the sequence delimiter
        group, element, item_length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (group, element) == (0xFFFE, 0xE0DD):
            return start, pos
        pos += item_length


CUTS = {
    "header": lambda start, end: start // 2,
    "pixel-element-header": lambda start, end: start + 6,
    "pixels": lambda start, end: (start + end) // 2,
    "last-byte-of-pixels": lambda start, end: end - 1,
}


@pytest.mark.parametrize("where", list(CUTS))
@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_truncated_dicom_is_refused(client: httpx.Client, unchanged: None, syntax: str, where: str) -> None:
    uid = SYNTAXES[syntax]
    data = transfer_syntax(uid)
    cut = CUTS[where](*pixel_data_span(data, uid))
    body = assert_orthanc_error(client.post("/instances", content=data[:cut]), 400, "Bad file format")
    assert body["OrthancStatus"] == 15


@pytest.mark.parametrize(
    "body",
    [b"hello, this is not DICOM\n", json.dumps({"PatientName": "X"}).encode(), "png"],
    ids=["text", "json", "png"],
)
def test_non_dicom_body_is_unsupported_media(client: httpx.Client, unchanged: None, body: bytes | str) -> None:
    data = sample("Formats", "Brainix.png").read_bytes() if body == "png" else body
    assert_orthanc_error(client.post("/instances", content=data), 415, "Bad file format")


def test_empty_body(client: httpx.Client, unchanged: None) -> None:
    body = assert_orthanc_error(client.post("/instances", content=b""), 400, "Bad file format")
    assert "empty" in body["Details"]


def test_dicom_without_sop_instance_uid(client: httpx.Client, unchanged: None) -> None:
    ds = pydicom.dcmread(sample("Phenix", "IM-0001-0001.dcm"))
    del ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    body = assert_orthanc_error(client.post("/instances", content=out.getvalue()), 400, "Bad file format")
    assert "SOPInstanceUID" in body["Details"]


def _with_text_value(path: Path, implicit: bool) -> tuple[bytes, int]:
    """A file with a new UT element (4-byte length) in its header, and the offset of that length field."""
    data = dicom_variant(path, SOPInstanceUID=generate_uid(), TextValue="x" * 16)
    tag = data.index(b"\x40\x00\x60\xa1")
    return data, tag + (4 if implicit else 8)


@pytest.mark.parametrize("syntax", ["implicit", "explicit"])
def test_huge_declared_length_in_header(client: httpx.Client, unchanged: None, syntax: str) -> None:
    uid = SYNTAXES[syntax]
    data, length_at = _with_text_value(sample("TransferSyntaxes", f"{uid}.dcm"), syntax == "implicit")
    patched = data[:length_at] + struct.pack("<I", 0xFFFFFFF0) + data[length_at + 4 :]
    assert_orthanc_error(client.post("/instances", content=patched), 400, "Bad file format")


def test_huge_declared_pixel_data_length(client: httpx.Client, unchanged: None) -> None:
    data = transfer_syntax("1.2.840.10008.1.2.1")
    length_at = pixel_data_span(data, SYNTAXES["explicit"])[0] + 8
    patched = data[:length_at] + struct.pack("<I", 0x7FFFFFF0) + data[length_at + 4 :]
    body = assert_orthanc_error(client.post("/instances", content=patched), 400, "Bad file format")
    assert "truncated" in body["Details"]


# -- ZIP archives --------------------------------------------------------------------------------------------
def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def _fresh_instance() -> bytes:
    return dicom_variant(sample("Series", "Lena-5.dcm"), SOPInstanceUID=generate_uid())


def _delete(client: httpx.Client, results: list[dict[str, Any]]) -> None:
    """Remove what a test stored on purpose, so that the ``unchanged`` check sees only accidents."""
    for r in results:
        if r["Status"] == "Success":
            assert client.delete(f"/instances/{r['ID']}").status_code == 200


def test_zip_with_garbage_beside_good_entries(server: ServerProcess, client: httpx.Client, unchanged: None) -> None:
    good = [_fresh_instance(), _fresh_instance()]
    data = _zip(
        {
            "a/good1.dcm": good[0],
            "a/notes.txt": b"not a DICOM file",
            "b/truncated.dcm": good[1][: len(good[1]) // 2],
            "b/empty.dcm": b"",
            "c/good2.dcm": good[1],
        }
    )
    before = client.get("/statistics").json()["CountInstances"]
    files = storage_files(server)
    r = client.post("/instances", content=data)
    assert r.status_code == 200, r.text
    results = r.json()
    assert [x["Status"] for x in results] == ["Success", "Failure", "Failure", "Failure", "Success"]
    assert [x["Filename"] for x in results if x["Status"] == "Failure"] == [
        "a/notes.txt",
        "b/truncated.dcm",
        "b/empty.dcm",
    ]
    assert all(x["Details"] for x in results if x["Status"] == "Failure")
    assert client.get("/statistics").json()["CountInstances"] == before + 2
    assert len(storage_files(server) - files) == 2  # the good files, and nothing of the bad ones
    for x in results:
        if x["Status"] == "Success":
            assert client.get(f"/instances/{x['ID']}/file").content in good
    _delete(client, results)


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_zip(client: httpx.Client, unchanged: None, cut: float) -> None:
    data = _zip({"one.dcm": _fresh_instance(), "two.dcm": _fresh_instance()})
    assert_orthanc_error(client.post("/instances", content=data[: int(len(data) * cut)]), 400, "Bad file format")


def test_zip_with_corrupted_entry(client: httpx.Client, unchanged: None) -> None:
    good = _fresh_instance()
    data = bytearray(_zip({"corrupt.dcm": _fresh_instance(), "good.dcm": good}, zipfile.ZIP_STORED))
    start = data.index(b"corrupt.dcm") + len("corrupt.dcm") + 1000
    data[start : start + 64] = b"\xaa" * 64  # the CRC no longer matches
    results = client.post("/instances", content=bytes(data)).json()
    assert results[0]["Status"] == "Failure" and results[0]["Filename"] == "corrupt.dcm"
    assert results[1]["Status"] == "Success"
    _delete(client, results)


def test_zip_bomb_entries_are_refused_unread(client: httpx.Client, unchanged: None) -> None:
    big = b"\0" * (10 * UPLOAD_MB * 1024 * 1024)  # inflates to 10x the upload limit from ~20 kB
    liar = bytearray(_zip({"liar.dcm": big}))
    # Make the headers claim 1 kB: the reader must still stop at the limit.
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = liar.index(sig)
        liar[at + size_at : at + size_at + 4] = struct.pack("<I", 1024)
    good = _fresh_instance()
    data = _zip({"bomb.dcm": big, "good.dcm": good})
    assert len(data) < 1024 * 1024
    results = client.post("/instances", content=data).json()
    assert results[0] == {"Filename": "bomb.dcm", "Status": "Failure", "Details": "entry too large"}
    assert results[1]["Status"] == "Success"
    _delete(client, results)
    [lied] = client.post("/instances", content=bytes(liar)).json()
    assert lied["Status"] == "Failure"


# -- sizes ---------------------------------------------------------------------------------------------------
def test_upload_beyond_maximum_upload_size(client: httpx.Client, unchanged: None) -> None:
    body = _fresh_instance() + b"\0" * (UPLOAD_MB * 1024 * 1024)
    assert_orthanc_error(client.post("/instances", content=body), 413)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked transfer
    assert_orthanc_error(client.post("/instances", content=chunks), 413)
    instance = client.get("/instances").json()[0]
    assert_orthanc_error(client.put(f"/instances/{instance}/attachments/1025", content=body), 413)


# -- unknown resources and junk bodies on every route ----------------------------------------------------------
def _routes(client: httpx.Client) -> dict[str, dict[str, Any]]:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/instances/{public_id}" in paths and "/tools/find" in paths
    return paths


def _fill(path: str, ids: dict[str, str], unknown: bool) -> str:
    """A concrete URL: real or unknown resource ids, plausible names; other parameters their own name."""
    collection = path.split("/")[1]
    values = {
        "public_id": UNKNOWN_ID if unknown else ids.get(collection, UNKNOWN_ID),
        "name": "1025",
        "label": "robustness",
        "what": "size",
        "path": "0010-0010",
    }
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path.replace("{", "").replace("}", "")


@pytest.fixture
def ids(client: httpx.Client) -> dict[str, str]:
    instance = client.get("/instances").json()[0]
    parents = client.get(f"/instances/{instance}").json()
    series = client.get(f"/series/{parents['ParentSeries']}").json()
    study = client.get(f"/studies/{series['ParentStudy']}").json()
    return {
        "instances": instance,
        "series": parents["ParentSeries"],
        "studies": series["ParentStudy"],
        "patients": study["ParentPatient"],
    }


#: Where Orthanc itself answers 200 to an unknown id (deleting a query that is not there is a no-op).
#: (method, route template) where an unknown id is not an error: deleting a forgotten query, and QIDO-RS searches
#: inside an unknown study or series, which match nothing (PS3.18 10.6.3: 200 with an empty list).
UNKNOWN_IS_FINE = {
    ("delete", r"/queries/.*"),
    ("get", r"/dicom-web/studies/\{\w+\}(/series/\{\w+\})?/(series|instances)"),
}


#: Route parameters that are not identifiers, given well-formed values (frame numbers, IIIF image requests).
WELL_FORMED = {"frame": "1", "frames": "1", "region": "full", "size": "max", "rotation": "0", "name": "default.jpg"}


def _unknown_value(parameter: re.Match[str]) -> str:
    name = parameter.group(1)
    if name in WELL_FORMED:
        return WELL_FORMED[name]  # so that the unknown resource is what the answer is about
    return UNKNOWN_ID if name == "public_id" else f"unknown-{name}"


def test_unknown_ids_on_every_get_and_delete_route(client: httpx.Client, ids: dict[str, str], unchanged: None) -> None:
    checked = 0
    for template, operations in _routes(client).items():
        if "{" not in template:
            continue
        url = re.sub(r"\{(\w+)\}", _unknown_value, template)
        for method in sorted(set(operations) & {"get", "delete"}):
            r = client.request(method.upper(), url)
            if r.status_code == 200 and any(method == m and re.fullmatch(p, template) for m, p in UNKNOWN_IS_FINE):
                continue
            assert_orthanc_error(r, 404)
            checked += 1
    assert checked >= 60


JUNK_BODIES = [
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2",
    b"[]",
    b'"a string"',
    b"42",
    b"null",
    b"true",
    json.dumps(
        {
            "Level": 42,
            "Query": "everything",
            "Resources": "all",
            "Expand": "yes",
            "Limit": "ten",
            "Since": -1,
            "Replace": [1],
            "Remove": {"a": 1},
            "Keep": 7,
            "Tags": 5,
            "Content": 3,
            "Asynchronous": "maybe",
            "Priority": "high",
            "Synchronous": [],
        }
    ).encode(),
]


def test_junk_bodies_on_every_post_and_put_route(
    server: ServerProcess, client: httpx.Client, ids: dict[str, str]
) -> None:
    """Never a 5xx, always Orthanc's error body on 4xx; routes added later are covered from /openapi.json."""
    checked = 0
    for template, operations in _routes(client).items():
        if template in LIFECYCLE_ROUTES:
            continue
        for method in sorted(set(operations) & {"post", "put"}):
            for unknown in (False, True):
                url = _fill(template, ids, unknown)
                for body in JUNK_BODIES:
                    r = client.request(method.upper(), url, content=body)
                    assert r.status_code < 500, (method, url, body, r.status_code, r.text[:300])
                    if r.status_code >= 400:
                        assert_orthanc_error(r, r.status_code)
                    checked += 1
    assert checked > 100
    assert client.get("/system").status_code == 200
    stats = client.get("/statistics").json()
    assert stats["CountInstances"] >= 1
    # whatever was stored has its file, and no file is left without its record
    indexed = {
        client.get(f"/instances/{i}/attachments/dicom/info").json()["Uuid"] for i in client.get("/instances").json()
    }
    user = set()
    for collection in ("patients", "studies", "series", "instances"):
        for resource in client.get(f"/{collection}").json():
            info = client.get(f"/{collection}/{resource}/attachments/1025/info")
            if info.status_code == 200:
                user.add(info.json()["Uuid"])
    assert storage_files(server) == indexed | user


def test_keep_alive_survives_errors_answered_before_the_body_is_read(client: httpx.Client, unchanged: None) -> None:
    """A 404 answered before the view reads the body must not leave the client a dead connection."""
    url = f"/instances/{UNKNOWN_ID}/attachments/1025"
    for i in range(60):
        body = b"x" * (i * 997 % 20000)
        assert_orthanc_error(client.put(url, content=body), 404)
        assert client.get("/system").status_code == 200


# -- path traversal --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/instances/..%2F..%2F..%2Fetc%2Fpasswd",
        "/instances/%2e%2e",
        "/patients/..%5C..%5Cwindows",
        "/instances/{instance}/attachments/..%2F..%2Fconfig.json/data",
        "/instances/{instance}/attachments/%2e%2e/data",
        "/instances/{instance}/metadata/..%2F..%2Fconfig.json",
    ],
)
def test_path_traversal_in_ids_and_names(
    server: ServerProcess, client: httpx.Client, ids: dict[str, str], unchanged: None, path: str
) -> None:
    url = path.replace("{instance}", ids["instances"])
    for method in ("GET", "DELETE", "PUT"):
        r = client.request(method, url, content=b"../../escaped")
        assert r.status_code in (400, 404, 405), (method, url, r.status_code)
        assert_orthanc_error(r, r.status_code)
    assert "root:" not in client.get(url).text
    workdir = server.workdir
    assert not any(p.name == "escaped" or b"../../escaped" in p.read_bytes() for p in workdir.rglob("*") if p.is_file())
