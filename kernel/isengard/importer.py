"""``isengard import PATH...``: send a tree of DICOM files (and ZIP archives) to a running server over REST.

Works against Orthanc too: it only uses POST /instances. Files are sent by several workers at once, with a
progress bar and a summary; non-DICOM files are reported, never fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from tqdm import tqdm


def add_import_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("import", help="send DICOM files or ZIP archives to a running server")
    p.add_argument("paths", nargs="+", help="files, folders (walked recursively) or ZIP archives")
    p.add_argument("--url", default="http://localhost:8042", help="server URL (default: %(default)s)")
    p.add_argument("--username", help="HTTP Basic user")
    p.add_argument("--password", help="HTTP Basic password")
    p.add_argument("--jobs", type=int, default=4, help="parallel uploads (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_import)


def iter_files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        elif path.is_file():
            yield path
        else:
            print(f"isengard import: no such file or folder: {path}", file=sys.stderr)


async def _upload(
    paths: list[Path], url: str, auth: tuple[str, str] | None, jobs: int, quiet: bool
) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    failures: list[str] = []
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    bar = tqdm(total=len(paths), unit="file", disable=quiet, dynamic_ncols=True)
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=300) as client:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                    r = await client.post("/instances", content=data)
                    if r.status_code == 200:
                        body = r.json()
                        for item in body if isinstance(body, list) else [body]:
                            counts[item.get("Status", "Success")] += 1
                    else:
                        counts["Failure"] += 1
                        failures.append(f"{path}: HTTP {r.status_code} {r.text[:200]}")
                except (OSError, httpx.HTTPError) as e:
                    counts["Failure"] += 1
                    failures.append(f"{path}: {e}")
                bar.update(1)
                bar.set_postfix(counts, refresh=False)

        await asyncio.gather(*(worker() for _ in range(max(1, jobs))))
    bar.close()
    return counts, failures


def run_import(args: argparse.Namespace) -> int:
    paths = list(iter_files(args.paths))
    auth = (args.username, args.password or "") if args.username else None
    counts, failures = asyncio.run(_upload(paths, args.url.rstrip("/"), auth, args.jobs, args.quiet))
    for line in failures[:20]:
        print(f"  failed: {line}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more failures", file=sys.stderr)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing sent"
    print(f"{len(paths)} files: {summary}")
    return 1 if counts.get("Failure") and not (counts.get("Success") or counts.get("AlreadyStored")) else 0
