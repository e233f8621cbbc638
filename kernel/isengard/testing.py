"""Test support for Isengard and its plugins: a real server in a subprocess, on free loopback ports.

Plugin authors use it the way pytest plugins use ``pytester``::

    def test_my_route(isengard):
        server = isengard({"MyPlugin": {"Enabled": True}})
        assert server.get("/my-route").status_code == 200

The fixtures are registered by the repository's ``conftest.py``; a plugin's own tests can import them too.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pydicom
import pytest

from .model import DicomIdentifiers, ResourceType


def _find_samples() -> Path:
    candidates = [os.environ.get("ISENGARD_SAMPLES", "")]
    here = Path(__file__).resolve()
    candidates += [str(p / "shared" / "data" / "samples") for p in here.parents]
    candidates.append("/work/shared/data/samples")
    for c in candidates:
        if c and Path(c, "Brainix").is_dir():
            return Path(c)
    return Path("/nonexistent-samples")


#: The real-world sample files (../shared/data/samples, or $ISENGARD_SAMPLES).
SAMPLES = _find_samples()


def sample(*parts: str) -> Path:
    path = SAMPLES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"sample data missing: {path} (set ISENGARD_SAMPLES)")
    return path


def require_tool(executable: str, why: str = "") -> str:
    """The path of a peer program a test needs (dcmtk, Orthanc, openssl...).

    Missing on a developer's machine, the test is skipped; in CI (``CI`` set, as ``.ci/run`` does) it fails
    loudly, since ``scripts/test`` installs every tool the tests use.
    """
    found = shutil.which(executable) or next(
        (str(p) for p in (Path("/usr/sbin", executable), Path("/usr/bin", executable)) if p.exists()), None
    )
    if found is None:
        unavailable(f"{executable} is not installed{': ' + why if why else ''} (scripts/test installs it)")
    return found


def unavailable(message: str) -> NoReturn:
    """A peer a test needs is missing: skip on a developer's machine, fail loudly in CI (``CI`` set)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def index_under_test() -> str:
    """The index plugin test servers use: "sqlite", or another named by ``pytest --index=NAME`` (the root
    conftest.py) or ``ISENGARD_TEST_INDEX``. For another plugin, ``isengard_NAME.testing.server_config(key)``
    gives the configuration of a server whose IndexDirectory is ``key`` (servers sharing a folder share an
    index), and ``release(key)`` drops what it created."""
    return os.environ.get("ISENGARD_TEST_INDEX", "sqlite")


def _index_plugin_testing() -> Any:
    name = index_under_test()
    return None if name == "sqlite" else importlib.import_module(f"isengard_{name}.testing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    """Wait until something listens on this loopback port (a peer started by a test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_job(client: Any, job_id: str, *states: str, progress: int = 0, timeout: float = 30) -> dict[str, Any]:
    """The job once in one of ``states`` (by default finished) with at least ``progress`` percent.

    ``client`` is a :class:`ServerProcess` or an ``httpx.Client``: anything whose ``get`` takes a path.
    """
    wanted = states or ("Success", "Failure")
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in wanted and job["Progress"] >= progress:
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by openssl: (the PEM a server reads, the certificate clients trust)."""
    require_tool("openssl")
    key, cert = folder / "key.pem", folder / "cert.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    request += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(request, check=True, capture_output=True)
    both = folder / "server.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())  # Orthanc's SslCertificate: certificate and key
    return both, cert


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, so the server closes its index cleanly; SIGKILL if it is still there after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """An Isengard server in its own process, with its own storage folder and configuration."""

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None, *, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config: dict[str, Any] = {
            "Name": "IsengardTest",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "HttpPort": free_port(),
            "DicomPort": free_port(),
            "StableAge": 2,
        }
        self.config.update(config or {})
        #: Ports this object chose (free_port): another process may take one before the server binds it, the
        #: more so with several test workers; a first start then tries other ones.
        self._chosen_ports = [key for key in ("HttpPort", "DicomPort") if key not in (config or {})]
        self._started = False
        plugin = _index_plugin_testing()
        if plugin is not None:
            for key, value in plugin.server_config(str(self.config["IndexDirectory"])).items():
                self.config.setdefault(key, value)
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.auth: tuple[str, str] | None = None
        users = self.config.get("RegisteredUsers") or {}
        if users:
            self.auth = next(iter(users.items()))

    @property
    def scheme(self) -> str:
        return "https" if self.config.get("SslEnabled") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.config['HttpPort']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        for attempt in range(3):
            try:
                self._start_once(timeout)
                break
            except RuntimeError as e:
                stolen = "Address already in use" in str(e) and self._chosen_ports and not self._started
                if not stolen or attempt == 2:
                    raise
                self.config.update({key: free_port() for key in self._chosen_ports})
        self._started = True
        return self

    def _start_once(self, timeout: float) -> None:
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(self.config, indent=2))
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "isengard.cli", str(config_path)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/system", auth=self.auth, verify=False, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_path.read_text()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("auth", self.auth)
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("verify", False)
        return httpx.Client(base_url=self.url, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(path, **kwargs)

    def upload(self, *paths: Path) -> list[dict[str, Any]]:
        out = []
        with self.client() as c:
            for p in paths:
                r = c.post("/instances", content=p.read_bytes())
                r.raise_for_status()
                out.append(r.json())
        return out

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a power cut of the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def discard(self) -> None:
        """Stop for good, and drop the index the test index plugin made for this server (its scratch database)."""
        self.stop()
        plugin = _index_plugin_testing()
        if plugin is not None:
            plugin.release(str(self.config["IndexDirectory"]))


@pytest.fixture
def isengard(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``isengard(config)`` starts a fresh server and stops it after the test."""
    started: list[ServerProcess] = []

    def factory(config: dict[str, Any] | None = None, *, name: str = "server", **kwargs: Any) -> ServerProcess:
        server = ServerProcess(tmp_path / f"{name}{len(started)}", config, **kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()
    for server in started:
        server.discard()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests of a module (for read-only checks on a fixed data set)."""
    server = ServerProcess(tmp_path_factory.mktemp("module-server")).start()
    yield server
    server.discard()


class OrthancProcess:
    """Debian's Orthanc (1.10.1), the reference Isengard is compared with: on free loopback ports, in its own
    folder, logging to ``folder/orthanc.log``. Start it with :func:`reference_orthanc`, which also stops it."""

    def __init__(self, executable: str, folder: Path, config: dict[str, Any] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        database = str(folder / "db")
        self.config: dict[str, Any] = {
            "StorageDirectory": database,
            "IndexDirectory": database,
            "RemoteAccessAllowed": False,
            **(config or {}),
        }
        self.config.setdefault("HttpPort", free_port())
        self.config.setdefault("DicomPort", free_port())
        self.http_port, self.dicom_port = int(self.config["HttpPort"]), int(self.config["DicomPort"])
        self.url = f"http://127.0.0.1:{self.http_port}"
        (folder / "config.json").write_text(json.dumps(self.config, indent=2))
        self.log_path = folder / "orthanc.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [executable, str(folder / "config.json")]
        self.process = subprocess.Popen(command, cwd=folder, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_until_up(self, timeout: float = 30.0) -> None:
        """Until /system answers: any status below 500 counts, since a server that wants credentials says 401."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            try:
                if httpx.get(self.url + "/system", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not answer in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-size:]

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.process, timeout)
        self._log.close()


@contextlib.contextmanager
def reference_orthanc(folder: Path, config: dict[str, Any] | None = None, *, why: str = "") -> Iterator[OrthancProcess]:
    """Debian's Orthanc with ``config`` over the defaults, up and answering, and stopped afterwards.

    Missing, the test is skipped locally and fails in CI (:func:`require_tool`).
    """
    orthanc = OrthancProcess(require_tool("Orthanc", why), folder, config)
    try:
        orthanc.wait_until_up()
        yield orthanc
    finally:
        orthanc.stop()


def dicom_variant(path: Path, **values: Any) -> bytes:
    """A sample file with some elements replaced by keyword (new UIDs make new instances of a real file)."""
    ds = pydicom.dcmread(path, force=True)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def assert_orthanc_error(response: httpx.Response, status: int, orthanc_error: str | None = None) -> dict[str, Any]:
    """Check Orthanc's JSON error body (the fields clients read) and return it."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert body["HttpStatus"] == status
    assert body["Method"] == response.request.method
    assert body["Uri"] == response.request.url.path
    assert isinstance(body["OrthancStatus"], int)
    assert body["Message"] == body["OrthancError"]
    if orthanc_error is not None:
        assert body["OrthancError"] == orthanc_error, body
    return body


def storage_files(server: ServerProcess) -> set[str]:
    """Names of every file under the server's StorageDirectory (temporary ones included).

    os.walk rather than rglob: folders the server removes meanwhile are skipped instead of raising.
    """
    return {name for _, _, files in os.walk(server.config["StorageDirectory"]) for name in files}


def dicom_files(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """Instance id -> the /attachments/dicom/info of its file, for every instance the server indexes."""
    return {i: client.get(f"/instances/{i}/attachments/dicom/info").json() for i in client.get("/instances").json()}


def instance_id(source: Path | pydicom.Dataset) -> str:
    """Orthanc's identifier of the instance in a DICOM file (or dataset): what the server will call it."""
    ds = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(source, force=True, stop_before_pixels=True)
    keys = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    return DicomIdentifiers(*(str(ds.get(k, "")).strip() for k in keys)).public_id(ResourceType.INSTANCE)


def latencies_during(server: ServerProcess, action: Any, *, pause: float = 0.01) -> tuple[Any, list[float]]:
    """Run ``action()`` in a thread while timing GET /system over and over: (its result, the latencies in s)."""
    done, result = threading.Event(), []

    def run() -> None:
        try:
            result.append(action())
        finally:
            done.set()

    worker = threading.Thread(target=run)
    latencies = []
    with server.client(timeout=10) as c:
        worker.start()
        while not done.is_set():
            started = time.monotonic()
            assert c.get("/system").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(pause)
    worker.join()
    assert result, "the action failed"
    return result[0], latencies


class SlowStoreScp:
    """A pynetdicom storage SCP that takes ``delay`` seconds over each C-STORE (changeable while it runs): a peer
    slow enough to pause, cancel or kill a transfer midway. ``received`` lists the SOPInstanceUIDs, in order."""

    def __init__(self, delay: float, aet: str = "SLOW") -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.aet, self.port, self.delay = aet, free_port(), delay
        self.received: list[str] = []
        self._gate: threading.Semaphore | None = None
        ae = AE(ae_title=aet)
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on)])

    def _on(self, event: Any) -> int:
        gate = self._gate
        if gate is not None:
            gate.acquire(timeout=120)
        time.sleep(self.delay)
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def hold(self, allowed: int = 0) -> None:
        """From now on each C-STORE waits for a permit: ``allowed`` now, more with :meth:`allow`. A test then
        knows exactly how far a transfer went, however slow the machine, instead of racing a delay."""
        self._gate = threading.Semaphore(allowed)

    def allow(self, count: int = 1) -> None:
        """Let ``count`` more held C-STOREs through."""
        assert self._gate is not None, "hold() first"
        self._gate.release(count)

    def wait_received(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` instances arrived: a job's own progress is written only now and then."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} instances received"
            time.sleep(0.05)

    def unhold(self) -> None:
        """Back to no permits at all; the C-STOREs waiting meanwhile go on."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(1000)

    def stop(self) -> None:
        self.server.shutdown()
