"""The filesystem storage on a real folder: Orthanc's layout, atomic writes, uuid-only paths, tidy removal, sweep
listing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid as uuidlib
from pathlib import Path

import pytest

from isengard.backends import StorageArea
from isengard_filesystem import FilesystemStorage

DICOM = 1


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "storage")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_is_a_storage_area(storage: FilesystemStorage) -> None:
    assert isinstance(storage, StorageArea)


async def test_layout_is_two_levels_of_hex_folders(storage: FilesystemStorage) -> None:
    uuid = new_uuid()
    await storage.create(uuid, DICOM, b"content")
    expected = storage.root / uuid[:2] / uuid[2:4] / uuid
    assert files_under(storage.root) == [expected]
    assert expected.read_bytes() == b"content"


async def test_read_range_and_stream(storage: FilesystemStorage) -> None:
    uuid = new_uuid()
    data = os.urandom(3 * 1024 * 1024 + 17)
    await storage.create(uuid, DICOM, data)
    assert await storage.read(uuid, DICOM) == data
    assert await storage.read_range(uuid, DICOM, 10, 1000) == data[10:1000]
    assert await storage.read_range(uuid, DICOM, len(data) - 5, len(data) + 100) == data[-5:]
    assert await storage.read_range(uuid, DICOM, 50, 10) == b""
    chunks = [c async for c in storage.stream(uuid, DICOM, chunk_size=1 << 20)]
    assert b"".join(chunks) == data and len(chunks) == 4


async def test_missing_file_raises_file_not_found(storage: FilesystemStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.read(new_uuid(), DICOM)
    with pytest.raises(FileNotFoundError):
        await storage.read_range(new_uuid(), DICOM, 0, 10)


async def test_overwriting_a_uuid_replaces_it_whole(storage: FilesystemStorage) -> None:
    uuid = new_uuid()
    await storage.create(uuid, DICOM, b"x" * 1000)
    await storage.create(uuid, DICOM, b"short")
    assert await storage.read(uuid, DICOM) == b"short"


def test_a_file_is_never_visible_half_written(tmp_path: Path) -> None:
    """While a large write goes on, the final name is either absent or holds the whole file."""
    storage = FilesystemStorage(tmp_path / "storage", sync=True)
    uuid = new_uuid()
    data = os.urandom(64 * 1024 * 1024)
    target = storage.path(uuid)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                seen.append(target.stat().st_size)
            except FileNotFoundError:
                seen.append(-1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asyncio.run(storage.create(uuid, DICOM, data))
    finally:
        done.set()
        watcher.join()
    assert seen.count(-1) > 0, "the watcher never saw the write in progress"
    assert set(seen) <= {-1, len(data)}, "a partial file was visible under its final name"
    assert target.read_bytes() == data
    assert [p.name for p in files_under(storage.root)] == [uuid]  # no temporary file left


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "..",
        "",
        "abc",
        "/absolute/path",
        "0000000-0000-0000-0000-000000000000/../x",
        "ABCDEF01-2345-6789-ABCD-EF0123456789",  # the kernel writes lower case only
        "abcdef01-2345-6789-abcd-ef0123456789\n",
        "abcdef01-2345-6789-abcd-ef0123456789/",
        "abcdef01-2345-6789-abcd-ef0123456789.tmp",
        "abcdef01-2345-6789-abcd-ef01234567890",
        "abcdef01_2345_6789_abcd_ef0123456789",
        "abcdef01-2345-6789-abcd-ef012345678\x00",
    ],
)
async def test_only_uuids_become_paths(storage: FilesystemStorage, bad: str) -> None:
    with pytest.raises(ValueError):
        storage.path(bad)
    for call in (
        storage.create(bad, DICOM, b"escape"),
        storage.read(bad, DICOM),
        storage.read_range(bad, DICOM, 0, 1),
        storage.remove(bad, DICOM),
    ):
        with pytest.raises(ValueError):
            await call
    assert not storage.root.exists() or files_under(storage.root) == []


async def test_remove_tidies_empty_folders_only(storage: FilesystemStorage) -> None:
    a = "abcd" + new_uuid()[4:]
    b = "abce" + new_uuid()[4:]  # same first folder, other second folder
    c = "abcd" + new_uuid()[4:]  # same folders as a
    for uuid in (a, b, c):
        await storage.create(uuid, DICOM, uuid.encode())
    await storage.remove(a, DICOM)
    assert (storage.root / "ab" / "cd").is_dir()  # c still lives there
    await storage.remove(c, DICOM)
    assert not (storage.root / "ab" / "cd").exists()
    assert (storage.root / "ab" / "ce").is_dir()
    await storage.remove(b, DICOM)
    assert not (storage.root / "ab").exists()
    assert storage.root.is_dir()  # the root itself stays
    await storage.remove(a, DICOM)  # absent: not an error


async def test_list_uuids_for_the_sweep(storage: FilesystemStorage) -> None:
    old, young = new_uuid(), new_uuid()
    await storage.create(old, DICOM, b"old")
    await storage.create(young, DICOM, b"young")
    past = time.time() - 3600
    os.utime(storage.path(old), (past, past))
    # leftovers of writes that never finished, and files that are none of the storage's business
    stale_temp = storage.path(new_uuid()).with_suffix(".tmp")
    fresh_temp = storage.path(new_uuid()).with_suffix(".tmp")
    for temp in (stale_temp, fresh_temp):
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(b"partial")
    os.utime(stale_temp, (past, past))
    stranger = storage.root / "ab" / "cd" / "README"
    stranger.parent.mkdir(parents=True, exist_ok=True)
    stranger.write_text("not a storage file")
    os.utime(stranger, (past, past))
    (storage.root / "notes.txt").write_text("top level")

    assert await storage.list_uuids(time.time() - 60) == [old]
    assert not stale_temp.exists(), "a temporary file older than the cutoff is a dead write"
    assert fresh_temp.exists(), "a young temporary file may be a write in progress"
    assert sorted(await storage.list_uuids(time.time() + 1)) == sorted([old, young])
    assert stranger.exists() and (storage.root / "notes.txt").exists()


async def test_list_uuids_of_a_missing_folder(tmp_path: Path) -> None:
    assert await FilesystemStorage(tmp_path / "nowhere").list_uuids(time.time()) == []
