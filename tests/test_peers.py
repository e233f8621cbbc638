"""Orthanc peers over HTTP(S): definitions as Orthanc reads and shows them, and transfers between real servers.

Peers: a second Isengard with HTTP Basic credentials (the receiver), Debian's Orthanc 1.10.1 (both ways), an
Isengard over HTTPS with a self-signed certificate, and a port where nothing listens. The expected shapes and
error codes are those Orthanc 1.10.1 gave for the same definitions and requests.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from isengard.testing import (
    ServerProcess,
    assert_orthanc_error,
    free_port,
    instance_id,
    reference_orthanc,
    sample,
    self_signed_certificate,
    wait_job,
)

BRAINIX = [sample("Brainix", "Flair", f"IM-0001-000{i}.dcm") for i in (1, 2, 3)]
PHENIX = sample("Phenix", "IM-0001-0001.dcm")
BRAINIX_STUDY = "27f7126f-4f66fb14-03f4081b-f9341db2-53925988"
DEAD_PORT = free_port()
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(sender, receiver): the receiver wants HTTP Basic credentials and takes bodies of 5 MB at most; the sender
    knows it in both of Orthanc's forms, and knows a dead peer."""
    receiver = ServerProcess(
        tmp_path_factory.mktemp("receiver"),
        {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}, "MaximumUploadSize": 5},
    )
    receiver_url = f"http://127.0.0.1:{receiver.config['HttpPort']}"
    sender = ServerProcess(
        tmp_path_factory.mktemp("sender"),
        {
            "LogExportedResources": True,
            "OrthancPeers": {
                "receiver": [receiver_url, "alice", "secret"],
                "object": {
                    "Url": receiver_url + "/",
                    "Username": "alice",
                    "Password": "secret",
                    "HttpHeaders": {"X-Site": "north"},
                    "Timeout": 10,
                    "Site": "north",
                },
                "dead": [f"http://127.0.0.1:{DEAD_PORT}"],
            },
        },
    )
    receiver.start()
    sender.start()
    sender.upload(*BRAINIX, PHENIX)
    yield sender, receiver
    sender.discard()
    receiver.discard()


@pytest.fixture
def sender(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


@pytest.fixture
def receiver(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    """The receiver, emptied."""
    with servers[1].client() as c:
        for patient in c.get("/patients").json():
            c.delete(f"/patients/{patient}").raise_for_status()
    return servers[1]


def received_files(server: ServerProcess) -> dict[str, bytes]:
    with server.client() as c:
        return {i: c.get(f"/instances/{i}/file").content for i in c.get("/instances").json()}


# -- definitions -----------------------------------------------------------------------------------------------
def test_configured_peers_are_shown_as_orthanc_shows_them(sender: ServerProcess, receiver: ServerProcess) -> None:
    url = f"http://127.0.0.1:{receiver.config['HttpPort']}/"
    with sender.client() as c:
        assert c.get("/peers").json() == ["dead", "object", "receiver"]
        expanded = c.get("/peers?expand").json()
        assert expanded["receiver"] == {
            "HttpHeaders": [],
            "Password": None,
            "Pkcs11": False,
            "Timeout": 0,
            "Url": url,
            "Username": "alice",
        }
        assert expanded["object"] == {
            "HttpHeaders": ["X-Site"],
            "Password": None,
            "Pkcs11": False,
            "Site": "north",
            "Timeout": 10,
            "Url": url,
            "Username": "alice",
        }
        assert expanded["dead"] == {
            "HttpHeaders": [],
            "Pkcs11": False,
            "Timeout": 0,
            "Url": f"http://127.0.0.1:{DEAD_PORT}/",
        }
        assert c.get("/peers/object/configuration").json() == expanded["object"]
        assert c.get("/peers/receiver").json() == ["configuration", "store", "store-straight", "system"]
        for path in ("/peers/nope", "/peers/nope/configuration", "/peers/nope/system"):
            error = assert_orthanc_error(c.get(path), 404, "Unknown resource")
            assert error["Details"] == "No peer with symbolic name: nope"
        assert_orthanc_error(c.post("/peers/nope/store", content=BRAINIX_STUDY), 404, "Unknown resource")


@pytest.mark.parametrize(
    ("definition", "details"),
    [
        (["http://127.0.0.1:8042", "user"], None),
        (["http://h", "u", "p", "x"], None),
        ([], None),
        ([5], None),
        (["ftp://x"], "Bad URL: ftp://x"),
        ({"Url": "ftp://x"}, "Bad URL: ftp://x"),
        ({}, "Empty URL"),
        ({"Url": 5}, None),
        ({"Url": "http://h", "Timeout": -1}, "Unsigned integer value expected in field: Timeout"),
        ({"Url": "http://h", "Timeout": "5"}, "Integer value expected in field: Timeout"),
        ({"Url": "http://h", "HttpHeaders": {"a": 1}}, None),
        ({"Url": "http://h", "HttpHeaders": []}, None),
        ({"Url": "http://h", "Password": "p"}, None),
        ({"Url": "http://h", "Username": 5}, None),
        ({"Url": "http://h", "Pkcs11": "x"}, None),
        ("http://h", None),
    ],
)
def test_bad_definitions_are_refused(sender: ServerProcess, definition: Any, details: str | None) -> None:
    with sender.client() as c:
        error = assert_orthanc_error(c.put("/peers/bad", json=definition), 400, "Bad file format")
        if details is not None:
            assert error["Details"] == details
        assert "bad" not in c.get("/peers").json()


def test_definition_edge_cases(sender: ServerProcess) -> None:
    with sender.client() as c:
        assert_orthanc_error(c.put("/peers/bad", content=b"garbage"), 400, "Bad file format")
        missing = {"Url": "https://h", "CertificateFile": "/nonexistent.pem"}
        error = assert_orthanc_error(c.put("/peers/bad", json=missing), 404, "Inexistent file")
        assert error["Details"] == "Cannot open certificate file: /nonexistent.pem"
        assert c.put("/peers/short", json=["http://h"]).status_code == 200
        assert c.put("/peers/nopass", json={"Url": "http://h", "Username": "u"}).status_code == 200
        assert c.get("/peers/short/configuration").json()["Url"] == "http://h/"
        assert c.get("/peers/nopass/configuration").json()["Password"] is None
        for name in ("short", "nopass"):
            assert c.delete(f"/peers/{name}").status_code == 200
        error = assert_orthanc_error(c.delete("/peers/short"), 404, "Accessing an inexistent item")
        assert error["Details"] == "Unknown Orthanc peer: short"


def test_peers_added_over_rest_are_shared_and_survive_a_restart(isengard: Callable[..., ServerProcess]) -> None:
    first = isengard({"OrthancPeers": {"configured": ["http://127.0.0.1:1"]}})
    shared = {k: first.config[k] for k in ("IndexDirectory", "StorageDirectory", "OrthancPeers")}
    second = isengard(shared)
    definition = {"Url": "http://127.0.0.1:2", "Username": "u", "Password": "p", "HttpHeaders": {"X-T": "1"}}
    with first.client() as c:
        assert c.put("/peers/added", json=definition).status_code == 200
        assert c.delete("/peers/configured").status_code == 200
    assert second.get("/peers").json() == ["added"]
    first.restart()
    assert first.get("/peers").json() == ["added"]
    assert first.get("/peers/added/configuration").json() == {
        "HttpHeaders": ["X-T"],
        "Password": None,
        "Pkcs11": False,
        "Timeout": 0,
        "Url": "http://127.0.0.1:2/",
        "Username": "u",
    }


# -- /system ---------------------------------------------------------------------------------------------------
def test_system_of_a_peer(sender: ServerProcess, receiver: ServerProcess) -> None:
    with sender.client() as c:
        assert c.get("/peers/receiver/system").json() == receiver.get("/system").json()
        assert c.get("/peers/object/system").json()["Name"] == receiver.config["Name"]
        error = assert_orthanc_error(c.get("/peers/dead/system"), 500, "Error in the network protocol")
        assert error["OrthancStatus"] == 9 and "Cannot reach the Orthanc peer" in error["Details"]
        wrong = [f"http://127.0.0.1:{receiver.config['HttpPort']}", "alice", "wrong"]
        assert c.put("/peers/wrong", json=wrong).status_code == 200
        try:
            error = assert_orthanc_error(c.get("/peers/wrong/system"), 500, "Error in the network protocol")
            assert "HTTP 401" in error["Details"]
            error = assert_orthanc_error(c.post("/peers/wrong/store", content=BRAINIX_STUDY), 500)
            assert error["OrthancStatus"] == 9 and "HTTP 401" in error["Details"]
        finally:
            c.delete("/peers/wrong")


# -- sending ---------------------------------------------------------------------------------------------------
def expected_report(peer: Any, size: int, **fields: Any) -> dict[str, Any]:
    report = {
        "Compress": False,
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 3,
        "ParentResources": [BRAINIX_STUDY],
        "Peer": peer,
        "Size": str(size),
        "SizeMB": 0,
    }
    return {**report, **fields}


def test_store_synchronous_in_each_body_form(sender: ServerProcess, receiver: ServerProcess) -> None:
    url = f"http://127.0.0.1:{receiver.config['HttpPort']}/"
    originals = {instance_id(p): p.read_bytes() for p in BRAINIX}
    total = sum(len(b) for b in originals.values())
    with sender.client() as c:
        for body in (BRAINIX_STUDY, json.dumps(BRAINIX_STUDY), json.dumps([BRAINIX_STUDY])):
            report = c.post("/peers/receiver/store", content=body).json()
            assert report == expected_report([url, "alice", ""], total)
            assert received_files(receiver) == originals
        report = c.post("/peers/object/store", json={"Resources": [BRAINIX_STUDY], "Synchronous": True}).json()
        assert report["Peer"]["HttpHeaders"] == ["X-Site"] and report["Peer"]["Password"] is None
        exports = c.get("/exports").json()["Exports"]
        assert exports[-1]["RemoteModality"] == "object" and exports[-1]["ResourceType"] == "Study"
        assert exports[-1]["StudyInstanceUID"] == str(pydicom.dcmread(BRAINIX[0]).StudyInstanceUID)
        empty = c.post("/peers/receiver/store", json={"Resources": []}).json()
        assert empty["InstancesCount"] == 0 and "ParentResources" not in empty and empty["Size"] == "0"


def test_store_compressed(sender: ServerProcess, receiver: ServerProcess) -> None:
    originals = {instance_id(p): p.read_bytes() for p in BRAINIX}
    total = sum(len(b) for b in originals.values())
    with sender.client() as c:
        report = c.post("/peers/receiver/store", json={"Resources": [BRAINIX_STUDY], "Compress": True}).json()
    assert report["Compress"] is True and 0 < int(report["Size"]) < total / 2
    assert received_files(receiver) == originals  # inflated by the receiver, stored as sent


def test_store_as_a_job_with_transcoding(sender: ServerProcess, receiver: ServerProcess) -> None:
    body = {
        "Resources": [BRAINIX_STUDY],
        "Asynchronous": True,
        "Compress": True,
        "Transcode": JPEG_LOSSLESS,
        "Priority": 3,
    }
    with sender.client() as c:
        submitted = c.post("/peers/receiver/store", json=body).json()
    assert submitted["Path"] == f"/jobs/{submitted['ID']}"
    job = wait_job(sender, submitted["ID"])
    assert job["State"] == "Success" and job["Type"] == "OrthancPeerStore" and job["Priority"] == 3
    content = job["Content"]
    assert content["Transcode"] == JPEG_LOSSLESS and content["Compress"] is True
    assert content["InstancesCount"] == 3 and content["FailedInstancesCount"] == 0 and int(content["Size"]) > 0
    for path in BRAINIX:
        received = pydicom.dcmread(io.BytesIO(received_files(receiver)[instance_id(path)]))
        assert received.file_meta.TransferSyntaxUID == JPEG_LOSSLESS
        assert (received.pixel_array == pydicom.dcmread(path).pixel_array).all()  # lossless


def test_store_failures(sender: ServerProcess, receiver: ServerProcess) -> None:
    with sender.client() as c:
        error = assert_orthanc_error(c.post("/peers/dead/store", content=BRAINIX_STUDY), 500)
        assert error["OrthancStatus"] == 9 and str(DEAD_PORT) in error["Details"]
        job = c.post("/peers/dead/store", json={"Resources": [BRAINIX_STUDY], "Asynchronous": True}).json()
        failed = wait_job(sender, job["ID"])
        assert failed["State"] == "Failure" and failed["ErrorCode"] == 9
        for options, details in [
            ({"Compress": "yes"}, "Boolean value expected in field: Compress"),
            ({"Transcode": 5}, "String value expected in field: Transcode"),
            ({"Transcode": "1.2.3"}, "Unknown transfer syntax UID: 1.2.3"),
        ]:
            r = c.post("/peers/receiver/store", json={"Resources": [BRAINIX_STUDY], **options})
            assert assert_orthanc_error(r, 400, "Bad file format")["Details"] == details
        r = c.post("/peers/receiver/store", json={"Resources": ["nonexistent"]})
        assert assert_orthanc_error(r, 400)["Details"] == "This string is not a valid Orthanc identifier: nonexistent"
    assert received_files(receiver) == {}


def test_store_straight(sender: ServerProcess, receiver: ServerProcess) -> None:
    with sender.client() as c:
        answer = c.post("/peers/receiver/store-straight", content=PHENIX.read_bytes()).json()
        assert answer["ID"] == instance_id(PHENIX) and answer["Status"] == "Success"
        error = assert_orthanc_error(c.post("/peers/receiver/store-straight", content=b"garbage"), 500)
        assert error["OrthancStatus"] == 9 and "HTTP 415" in error["Details"]
    assert list(received_files(receiver)) == [instance_id(PHENIX)]


class SlowPeer(ThreadingHTTPServer):
    """An HTTP server taking ``delay`` seconds over each POST /instances, as a far peer on a slow link would;
    ``received`` lists the (inflated) bodies in order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[bytes] = []
        self.encodings: set[str] = set()
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowPeer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.encodings.add(self.headers.get("Content-Encoding", ""))
        time.sleep(self.server.delay)
        self.server.received.append(gzip.decompress(body) if self.headers.get("Content-Encoding") else body)
        answer = json.dumps({"Status": "Success"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def test_paused_job_goes_on_from_where_it_stopped(sender: ServerProcess) -> None:
    peer = SlowPeer(1.0)
    body = {"Resources": [BRAINIX_STUDY], "Asynchronous": True, "Compress": True}
    try:
        with sender.client() as c:
            assert c.put("/peers/slow", json=[peer.url]).status_code == 200
            job_id = c.post("/peers/slow/store", json=body).json()["ID"]
            deadline = time.monotonic() + 20
            while not peer.received:  # the second instance is on its way now: the job pauses before the third
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert c.post(f"/jobs/{job_id}/pause").json() == {}
            while (paused := c.get(f"/jobs/{job_id}").json())["State"] != "Paused":
                assert time.monotonic() < deadline, paused
                time.sleep(0.02)
            assert 1 <= len(peer.received) < 3 and paused["Content"]["Size"] != "0"
            assert c.post(f"/jobs/{job_id}/resume").json() == {}
            assert wait_job(sender, job_id)["State"] == "Success"
    finally:
        sender.client().delete("/peers/slow")
        peer.shutdown()
    assert sorted(peer.received) == sorted(p.read_bytes() for p in BRAINIX)  # each once, none lost
    assert peer.encodings == {"gzip"}


# -- receiving compressed bodies ---------------------------------------------------------------------------------
def test_upload_accepts_gzip_and_deflate_bodies(receiver: ServerProcess) -> None:
    data = PHENIX.read_bytes()
    with receiver.client() as c:
        for encoding, body in (("gzip", gzip.compress(data)), ("deflate", zlib.compress(data))):
            r = c.post("/instances", content=body, headers={"Content-Encoding": encoding})
            assert r.status_code == 200 and r.json()["ID"] == instance_id(PHENIX), r.text
        assert c.get(f"/instances/{instance_id(PHENIX)}/file").content == data
        bomb = gzip.compress(bytes(6 * 1024 * 1024))  # 6 MB of zeros in 6 kB, above MaximumUploadSize (5 MB)
        assert len(bomb) < 10_000
        error = assert_orthanc_error(c.post("/instances", content=bomb, headers={"Content-Encoding": "gzip"}), 413)
        assert "exceeds the upload limit" in error["Details"]
        truncated = gzip.compress(data)[:1000]
        r = c.post("/instances", content=truncated, headers={"Content-Encoding": "gzip"})
        assert_orthanc_error(r, 400, "Bad request")
        r = c.post("/instances", content=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert_orthanc_error(r, 400, "Bad request")
        assert_orthanc_error(c.post("/instances", content=data, headers={"Content-Encoding": "br"}), 415)


# -- Orthanc 1.10.1 --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, servers: tuple[ServerProcess, ServerProcess]) -> Iterator[str]:
    """An Orthanc of our own that wants credentials and knows the receiver as a peer; yields its REST URL."""
    receiver_url = f"http://127.0.0.1:{servers[1].config['HttpPort']}"
    config = {
        "Name": "Scratch",
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"bob": "orthanc-pw"},
        "OrthancPeers": {"isengard": [receiver_url, "alice", "secret"]},
    }
    with reference_orthanc(tmp_path_factory.mktemp("orthanc"), config) as o:
        yield o.url


def test_orthanc_receives_from_isengard(sender: ServerProcess, orthanc: str) -> None:
    originals = {instance_id(p): p.read_bytes() for p in BRAINIX}
    with sender.client() as c:
        assert (
            c.put("/peers/orthanc", json={"Url": orthanc, "Username": "bob", "Password": "orthanc-pw"}).status_code
            == 200
        )
        try:
            system = c.get("/peers/orthanc/system").json()
            assert system["Name"] == "Scratch" and system["Version"].startswith("1.")
            report = c.post("/peers/orthanc/store", json={"Resources": [BRAINIX_STUDY], "Compress": True}).json()
            assert report["InstancesCount"] == 3 and report["Peer"] == [orthanc + "/", "bob", ""]
            job = c.post("/peers/orthanc/store", json={"Resources": [BRAINIX_STUDY], "Asynchronous": True}).json()
            assert wait_job(sender, job["ID"])["State"] == "Success"
        finally:
            c.delete("/peers/orthanc")
    with httpx.Client(base_url=orthanc, auth=("bob", "orthanc-pw"), timeout=30) as o:
        assert sorted(o.get("/instances").json()) == sorted(originals)
        for public_id, data in originals.items():
            assert o.get(f"/instances/{public_id}/file").content == data


def test_isengard_receives_compressed_from_orthanc(receiver: ServerProcess, orthanc: str) -> None:
    with httpx.Client(base_url=orthanc, auth=("bob", "orthanc-pw"), timeout=30) as o:
        stored = o.post("/instances", content=PHENIX.read_bytes()).json()
        assert o.get("/peers/isengard/system").json()["Name"] == receiver.config["Name"]
        report = o.post("/peers/isengard/store", json={"Resources": [stored["ID"]], "Compress": True}).json()
        assert report["Compress"] is True and report["InstancesCount"] == 1
    assert received_files(receiver) == {instance_id(PHENIX): PHENIX.read_bytes()}


# -- HTTPS -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_https_peer_trusted_through_https_ca_certificates(
    isengard: Callable[..., ServerProcess], certificate: tuple[Path, Path], sender: ServerProcess
) -> None:
    pem, cert = certificate
    secure = isengard({"SslEnabled": True, "SslCertificate": str(pem)}, name="secure")
    trusting = isengard({"HttpsCACertificates": str(cert)}, name="trusting")
    trusting.upload(PHENIX)
    with trusting.client() as c:
        assert c.put("/peers/secure", json=[secure.url]).status_code == 200
        assert c.get("/peers/secure/system").json()["IsHttpServerSecure"] is True
        report = c.post("/peers/secure/store", json=[instance_id(PHENIX)]).json()
        assert report["InstancesCount"] == 1
        with_client_certificate = {"Url": secure.url, "CertificateFile": str(pem)}  # the PEM holds the key too
        assert c.put("/peers/secure", json=with_client_certificate).status_code == 200
        shown = c.get("/peers/secure/configuration").json()
        assert shown["CertificateFile"] == str(pem) and shown["CertificateKeyFile"] is None
        assert shown["CertificateKeyPassword"] is None
        assert c.get("/peers/secure/system").status_code == 200
        assert c.get("/jobs").json() == []  # synchronous transfers are no jobs
    assert secure.get(f"/instances/{instance_id(PHENIX)}/file").content == PHENIX.read_bytes()
    with sender.client() as c:  # the system's authorities do not know this certificate
        assert c.put("/peers/secure", json=[secure.url]).status_code == 200
        try:
            error = assert_orthanc_error(c.get("/peers/secure/system"), 500, "Error in the network protocol")
            assert "CERTIFICATE_VERIFY_FAILED" in error["Details"]
        finally:
            c.delete("/peers/secure")
