"""A ~2 GB ZIP archive from Isengard: throughput, and the server's memory before and while it streams.

Generates (once, cached) a synthetic CT study with benchmarks/generate.py (1,000 instances of 1024 x 1024 16-bit
pixels: 2.1 GB), stores it on a fresh server (benchmarks/servers.py: defaults, filesystem storage, SQLite), then
  1. downloads GET /studies/{id}/archive (the synchronous answer, streamed) to a temporary file;
  2. unless --no-job, runs the same archive as an "Archive" job and downloads GET /jobs/{id}/archive;
while a thread samples the server's resident memory (VmRSS of the process tree) every 100 ms. Each ZIP is checked
(one entry per instance, a member's CRC). Usage:

    .venv/bin/python benchmarks/archive.py [--instances 1000] [--size 1024] [--media] [--no-job]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
from generate import Layout, generate
from servers import Server
from tqdm import tqdm

MB = 1024 * 1024


class MemoryWatch:
    """The peak of ``sample()`` while running, sampled every ``interval`` seconds in a thread."""

    def __init__(self, sample: Callable[[], int], interval: float = 0.1) -> None:
        self.sample, self.interval, self.peak = sample, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def download(client: httpx.Client, path: str, target: Path, expected: int, label: str) -> tuple[int, float]:
    """Stream ``path`` into ``target`` with a progress bar: (bytes, seconds)."""
    started = time.perf_counter()
    size = 0
    with client.stream("GET", path) as response, open(target, "wb") as out:
        response.raise_for_status()
        with tqdm(total=expected, unit="B", unit_scale=True, desc=label) as bar:
            for chunk in response.iter_bytes(MB):
                out.write(chunk)
                size += len(chunk)
                bar.update(len(chunk))
    return size, time.perf_counter() - started


def check(target: Path, count: int, media: bool) -> None:
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert len(names) == count + (1 if media else 0), (len(names), count)
        archive.read(random.choice(names))  # checks that member's CRC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024, help="rows and columns of each image")
    parser.add_argument("--media", action="store_true", help="DICOM media (DICOMDIR) rather than an archive")
    parser.add_argument("--no-job", action="store_true", help="skip the asynchronous (job) variant")
    args = parser.parse_args()
    series = 4
    layout = Layout(1, 1, series, max(1, args.instances // series), args.size)
    files = generate(layout)
    total = sum(f.stat().st_size for f in files)
    kind = "media" if args.media else "archive"
    with tempfile.TemporaryDirectory(prefix="isengard-archive-bench-") as folder:
        server = Server("Isengard", Path(folder) / "server")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                for path in tqdm(files, desc="storing", unit="file"):
                    client.post("/instances", content=path.read_bytes()).raise_for_status()
                [study] = client.get("/studies").json()
                idle = server.rss()
                target = Path(folder) / "out.zip"
                with MemoryWatch(server.rss) as watch:
                    size, seconds = download(client, f"/studies/{study}/{kind}", target, total, "streaming")
                check(target, len(files), args.media)
                rows = [("synchronous (streamed)", size, seconds, watch.peak)]
                target.unlink()
                if not args.no_job:
                    with MemoryWatch(server.rss) as watch:
                        started = time.perf_counter()
                        job = client.post(f"/studies/{study}/{kind}", json={"Asynchronous": True}).json()["ID"]
                        while (state := client.get(f"/jobs/{job}").json()["State"]) not in ("Success", "Failure"):
                            time.sleep(0.2)
                        assert state == "Success", client.get(f"/jobs/{job}").json()
                        made = time.perf_counter() - started
                        size, seconds = download(client, f"/jobs/{job}/archive", target, total, "job output")
                    check(target, len(files), args.media)
                    rows.append((f"job ({made:.1f} s to make) + download", size, made + seconds, watch.peak))
                after = server.rss()
        finally:
            server.remove()
    print(f"\n{len(files)} instances, {total / MB:,.0f} MiB of DICOM ({kind} of one study)")
    print(f"server RSS before: {idle / MB:,.0f} MiB; after: {after / MB:,.0f} MiB")
    print(f"{'answer':<40} {'ZIP MiB':>9} {'seconds':>8} {'MiB/s':>7} {'peak RSS MiB':>13} {'growth MiB':>11}")
    for label, size, seconds, peak in rows:
        print(
            f"{label:<40} {size / MB:>9,.0f} {seconds:>8.1f} {total / MB / seconds:>7.1f} "
            f"{peak / MB:>13,.0f} {(peak - idle) / MB:>11,.0f}"
        )


if __name__ == "__main__":
    main()
