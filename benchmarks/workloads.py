"""The client side, identical for both servers: httpx clients in worker processes, one connection each.

Concurrent clients are processes rather than threads so that the client's own Python work (HTTP parsing, reading
files) is not serialized by one GIL: with a fast server the load generator must not be the bottleneck.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

_client: httpx.Client | None = None


def _init_worker(base_url: str, headers: dict[str, str]) -> None:
    global _client
    _client = httpx.Client(base_url=base_url, headers=headers, timeout=300)
    _client.get("/system")  # open the connection before the clock starts


def _worker_client() -> httpx.Client:
    if _client is None:
        raise RuntimeError("worker not initialised")
    return _client


def _post_file(path: str) -> tuple[int, str, int]:
    """(status, instance ID, bytes sent) for one file posted to /instances."""
    data = Path(path).read_bytes()
    r = _worker_client().post("/instances", content=data, headers={"Content-Type": "application/dicom"})
    if r.status_code != 200 or r.json().get("Status") != "Success":  # "AlreadyStored" would skew the figure
        return r.status_code if r.status_code != 200 else 0, r.text[:200], len(data)
    return 200, r.json()["ID"], len(data)


def _get(path: str) -> tuple[int, str, int]:
    """(status, content type, bytes received) for one GET."""
    r = _worker_client().get(path)
    return r.status_code, r.headers.get("Content-Type", ""), len(r.content)


@dataclass
class Batch:
    """What a batch of requests did: how many, how long, how many bytes, and the answers' second fields."""

    count: int
    seconds: float
    nbytes: int
    answers: list[str]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.nbytes / 1e6 / self.seconds


@contextmanager
def clients(base_url: str, count: int, headers: dict[str, str]) -> Iterator[Any]:
    """``count`` worker processes, each with its own connection to ``base_url``, ready before timing starts."""
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(count, initializer=_init_worker, initargs=(base_url, headers)) as pool:
        pool.map(time.sleep, [0.01] * count, chunksize=1)  # every worker is up and connected
        yield pool


def run_batch(
    base_url: str,
    fn: Callable[[str], tuple[int, str, int]],
    items: Iterable[str],
    count: int,
    desc: str,
    headers: dict[str, str] | None = None,
) -> Batch:
    """Send ``items`` through ``fn`` with ``count`` concurrent clients; fails on the first error answer."""
    items = list(items)
    answers: list[str] = []
    nbytes = 0
    with clients(base_url, count, headers or {}) as pool:
        started = time.perf_counter()
        for status, answer, size in tqdm(
            pool.imap(fn, items, chunksize=1), total=len(items), desc=desc, unit="req", leave=False
        ):
            if status != 200:
                pool.terminate()
                raise RuntimeError(f"{desc}: HTTP {status}: {answer}")
            answers.append(answer)
            nbytes += size
        seconds = time.perf_counter() - started
    return Batch(len(items), seconds, nbytes, answers)


def ingest(base_url: str, files: list[Path], count: int, desc: str) -> Batch:
    """POST every file to /instances; the answers are the instance IDs, in the order of ``files``."""
    return run_batch(base_url, _post_file, map(str, files), count, desc)


def download(
    base_url: str, paths: list[str], count: int, desc: str, *, gzip: bool = False, accept: str | None = None
) -> Batch:
    """GET every path (e.g. /instances/ID/file); bytes counted are the decoded bodies.

    Unless ``gzip``, the client asks for the body as it is: Orthanc otherwise gzips DICOM files and PNGs for any
    client that accepts it (httpx does by default), and the figure would measure zlib rather than the route.
    ``accept`` is the Accept header, for routes that negotiate their answer (DICOMweb's).
    """
    headers = {} if gzip else {"Accept-Encoding": "identity"}
    if accept is not None:
        headers["Accept"] = accept
    return run_batch(base_url, _get, paths, count, desc, headers)


def route_exists(base_url: str, path: str) -> bool:
    """Whether ``path`` answers 200 (a missing route or an unimplemented feature does not)."""
    with httpx.Client(base_url=base_url, timeout=120, headers={"Accept-Encoding": "identity"}) as client:
        return client.get(path).status_code == 200


def latencies(
    base_url: str, method: str, path: str | Sequence[str], repeat: int, desc: str, **request: Any
) -> tuple[list[float], httpx.Response]:
    """Seconds of each of ``repeat`` sequential requests, whole answer read, after a warm-up one (not timed, and
    returned: what the route answers); ``request`` holds httpx's arguments (``json``, ``params``, ``headers``).

    ``path`` may be several paths (e.g. every tile of a level), requested in turn: the warm-up is the first one.
    """
    paths = [path] if isinstance(path, str) else list(path)
    with httpx.Client(base_url=base_url, timeout=300) as client:
        warm = client.request(method, paths[0], **request)
        warm.raise_for_status()
        timings = []
        for i in tqdm(range(repeat), desc=desc, unit="req", leave=False):
            started = time.perf_counter()
            r = client.request(method, paths[i % len(paths)], **request)
            timings.append(time.perf_counter() - started)
            r.raise_for_status()
    return timings, warm


def find_latencies(base_url: str, body: dict[str, Any], repeat: int, desc: str) -> tuple[list[float], int]:
    """Seconds of each of ``repeat`` sequential POST /tools/find (after a warm-up), and the number of answers."""
    timings, warm = latencies(base_url, "POST", "/tools/find", repeat, desc, json=body)
    return timings, len(warm.json())


def median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
