"""POST /instances: one DICOM file, several in a multipart body, or a ZIP of files.

Every file is parsed and validated before anything is written, and each is stored or refused on its own: a bad
file in a ZIP never blocks its neighbours, and nothing of a refused file reaches the storage. A body sent with
``Content-Encoding: gzip`` (or ``deflate``), as Orthanc peers send with "Compress", is inflated first, up to the
size a plain body may have.

No upload is held whole in memory: the body is spooled as it arrives (in memory up to a few MB, then to an
anonymous temporary file), inflated from that spool into another, and a ZIP is read from its spool one entry at
a time; a single file is read into memory once, since the storage ingests bytes. Peak memory is thus about the
largest file, not the body (up to 4 GB by default).
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from quart import Blueprint, Quart, Response, current_app, request
from quart.datastructures import FileStorage

from .. import hookimpl
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError
from .app import current_user
from .body import body_chunks
from .common import answer, context

bp = Blueprint("upload", __name__)

T = TypeVar("T")

#: A ZIP entry larger than this (or than MaximumUploadSize when set) is refused: a "zip bomb" entry is read
#: with a bounded size whatever its header declares, and entries are inflated one at a time, off the event loop.
MAX_ZIP_ENTRY = 2 * 1024 * 1024 * 1024

#: A body (or inflated body) up to this size stays in memory; beyond, its spool moves to a temporary file.
SPOOL_IN_MEMORY = 4 * 1024 * 1024

#: Bytes gathered before one write to a spool's temporary file (off the event loop), and the step of inflating.
SPOOL_BATCH = 1024 * 1024

#: Enough of a body to tell a ZIP from a DICOM file (the DICM magic follows a 128-byte preamble).
HEAD_SIZE = 132


def looks_like_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" and data[128:132] != b"DICM"


def looks_like_dicom(data: bytes) -> bool:
    """DICM magic after the preamble, or the start of a bare dataset (group 0002 or 0008, little endian)."""
    return data[128:132] == b"DICM" or data[:2] in (b"\x02\x00", b"\x08\x00")


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, awaited to its end even when the request is cancelled (a client
    gone): the temporary file it works on is closed only once the thread no longer touches it."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.gather(work, return_exceptions=True)
        raise


def new_spool() -> IO[bytes]:
    """In memory while small, an anonymous temporary file (gone once closed, even after a crash) beyond."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)


async def spool_body() -> IO[bytes]:
    """The body as received, in a rewound spool the caller closes. Its first SPOOL_IN_MEMORY bytes are written on
    the event loop (to memory); beyond, chunks are gathered and written in batches from a worker thread."""
    spool, size, pending = new_spool(), 0, 0
    batch: list[bytes] = []
    try:
        async for chunk in body_chunks():
            size += len(chunk)
            if size <= SPOOL_IN_MEMORY:
                spool.write(chunk)
                continue
            batch.append(chunk)
            pending += len(chunk)
            if pending >= SPOOL_BATCH:
                await off_loop(spool.write, b"".join(batch))
                batch, pending = [], 0
        if batch:
            await off_loop(spool.write, b"".join(batch))
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def inflate(source: IO[bytes], target: IO[bytes], encoding: str, limit: int) -> None:
    """A gzip or deflate (zlib) body inflated from ``source`` into ``target``, a step at a time and to at most
    ``limit`` bytes: a "gzip bomb" is cut short, never inflated whole. Refusals are the client's fault (4xx)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    size = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or source.read(SPOOL_BATCH)
        if not data:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Truncated {encoding} body")
        try:
            out = inflater.decompress(data, SPOOL_BATCH)
        except zlib.error as e:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot inflate the {encoding} body: {e}") from None
        size += len(out)
        if size > limit:
            raise OrthancError(
                ErrorCode.BAD_REQUEST, f"The inflated body exceeds the upload limit ({limit} bytes)", http_status=413
            )
        target.write(out)


async def request_body() -> IO[bytes]:
    """The body as the client meant it (inflated when it came with a Content-Encoding), in a rewound spool the
    caller closes."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "deflate"):
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Unsupported Content-Encoding: {encoding}", http_status=415)
    raw = await spool_body()
    if encoding in ("", "identity"):
        return raw
    with raw:
        inflated = new_spool()
        try:
            await off_loop(inflate, raw, inflated, encoding, int(current_app.config["MAX_CONTENT_LENGTH"]))
            inflated.seek(0)
        except BaseException:
            inflated.close()
            raise
    return inflated


def zip_members(source: IO[bytes], limit: int) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(name, content or None, error) for each file of a ZIP, reading each entry with a bounded size."""
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as e:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Not a valid ZIP archive: {e}") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > limit:
                yield info.filename, None, "entry too large"
                continue
            try:
                with archive.open(info) as f:
                    content = f.read(limit + 1)
            except Exception as e:  # corrupt entry, bad CRC, unsupported compression, encryption
                yield info.filename, None, f"unreadable entry: {e}"
                continue
            if len(content) > limit:
                yield info.filename, None, "entry too large"
                continue
            yield info.filename, content, None


def multipart_members(parts: Iterable[FileStorage]) -> Iterator[tuple[str, bytes, None]]:
    """Each part's content, read only when its turn to be stored comes (werkzeug spooled the large ones to
    temporary files), and the part closed once read."""
    for i, part in enumerate(parts):
        with part.stream:
            content = part.stream.read()
        yield f"part{i}", content, None


def rest_origin() -> dict[str, str]:
    """How an instance arrived through this request (its reception metadata)."""
    return {
        "Origin": "RestApi",
        "RemoteIP": request.remote_addr or "",
        "HttpUsername": current_user() or "",
        "RemoteAET": "",
    }


async def _ingest_many(items: Iterable[tuple[str, bytes | None, str | None]]) -> list[dict[str, Any]]:
    """Store the files one after the other, each read (off the event loop) only when its turn comes."""
    ctx = context()
    origin = rest_origin()
    results: list[dict[str, Any]] = []
    members = iter(items)
    while (item := await off_loop(next, members, None)) is not None:
        name, data, error = item
        if data is None:
            results.append({"Filename": name, "Status": "Failure", "Details": error})
            continue
        try:
            result = await ctx.store.ingest(data, origin)
        except OrthancError as e:
            results.append({"Filename": name, "Status": "Failure", "Details": e.details or e.code.message})
            continue
        results.append(result.to_json())
    return results


async def _upload_multipart() -> Response:
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise OrthancError(ErrorCode.BAD_REQUEST, "A multipart body cannot have a Content-Encoding", http_status=415)
    parts = list((await request.files).values())
    try:
        return answer(await _ingest_many(multipart_members(parts)))
    finally:
        for part in parts:
            part.close()


@bp.post("/instances")
async def upload() -> Response:
    """Store DICOM files: a raw file, a multipart body of files, or a ZIP archive (answers a list)."""
    ctx = context()
    if request.headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
        return await _upload_multipart()
    with await request_body() as body:
        head = body.read(HEAD_SIZE)
        if not head:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Received an empty DICOM file")
        body.seek(0)
        if looks_like_zip(head):
            upload_mb = ctx.config.int("MaximumUploadSize")
            limit = min(upload_mb * 1024 * 1024, MAX_ZIP_ENTRY) if upload_mb else MAX_ZIP_ENTRY
            return answer(await _ingest_many(zip_members(body, limit)))
        size = body.seek(0, io.SEEK_END)
        if not looks_like_dicom(head):
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT,
                f"The body is neither a DICOM file nor a ZIP archive (size: {size} bytes)",
                http_status=415,
            )
        body.seek(0)
        # A body that stayed in memory is copied on the loop: a thread hop would cost more than the copy.
        data = body.read(size) if size <= SPOOL_IN_MEMORY else await off_loop(body.read, size)
    result = await ctx.store.ingest(data, rest_origin())
    return answer(result.to_json())


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
