"""Who may talk to the server and how: remote access, HTTP Basic credentials, HTTPS, and storage paths that no
client input can steer.

Remote access is tested for real: the servers run inside a network namespace made for the test (a veth pair on
a private /30), so a client in the root namespace reaches them from a non-loopback address while a client inside
the namespace reaches them over its loopback. Nothing leaves this machine. Needs root and iproute2.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyorthanc
import pytest
from pydicom.uid import generate_uid

from isengard.testing import (
    ServerProcess,
    assert_orthanc_error,
    dicom_files,
    dicom_variant,
    free_port,
    require_tool,
    sample,
    self_signed_certificate,
    storage_files,
)

REALM = 'Basic realm="Orthanc Secure Area"'
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- remote access -------------------------------------------------------------------------------------------
class Namespace:
    """A network namespace joined to the root one by a veth pair: ``host`` here, ``inside`` there."""

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.name = f"isg-test-{os.getpid()}"
        self.host, self.inside = f"10.231.{n}.1", f"10.231.{n}.2"
        self._veth = f"isg{os.getpid() % 100000}"

    def __enter__(self) -> Namespace:
        ns = self.name
        for command in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", self._veth, "type", "veth", "peer", "name", "eth-test", "netns", ns],
            ["ip", "addr", "add", f"{self.host}/30", "dev", self._veth],
            ["ip", "link", "set", self._veth, "up"],
            ["ip", "-n", ns, "addr", "add", f"{self.inside}/30", "dev", "eth-test"],
            ["ip", "-n", ns, "link", "set", "eth-test", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self._veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, **kwargs)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    require_tool("ip", "network namespaces for a remote client")
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    with Namespace() as ns:
        yield ns


@pytest.fixture(scope="module")
def remote_servers(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Servers inside the namespace: one with the default RemoteAccessAllowed=false, one that allows it."""
    configs = {
        "local-only": {},
        "remote-allowed": {"RemoteAccessAllowed": True, "AuthenticationEnabled": False},
    }
    processes, ports = [], {}
    for name, extra in configs.items():
        work = tmp_path_factory.mktemp(name)
        port = free_port()
        config = {
            "StorageDirectory": str(work / "storage"),
            "IndexDirectory": str(work / "index"),
            "HttpPort": port,
            "DicomServerEnabled": False,
            **extra,
        }
        (work / "config.json").write_text(json.dumps(config))
        processes.append(
            namespace.spawn([sys.executable, "-m", "isengard.cli", str(work / "config.json")], work / "log")
        )
        ports[name] = port
    try:
        for port in ports.values():
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://{namespace.inside}:{port}/system", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "server in the namespace did not start"
                    time.sleep(0.1)
        yield ports
    finally:
        for p in processes:
            p.terminate()
            p.wait(15)


def test_remote_client_refused_when_remote_access_is_not_allowed(
    namespace: Namespace, remote_servers: dict[str, int]
) -> None:
    url = f"http://{namespace.inside}:{remote_servers['local-only']}"
    with httpx.Client(base_url=url, timeout=10) as remote:
        for method, path, body in (
            ("GET", "/system", None),
            ("GET", "/patients", None),
            ("POST", "/instances", sample("Phenix", "IM-0001-0001.dcm").read_bytes()),
            ("DELETE", "/patients/x", None),
        ):
            r = remote.request(method, path, content=body)
            assert_orthanc_error(r, 401)
            assert r.headers["WWW-Authenticate"] == REALM
        # a header is no address: claiming to be local changes nothing
        forged = remote.get("/system", headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
        assert forged.status_code == 401
        # credentials do not open the door either: the address decides
        assert remote.get("/system", auth=("orthanc", "orthanc")).status_code == 401
    # the same server, from its own machine's loopback, answers; and the refused upload stored nothing
    probe = "import httpx, sys; r = httpx.get(sys.argv[1]); print(r.status_code, r.json()['CountInstances'])"
    done = namespace.run([sys.executable, "-c", probe, f"http://127.0.0.1:{remote_servers['local-only']}/statistics"])
    assert done.stdout.split() == ["200", "0"], done.stderr


def test_remote_client_served_when_remote_access_is_allowed(
    namespace: Namespace, remote_servers: dict[str, int]
) -> None:
    url = f"http://{namespace.inside}:{remote_servers['remote-allowed']}"
    r = httpx.get(f"{url}/system", timeout=10)
    assert r.status_code == 200 and r.json()["HttpPort"] == remote_servers["remote-allowed"]


# -- HTTP Basic authentication --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "s3cret:with:colons", "bob": "hunter2"}}
    server = ServerProcess(tmp_path_factory.mktemp("secured"), config).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "auth",
    [
        None,
        ("alice", "wrong"),
        ("alice", "s3cret"),  # a prefix of the password
        ("mallory", "s3cret:with:colons"),
        ("ALICE", "s3cret:with:colons"),
        ("bob", "s3cret:with:colons"),  # someone else's password
    ],
    ids=["none", "wrong-password", "password-prefix", "unknown-user", "user-case", "other-users-password"],
)
def test_bad_credentials_get_401(secured: ServerProcess, auth: tuple[str, str] | None) -> None:
    with httpx.Client(base_url=secured.url, auth=auth, timeout=10) as client:
        for method, path in (("GET", "/system"), ("GET", "/patients"), ("POST", "/tools/find")):
            r = client.request(method, path, json={"Level": "Patient", "Query": {}})
            assert_orthanc_error(r, 401, "Bad credentials were provided to an HTTP request")
            assert r.headers["WWW-Authenticate"] == REALM


@pytest.mark.parametrize("header", ["Basic", "Basic !!!notbase64", "Basic YWxpY2U=", "Bearer s3cret", "basic"])
def test_malformed_authorization_headers(secured: ServerProcess, header: str) -> None:
    r = httpx.get(f"{secured.url}/system", headers={"Authorization": header}, timeout=10)
    assert_orthanc_error(r, 401)
    assert r.headers["WWW-Authenticate"] == REALM


def test_right_credentials_with_httpx_and_pyorthanc(secured: ServerProcess) -> None:
    for user, password in (("alice", "s3cret:with:colons"), ("bob", "hunter2")):
        with httpx.Client(base_url=secured.url, auth=(user, password), timeout=10) as client:
            assert client.get("/system").status_code == 200
        with pyorthanc.Orthanc(secured.url, username=user, password=password) as orthanc:
            assert orthanc.get_system()["Name"] == "IsengardTest"
            assert isinstance(orthanc.get_patients(), list)
    with (
        pyorthanc.Orthanc(secured.url, username="alice", password="nope") as orthanc,
        pytest.raises(httpx.HTTPError, match="401"),  # pyorthanc wraps the status error
    ):
        orthanc.get_system()


def test_refused_upload_stores_nothing_and_accepted_one_records_the_user(secured: ServerProcess) -> None:
    body = dicom_variant(sample("Series", "Lena-5.dcm"), SOPInstanceUID=generate_uid())
    files = storage_files(secured)
    assert httpx.post(f"{secured.url}/instances", content=body, timeout=10).status_code == 401
    assert httpx.post(f"{secured.url}/instances", content=body, auth=("bob", "x"), timeout=10).status_code == 401
    assert storage_files(secured) == files
    with secured.client(auth=("bob", "hunter2")) as client:
        stored = client.post("/instances", content=body).json()
        assert stored["Status"] == "Success"
        assert client.get(f"/instances/{stored['ID']}/metadata/HttpUsername").text == "bob"
        # keep-alive survives a refusal on the same connection
        assert client.get("/system", auth=("bob", "wrong")).status_code == 401
        assert client.get("/system").status_code == 200


# -- HTTPS ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_https_with_a_self_signed_certificate(
    isengard: Callable[..., ServerProcess], certificate: tuple[Path, Path]
) -> None:
    pem, cert = certificate
    server = isengard({"SslEnabled": True, "SslCertificate": str(pem)})
    assert server.url.startswith("https://")
    with httpx.Client(
        base_url=server.url, verify=ssl.create_default_context(cafile=cert), timeout=10
    ) as client:  # verified, not skipped
        system = client.get("/system")
        assert system.status_code == 200 and system.json()["IsHttpServerSecure"] is True
        stored = client.post("/instances", content=sample("Phenix", "IM-0001-0001.dcm").read_bytes()).json()
        assert (
            client.get(f"/instances/{stored['ID']}/file").content == sample("Phenix", "IM-0001-0001.dcm").read_bytes()
        )
    with pyorthanc.Orthanc(server.url, verify=ssl.create_default_context(cafile=cert)) as orthanc:
        assert orthanc.get_instances() == [stored["ID"]]
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is not silently accepted
        httpx.get(f"{server.url}/system", timeout=10)
    plain = f"http://127.0.0.1:{server.config['HttpPort']}/system"
    try:
        answered = httpx.get(plain, timeout=10).status_code
    except httpx.HTTPError:
        answered = None
    assert answered != 200, "the HTTPS port must not serve plain HTTP"
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=cert)) as idle:
        idle.get("/system")  # a kept-alive TLS connection must not hold the shutdown
        started = time.monotonic()
        server.stop()
    assert server.process is not None and server.process.returncode == 0, "the server had to be killed"
    assert time.monotonic() - started < 10


# -- storage paths -------------------------------------------------------------------------------------------
def test_storage_paths_never_come_from_client_input(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    hostile = "../../../../../tmp/isengard-escape"
    body = dicom_variant(
        sample("Series", "Lena-5.dcm"),
        PatientID=hostile,
        PatientName="..\\..\\evil",
        StudyDescription="/etc/passwd",
        SOPInstanceUID=generate_uid(),
    )
    root = Path(server.config["StorageDirectory"])
    with server.client() as client:
        stored = client.post("/instances", content=body).json()
        assert stored["Status"] == "Success"
        instance = stored["ID"]
        assert client.get(f"/patients/{stored['ParentPatient']}").json()["MainDicomTags"]["PatientID"] == hostile
        user = client.put(f"/instances/{instance}/attachments/1025", content=b"user data").status_code
        assert user == 200
        infos = {n: client.get(f"/instances/{instance}/attachments/{n}/info").json() for n in ("dicom", "1025")}
        files = dicom_files(client)
    for info in infos.values():
        uuid = info["Uuid"]
        assert UUID.fullmatch(uuid)
        assert (root / uuid[:2] / uuid[2:4] / uuid).is_file()
    assert {info["Uuid"] for info in infos.values()} == storage_files(server)
    assert files[instance]["Uuid"] == infos["dicom"]["Uuid"]
    every = [p for p in root.rglob("*") if p.is_file()]
    assert all(p.parent.parent.parent == root and UUID.fullmatch(p.name) for p in every)
    assert not Path("/tmp/isengard-escape").exists()
    outside = {p.relative_to(server.workdir).parts[0] for p in server.workdir.rglob("*") if p.is_file()}
    assert outside <= {"storage", "index", "config.json", "server.log"}, outside
