"""The two servers under test, started the same way: own folder, own free ports, defaults for everything else.

Only what must differ is set (name, folders, ports). Both keep their defaults for the rest: SQLite index, no
storage compression, fsync of every stored file (SyncStorageArea), default HTTP server and thread counts, and no
Orthanc plugin unless a benchmark adds one (``config``, e.g. ``Plugins`` for Orthanc's DICOMweb plugin).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from isengard.testing import free_port

ORTHANC = os.environ.get("ORTHANC", shutil.which("Orthanc") or "/usr/sbin/Orthanc")


def orthanc_version() -> str:
    """The first line of ``Orthanc --version``, e.g. "Orthanc 1.10.1"."""
    out = subprocess.run([ORTHANC, "--version"], capture_output=True, text=True, check=False).stdout
    first = out.splitlines()[0] if out else "Orthanc ?"
    return "Orthanc " + first.split()[-1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (VmRSS, summed)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its children (the tree's work, whatever thread)."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime and stime: fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process on its own folder and ports; :meth:`start` returns the time to the first 200."""

    def __init__(self, kind: str, workdir: Path, config: dict[str, Any] | None = None) -> None:
        if kind not in ("Isengard", "Orthanc"):
            raise ValueError(kind)
        self.kind = kind
        self.workdir = workdir
        self.config = config or {}  # options on top of the common ones (a plugin for this benchmark)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        storage = self.workdir / "storage"
        config = {
            "Name": f"Bench{self.kind}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            **self.config,
        }
        path = self.workdir / "config.json"
        path.write_text(json.dumps(config, indent=2))
        if self.kind == "Orthanc":
            return [ORTHANC, str(path)]
        return [sys.executable, "-m", "isengard.cli", str(path)]

    def start(self, timeout: float = 60.0) -> float:
        """Start the process; seconds from the spawn to the first 200 on /system."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.perf_counter() - started < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited: see {self.workdir / 'server.log'}")
                try:
                    if client.get("/system").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer in {timeout}s: see {self.workdir / 'server.log'}")

    def rss(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return rss_bytes(self.process.pid)

    def cpu(self) -> float:
        if self.process is None:
            raise RuntimeError("not started")
        return cpu_seconds(self.process.pid)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        """Stop and delete the folder (storage, index, log)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


S = TypeVar("S", bound=Server)


@contextmanager
def fresh(servers: Sequence[S]) -> Iterator[list[S]]:
    """The servers started side by side, and removed afterwards (also when one fails to start)."""
    try:
        for server in servers:
            server.start()
        yield list(servers)
    finally:
        for server in servers:
            server.remove()
