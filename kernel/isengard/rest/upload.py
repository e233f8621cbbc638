"""POST /instances: one DICOM file, several in a multipart body, or a ZIP of files.

Every file is parsed and validated before anything is written, and each is stored or refused on its own: a bad
file in a ZIP never blocks its neighbours, and nothing of a refused file reaches the storage. A body sent with
``Content-Encoding: gzip`` (or ``deflate``), as Orthanc peers send with "Compress", is inflated first, up to the
size a plain body may have.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from quart import Blueprint, Quart, Response, current_app, request

from .. import hookimpl
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError
from .app import current_user
from .common import answer, context

bp = Blueprint("upload", __name__)

#: A ZIP entry larger than this (or than MaximumUploadSize when set) is refused: a "zip bomb" entry is read
#: with a bounded size whatever its header declares, and entries are inflated one at a time, off the event loop.
MAX_ZIP_ENTRY = 2 * 1024 * 1024 * 1024


def looks_like_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" and data[128:132] != b"DICM"


def looks_like_dicom(data: bytes) -> bool:
    """DICM magic after the preamble, or the start of a bare dataset (group 0002 or 0008, little endian)."""
    return data[128:132] == b"DICM" or data[:2] in (b"\x02\x00", b"\x08\x00")


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate (zlib) body, inflated to at most ``limit`` bytes: a "gzip bomb" is cut short, never
    inflated whole. Refusals are the client's fault (4xx)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as e:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot inflate the {encoding} body: {e}") from None
    if len(out) > limit:
        raise OrthancError(
            ErrorCode.BAD_REQUEST, f"The inflated body exceeds the upload limit ({limit} bytes)", http_status=413
        )
    if not inflater.eof:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Truncated {encoding} body")
    return out


async def request_body() -> bytes:
    """The body as the client meant it: inflated when it came with a Content-Encoding."""
    data = await request.get_data()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Unsupported Content-Encoding: {encoding}", http_status=415)
    return await asyncio.to_thread(inflate, data, encoding, int(current_app.config["MAX_CONTENT_LENGTH"]))


def zip_members(data: bytes, limit: int) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(name, content or None, error) for each file of a ZIP, reading each entry with a bounded size."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
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


async def multipart_files() -> list[bytes]:
    files = await request.files
    return [f.read() for f in files.values()]


def rest_origin() -> dict[str, str]:
    """How an instance arrived through this request (its reception metadata)."""
    return {
        "Origin": "RestApi",
        "RemoteIP": request.remote_addr or "",
        "HttpUsername": current_user() or "",
        "RemoteAET": "",
    }


async def _ingest_many(items: Iterable[tuple[str, bytes | None, str | None]]) -> list[dict[str, Any]]:
    ctx = context()
    origin = rest_origin()
    results: list[dict[str, Any]] = []
    members = iter(items)
    while (item := await asyncio.to_thread(next, members, None)) is not None:
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


@bp.post("/instances")
async def upload() -> Response:
    """Store DICOM files: a raw file, a multipart body of files, or a ZIP archive (answers a list)."""
    ctx = context()
    content_type = request.headers.get("Content-Type", "").lower()
    if content_type.startswith("multipart/form-data"):
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise OrthancError(
                ErrorCode.BAD_REQUEST, "A multipart body cannot have a Content-Encoding", http_status=415
            )
        files = await multipart_files()
        return answer(await _ingest_many([(f"part{i}", d, None) for i, d in enumerate(files)]))
    data = await request_body()
    if not data:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Received an empty DICOM file")
    if looks_like_zip(data):
        upload_mb = ctx.config.int("MaximumUploadSize")
        limit = min(upload_mb * 1024 * 1024, MAX_ZIP_ENTRY) if upload_mb else MAX_ZIP_ENTRY
        return answer(await _ingest_many(zip_members(data, limit)))
    if not looks_like_dicom(data):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            f"The body is neither a DICOM file nor a ZIP archive (size: {len(data)} bytes)",
            http_status=415,
        )
    result = await ctx.store.ingest(data, rest_origin())
    return answer(result.to_json())


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
