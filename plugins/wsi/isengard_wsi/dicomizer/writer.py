"""DICOM files written frame by frame, and where they go: a folder, or an Orthanc (or Isengard) REST API.

A level's frames are first spooled to a temporary file (their count and offsets are needed in the header, before
the pixel data); the instance is then the header written by pydicom followed by the encapsulated pixel data
written here: a Basic Offset Table, or an Extended Offset Table when an offset passes 4 GiB (PS3.5 A.4), then one
item per frame. Nothing is published until the whole slide is done: a folder gets its files under temporary names,
renamed at the end; an Orthanc gets each instance as soon as it is complete, deleted again if a later one fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

_ITEM, _SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA_OB = b"\xe0\x7f\x10\x00OB\x00\x00"
_UNDEFINED = b"\xff\xff\xff\xff"
_COPY_CHUNK = 1 << 20


class TargetError(Exception):
    """The output cannot be written or sent; the message is shown to the user."""


class Spool:
    """The frames of one instance, on disk while they are produced: their lengths, and the bytes in order."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.lengths: list[int] = []  # padded to even lengths, as items must be (PS3.5 A.4)
        self.size = 0

    def add(self, frame: bytes) -> None:
        padded = frame + b"\0" * (len(frame) % 2)
        self.file.write(padded)
        self.lengths.append(len(padded))
        self.size += len(padded)

    def close(self) -> None:
        self.file.close()


def write_instance(out: BinaryIO, ds: Dataset, syntax: UID, spool: Spool) -> None:
    """The header, then the frames of ``spool`` as the pixel data of transfer syntax ``syntax``."""
    encapsulated = syntax != ExplicitVRLittleEndian
    items = [length + 8 for length in spool.lengths]  # each frame's item: tag, length, then the frame
    offsets = list(itertools.accumulate(items[:-1], initial=0)) if encapsulated and items else []
    extended = bool(offsets) and offsets[-1] > 0xFFFFFFFF
    if extended:
        ds.ExtendedOffsetTable = struct.pack(f"<{len(offsets)}Q", *offsets)
        ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(offsets)}Q", *spool.lengths)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    ds.save_as(out, enforce_file_format=True)
    if encapsulated:
        table = b"" if extended else struct.pack(f"<{len(offsets)}I", *offsets)
        out.write(_PIXEL_DATA_OB + _UNDEFINED + _ITEM + struct.pack("<I", len(table)) + table)
    else:
        out.write(_PIXEL_DATA_OB + struct.pack("<I", spool.size))
    spool.file.seek(0)
    for length in spool.lengths:
        if encapsulated:
            out.write(_ITEM + struct.pack("<I", length))
        _copy(spool.file, out, length)
    if encapsulated:
        out.write(_SEQUENCE_END)


def _copy(source: BinaryIO, target: BinaryIO, count: int) -> None:
    while count:
        chunk = source.read(min(count, _COPY_CHUNK))
        if not chunk:
            raise TargetError("the frame spool is shorter than its frames")
        target.write(chunk)
        count -= len(chunk)


class Target(Protocol):
    def add(self, write: WriteInstance) -> None:
        """Store one instance, written by ``write`` into a binary file."""

    def commit(self) -> None:
        """The slide is complete: make it visible."""

    def rollback(self) -> None:
        """The slide failed: leave nothing of it."""


class WriteInstance(Protocol):
    def __call__(self, out: BinaryIO) -> None: ...


class FolderTarget:
    """``--folder``: files named by ``--folder-pattern`` (a printf pattern of the instance's index)."""

    def __init__(self, folder: Path, pattern: str) -> None:
        try:
            pattern % 0
        except (TypeError, ValueError):
            raise TargetError(
                f"bad --folder-pattern {pattern!r}: it needs one integer field, as wsi-%06d.dcm"
            ) from None
        self.folder, self.pattern = folder, pattern
        self.created = not folder.exists()
        try:
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent if self.created else folder)
            )
        except OSError as e:
            raise TargetError(f"cannot write to {folder}: {e.strerror}") from None
        self.names: list[str] = []

    def add(self, write: WriteInstance) -> None:
        name = self.pattern % len(self.names)
        with open(self.staging / name, "wb") as out:
            write(out)
        self.names.append(name)

    def commit(self) -> None:
        if self.created:
            os.replace(self.staging, self.folder)
            return
        for name in self.names:
            os.replace(self.staging / name, self.folder / name)
        self.staging.rmdir()

    def rollback(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


class OrthancTarget:
    """``--orthanc``: POST /instances of each instance when it is complete; DELETE them all if the slide fails."""

    def __init__(self, client: httpx.Client) -> None:
        self.client, self.posted = client, []

    def add(self, write: WriteInstance) -> None:
        with tempfile.TemporaryFile() as body:
            write(body)
            body.seek(0)
            try:
                response = self.client.post("instances", content=body)  # streamed, with its Content-Length
                response.raise_for_status()
                self.posted.append(response.json()["ID"])
            except (httpx.HTTPError, ValueError, KeyError) as e:
                raise TargetError(f"cannot store an instance in {self.client.base_url}: {http_reason(e)}") from None

    def commit(self) -> None:
        self.client.close()

    def rollback(self) -> None:
        for instance in self.posted:
            try:
                self.client.delete(f"instances/{instance}")
            except httpx.HTTPError:
                pass  # the failure being reported matters more than this one
        self.client.close()


def http_reason(error: Exception) -> str:
    """One line saying why a request failed (httpx's own message adds a link on a second line)."""
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} {error.response.text[:200].strip()}"
    return str(error) or type(error).__name__
