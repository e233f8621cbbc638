"""/modalities: declared peers, their definitions over REST, and C-ECHO (real peers: dcmtk and Isengard)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isengard.testing import ServerProcess, assert_orthanc_error, free_port, require_tool

#: Orthanc's form of a modality: every field, always.
FIELDS = {
    "AET",
    "AllowEcho",
    "AllowEventReport",
    "AllowFind",
    "AllowFindWorklist",
    "AllowGet",
    "AllowMove",
    "AllowNAction",
    "AllowStore",
    "AllowTranscoding",
    "Host",
    "LocalAet",
    "Manufacturer",
    "Port",
    "RetrieveMethod",
    "Timeout",
    "UseDicomTls",
}
DEAD_PORT = free_port()  # nothing listens there


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "DicomAet": "MODTEST",
        "DicomScuTimeout": 5,
        "DicomModalities": {
            "short": ["SHORT", "127.0.0.1", DEAD_PORT],
            "long": {"AET": "LONG", "Host": "127.0.0.1", "Port": DEAD_PORT, "AllowStore": False, "Manufacturer": "GE"},
        },
    }
    server = ServerProcess(tmp_path_factory.mktemp("modalities"), config).start()
    yield server
    server.stop()


def test_declared_modalities_in_orthancs_form(server: ServerProcess) -> None:
    assert server.get("/modalities").json() == ["long", "short"]
    expanded = server.get("/modalities?expand").json()
    assert set(expanded) == {"long", "short"}
    for definition in expanded.values():
        assert set(definition) == FIELDS
    assert expanded["short"] == {
        **dict.fromkeys(
            FIELDS - {"AET", "Host", "LocalAet", "Manufacturer", "Port", "RetrieveMethod", "Timeout", "UseDicomTls"},
            True,
        ),
        "AET": "SHORT",
        "Host": "127.0.0.1",
        "LocalAet": "",
        "Manufacturer": "Generic",
        "Port": DEAD_PORT,
        "RetrieveMethod": "SystemDefault",
        "Timeout": 0,
        "UseDicomTls": False,
    }
    assert expanded["long"]["AllowStore"] is False and expanded["long"]["AllowFind"] is True
    assert expanded["long"]["Manufacturer"] == "GE"
    assert server.get("/modalities/long/configuration").json() == expanded["long"]
    operations = server.get("/modalities/long").json()
    assert {"echo", "store", "query", "move", "get", "configuration"} <= set(operations)


def test_put_get_delete(server: ServerProcess) -> None:
    with server.client() as c:
        r = c.put("/modalities/added", json=["ADDED", "localhost", "1234", "SyngoVia"])
        assert r.status_code == 200 and r.text == ""
        added = c.get("/modalities/added/configuration").json()
        # a port may be a string; retired manufacturers read as the behaviour that replaced them
        assert (added["AET"], added["Host"], added["Port"]) == ("ADDED", "localhost", 1234)
        assert added["Manufacturer"] == "GenericNoWildcardInDates"
        body = {
            "AET": "OBJ",
            "Host": "10.0.0.1",
            "Port": 104,
            "AllowStorageCommitment": False,
            "AllowEcho": False,
            "LocalAet": "ME",
            "Timeout": 7,
            "UseDicomTls": True,
            "RetrieveMethod": "C-GET",
        }
        assert c.put("/modalities/added", json=body).status_code == 200  # replaces
        added = c.get("/modalities/added/configuration").json()
        assert set(added) == FIELDS
        assert added["AllowNAction"] is False and added["AllowEventReport"] is False and added["AllowEcho"] is False
        assert added["AllowFind"] is True
        assert (added["LocalAet"], added["Timeout"], added["UseDicomTls"]) == ("ME", 7, True)
        assert added["RetrieveMethod"] == "C-GET"
        assert c.get("/modalities").json() == ["added", "long", "short"]
        r = c.delete("/modalities/added")
        assert r.status_code == 200 and r.text == ""
        assert "added" not in c.get("/modalities").json()
        body = assert_orthanc_error(c.delete("/modalities/added"), 404, "Accessing an inexistent item")
        assert body["OrthancStatus"] == 7 and "added" in body["Details"]


@pytest.mark.parametrize(
    ("body", "status", "orthanc_status", "details"),
    [
        ({"Host": "h", "Port": 1}, 400, 15, "String value expected in field: AET"),
        ({"AET": "X", "Port": 1}, 400, 15, "String value expected in field: Host"),
        (
            {"AET": "X", "Host": "h", "Port": 70000},
            400,
            3,
            "A TCP port number must be in range [1..65534], but found: 70000",
        ),
        ({"AET": "X", "Host": "h", "Port": 0}, 400, 3, None),
        ({"AET": "X", "Host": "h", "Port": 1.5}, 400, 15, None),
        ({"AET": "X", "Host": "h", "Port": 1, "Manufacturer": "Nope"}, 400, 3, 'Unknown modality manufacturer: "Nope"'),
        (
            {"AET": "X", "Host": "h", "Port": 1, "AllowEcho": "yes"},
            400,
            15,
            "Boolean value expected in field: AllowEcho",
        ),
        (
            {"AET": "X", "Host": "h", "Port": 1, "Timeout": -1},
            400,
            15,
            "Unsigned integer value expected in field: Timeout",
        ),
        ({"AET": "X", "Host": "h", "Port": 1, "RetrieveMethod": "C-FOO"}, 400, 3, 'Unknown retrieve method: "C-FOO"'),
        (
            {"AET": "X", "Host": "h", "Port": 1, "RetrieveMethod": 1},
            400,
            15,
            "String value expected in field: RetrieveMethod",
        ),
        (["X", "h"], 400, 15, None),
        (["X", "h", 1, "GE", 5], 400, 15, None),
        ("x", 400, 15, None),
    ],
)
def test_put_bad_definitions(
    server: ServerProcess, body: object, status: int, orthanc_status: int, details: str
) -> None:
    r = server.client().put("/modalities/bad", json=body)
    error = assert_orthanc_error(r, status)
    assert error["OrthancStatus"] == orthanc_status
    if details:
        assert error["Details"] == details
    assert "bad" not in server.get("/modalities").json()  # nothing half-stored


def test_put_not_json(server: ServerProcess) -> None:
    r = server.client().put("/modalities/bad", content=b"not json")
    assert assert_orthanc_error(r, 400)["OrthancStatus"] == 15


def test_unknown_modality(server: ServerProcess) -> None:
    with server.client() as c:
        for method, path in [
            ("GET", "/modalities/nope"),
            ("GET", "/modalities/nope/configuration"),
            ("POST", "/modalities/nope/echo"),
            ("POST", "/modalities/nope/store"),
            ("POST", "/modalities/nope/query"),
        ]:
            content = b"{}" if path.endswith("echo") else b'{"Level": "Study"}' if path.endswith("query") else b"[]"
            body = assert_orthanc_error(c.request(method, path, content=content), 404)
            assert body["OrthancStatus"] == 7
            assert body["Details"] == "No modality with symbolic name: nope"


def test_deleting_a_declared_modality_lasts(tmp_path: Path) -> None:
    """Modalities live in the index: a restart keeps REST changes, and a second server on it sees them."""
    shared = {"StorageDirectory": str(tmp_path / "storage"), "IndexDirectory": str(tmp_path / "index")}
    config = {**shared, "DicomModalities": {"declared": ["DECL", "127.0.0.1", 104]}}
    first = ServerProcess(tmp_path / "first", config).start()
    second = None
    try:
        assert first.client().delete("/modalities/declared").status_code == 200
        assert first.client().put("/modalities/added", json=["ADDED", "127.0.0.1", 105]).status_code == 200
        first.restart()
        assert first.get("/modalities").json() == ["added"]
        second = ServerProcess(tmp_path / "second", config).start()  # same index, same configuration file
        assert second.get("/modalities").json() == ["added"]
        assert second.client().put("/modalities/declared", json=["AGAIN", "127.0.0.1", 106]).status_code == 200
        assert first.get("/modalities/declared/configuration").json()["AET"] == "AGAIN"
    finally:
        first.stop()
        if second is not None:
            second.stop()


# -- C-ECHO ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def echoscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """dcmtk's storescp answers C-ECHO as well."""
    require_tool("storescp")
    port = free_port()
    folder = tmp_path_factory.mktemp("echoscp")
    process = subprocess.Popen(["storescp", "-aet", "ECHOSCP", "-od", str(folder), str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)


def test_echo(server: ServerProcess, echoscp: int) -> None:
    with server.client() as c:
        assert c.put("/modalities/scp", json=["ECHOSCP", "127.0.0.1", echoscp]).status_code == 200
        for content in (b"", b"{}", b'{"Timeout": 2}', b"[]"):
            r = c.post("/modalities/scp/echo", content=content)
            assert r.status_code == 200 and r.json() == {}, r.text
        definition = {"AET": "ECHOSCP", "Host": "127.0.0.1", "Port": echoscp}
        assert c.post("/tools/dicom-echo", json=definition).json() == {}
        assert c.post("/tools/dicom-echo", json=["ECHOSCP", "127.0.0.1", echoscp]).json() == {}
        # storescp knows no C-FIND: CheckFind makes the echo fail
        error = assert_orthanc_error(c.post("/tools/dicom-echo", json={**definition, "CheckFind": True}), 500)
        assert error["OrthancStatus"] == 9
        assert assert_orthanc_error(c.post("/modalities/scp/echo", content=b"xx"), 400)["OrthancStatus"] == 15
        error = assert_orthanc_error(c.post("/modalities/scp/echo", json={"Timeout": "a"}), 400)
        assert error["Details"] == "Integer value expected in field: Timeout"
        assert assert_orthanc_error(c.post("/tools/dicom-echo", json={"AET": "X"}), 400)["OrthancStatus"] == 15


def test_echo_refused_connection(server: ServerProcess) -> None:
    for path, body in [("/modalities/short/echo", {}), ("/tools/dicom-echo", ["X", "127.0.0.1", DEAD_PORT])]:
        error = assert_orthanc_error(server.post(path, json=body), 500, "Error in the network protocol")
        assert error["OrthancStatus"] == 9
        assert "TCP Initialization Error" in error["Details"]


def test_echo_never_waits_longer_than_the_timeout(server: ServerProcess) -> None:
    """A peer that accepts TCP and then says nothing: the request ends after the timeout, with an error."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with server.client() as c:
            c.put("/modalities/silent", json={"AET": "SILENT", "Host": "127.0.0.1", "Port": port, "Timeout": 1})
            for path, body in [
                ("/modalities/silent/echo", {}),  # the modality's own Timeout
                ("/tools/dicom-echo", {"AET": "SILENT", "Host": "127.0.0.1", "Port": port, "Timeout": 1}),
            ]:
                started = time.monotonic()
                error = assert_orthanc_error(c.post(path, json=body), 500)
                assert time.monotonic() - started < 7  # Timeout 1, with room for a loaded machine
                assert error["OrthancStatus"] == 9
            assert c.get("/system").status_code == 200  # and the server is fine
