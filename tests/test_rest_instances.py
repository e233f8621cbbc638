"""One instance's content answers like Orthanc's: /tags in its three forms, /simplified-tags, /header, /content
navigation down to raw values, sequences and pixel data fragments, and /file; compared with the answers of the
reference Orthanc for samples of every transfer syntax, character set and structure (tests/reference)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from isengard.testing import ServerProcess

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from reference_data import as_isengard, load, upload_samples

#: Orthanc (DCMTK 3.6.6) names it without the RETIRED_ prefix that the DICOM dictionary (and DCMTK 3.6.7) gives it.
RENAMED = {"OtherPatientIDs": "RETIRED_OtherPatientIDs"}
#: In this file DCMTK reads the group length of group 0008 as part of the file meta information.
META_QUIRK = ("TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm", "0008,0000")
#: Data set trailing padding, after the pixel data: Orthanc lists it in /content, Isengard reads no further.
TRAILING_PADDING = "fffc-fffc"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("instances")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def instances(server: ServerProcess) -> dict[str, str]:
    """Sample path -> instance identifier, for the samples whose answers were recorded."""
    answers = upload_samples(server, set(load("tags")) | set(load("content")))
    return {path: answer["ID"] for path, answer in answers.items()}


@pytest.fixture(scope="module")
def client(server: ServerProcess, instances: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def is_private(tag: str) -> bool:
    return int(tag[:4], 16) % 2 == 1 and int(tag[5:], 16) > 0xFF


def comparable_tags(tags: dict[str, Any], *, recorded: bool) -> dict[str, Any]:
    """Full tags without the names of private tags (Orthanc takes them from DCMTK's dictionary, Isengard from
    pydicom's, and they differ); the reference's names translated where the DICOM dictionary moved on."""
    out = {}
    for tag, entry in (as_isengard(tags) if recorded else tags).items():
        entry = dict(entry)
        if is_private(tag):
            del entry["Name"]
        elif recorded:
            entry["Name"] = RENAMED.get(entry["Name"], entry["Name"])
        if entry["Type"] == "Sequence":
            entry["Value"] = [comparable_tags(item, recorded=recorded) for item in entry["Value"]]
        out[tag] = entry
    return out


def expected_tags(path: str) -> dict[str, Any]:
    tags = dict(load("tags")[path])
    if path == META_QUIRK[0]:
        tags[META_QUIRK[1]] = load("header")[path][META_QUIRK[1]]
    return comparable_tags(tags, recorded=True)


def simplified(tags: dict[str, Any]) -> dict[str, Any]:
    """Orthanc's ?simplify derives from the full form (checked on every instance of the reference)."""
    return {
        e["Name"]: [simplified(i) for i in e["Value"]] if e["Type"] == "Sequence" else e["Value"] for e in tags.values()
    }


def shortened(tags: dict[str, Any]) -> dict[str, Any]:
    return {t: [shortened(i) for i in e["Value"]] if e["Type"] == "Sequence" else e["Value"] for t, e in tags.items()}


@pytest.mark.parametrize("path", sorted(load("tags")))
def test_tags_in_three_forms(client: httpx.Client, instances: dict[str, str], path: str) -> None:
    full = client.get(f"/instances/{instances[path]}/tags").json()
    assert comparable_tags(full, recorded=False) == expected_tags(path)
    assert client.get(f"/instances/{instances[path]}/tags", params={"simplify": ""}).json() == simplified(full)
    assert client.get(f"/instances/{instances[path]}/simplified-tags").json() == simplified(full)
    assert client.get(f"/instances/{instances[path]}/tags", params={"short": ""}).json() == shortened(full)


@pytest.mark.parametrize("path", sorted(load("header")))
def test_header(client: httpx.Client, instances: dict[str, str], path: str) -> None:
    want = dict(load("header")[path])
    if path == META_QUIRK[0]:
        del want[META_QUIRK[1]]
    assert client.get(f"/instances/{instances[path]}/header").json() == want
    simple = client.get(f"/instances/{instances[path]}/header", params={"simplify": ""}).json()
    assert simple == simplified(want)


def test_values_orthanc_decodes_wrongly(client: httpx.Client, instances: dict[str, str]) -> None:
    """Deliberate differences: ISO 2022 escapes to JIS X 0208 and the value separator of JIS X 0201 texts."""
    japanese = client.get(f"/instances/{instances['Encodings/DavidClunie/SCSH32']}/simplified-tags").json()
    assert japanese["PatientName"] == "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
    assert load("tags")["Encodings/DavidClunie/SCSH32"]["0010,0010"]["Value"] != japanese["PatientName"]
    katakana = client.get(f"/instances/{instances['Encodings/ISO_IR13.dcm']}/simplified-tags").json()
    assert katakana["ImagePositionPatient"] == "-3.1238788846299\\-99.021923065871\\144.46381405098"
    chinese = client.get(f"/instances/{instances['Encodings/DavidClunie/SCSX2']}/simplified-tags").json()
    assert chinese["PatientName"] == load("tags")["Encodings/DavidClunie/SCSX2"]["0010,0010"]["Value"]
    assert chinese["PatientName"].endswith("=")  # an empty last group of the name is kept, as in the file


@pytest.mark.parametrize("path", sorted(load("content")))
def test_content_navigation(client: httpx.Client, instances: dict[str, str], path: str) -> None:
    """Lists of tags and items, raw values with their padding, pixel data as fragments (native: one fragment)."""
    for route, want in load("content")[path].items():
        if TRAILING_PADDING in route:
            continue
        response = client.get(f"/instances/{instances[path]}/content{'' if route == '/' else route}")
        assert response.status_code == 200, route
        if isinstance(want, dict):
            assert response.headers["content-type"] == "application/octet-stream", route
            assert {"md5": hashlib.md5(response.content).hexdigest(), "size": len(response.content)} == want, route
        else:
            if route == "/" and path == META_QUIRK[0]:
                want = [META_QUIRK[1].replace(",", "-"), *want]
            assert response.json() == [t for t in want if t != TRAILING_PADDING], route


def test_content_errors(client: httpx.Client, instances: dict[str, str]) -> None:
    instance = instances["Brainix/Flair/IM-0001-0001.dcm"]
    for route in ("0010-0011", "zzzz", "0010-0010/0", "0008-1140/7", "0008-1140/x", "7fe0-0010/9"):
        response = client.get(f"/instances/{instance}/content/{route}")
        assert response.status_code == 404, route
        assert response.json()["HttpStatus"] == 404
    assert client.get("/instances/nope/content").status_code == 404
    assert client.get("/instances/nope/tags").json()["OrthancStatus"] == 17


def test_file_is_the_received_file(client: httpx.Client, instances: dict[str, str]) -> None:
    recorded = load("attachments")
    for instance in instances.values():
        response = client.get(f"/instances/{instance}/file")
        assert response.headers["content-type"] == "application/dicom"
        assert hashlib.md5(response.content).hexdigest() == recorded[instance]["UncompressedMD5"]
        assert len(response.content) == recorded[instance]["UncompressedSize"]
