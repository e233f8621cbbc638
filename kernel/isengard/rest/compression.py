"""HttpCompressionEnabled: answers in text formats (JSON, DICOM JSON and XML, HTML, JavaScript) are gzip- or
deflate-encoded when the client accepts it, as Orthanc does.

A series' DICOM JSON metadata shrinks about fifty times, which matters more on a hospital network than any
server-side speed-up. Streamed answers are compressed as they stream (one compressor per answer, flushed at the
end), so a large answer is still never held whole. Files, images, archives and ranges go out as they are: they
are compressed already or must keep their byte offsets.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from quart import Response
from quart.wrappers.response import DataBody, IterableBody

#: Media types worth compressing; multipart/related answers only when their parts are one of these.
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/dicom+json",
        "application/dicom+xml",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
    }
)
#: Smaller answers are sent as they are: the gzip header and the CPU would cost more than they save.
MINIMUM_SIZE = 1024
#: Larger buffered answers are compressed off the event loop.
_IN_THREAD_SIZE = 256 * 1024
_LEVEL = 5  # most of level 9's ratio on JSON, at a fraction of its time


def _compressible(content_type: str | None) -> bool:
    if not content_type:
        return False
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media.startswith("text/") or media in _TEXT_TYPES:
        return True
    if media == "multipart/related":
        return any(p.strip().lower().replace('"', "") in (f"type={t}" for t in _TEXT_TYPES) for p in params.split(";"))
    return False


def chosen_encoding(accept_encoding: str | None) -> str | None:
    """gzip, else deflate, if the Accept-Encoding header takes it (a ``;q=0`` refuses)."""
    accepted: dict[str, float] = {}
    for entry in (accept_encoding or "").split(","):
        name, _, params = entry.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        accepted[name.strip().lower()] = quality
    for encoding in ("gzip", "deflate"):
        if accepted.get(encoding, accepted.get("*", 0.0)) > 0:
            return encoding
    return None


def _compressor(encoding: str) -> zlib._Compress:
    # wbits 31: a gzip member; 15: a zlib stream, which is what HTTP calls "deflate"
    return zlib.compressobj(_LEVEL, zlib.DEFLATED, 31 if encoding == "gzip" else 15)


def _compress(data: bytes, encoding: str) -> bytes:
    compressor = _compressor(encoding)
    return compressor.compress(data) + compressor.flush()


async def _compressed_stream(body: IterableBody, encoding: str) -> AsyncIterator[bytes]:
    compressor = _compressor(encoding)
    async with body as chunks:
        async for chunk in chunks:
            if out := compressor.compress(chunk.encode() if isinstance(chunk, str) else chunk):
                yield out
    yield compressor.flush()


async def compress_response(response: Response, accept_encoding: str | None, method: str) -> Response:
    """The answer, compressed when its type, size, status and the client allow it."""
    if (
        method == "HEAD"
        or response.status_code != 200
        or "Content-Encoding" in response.headers
        or not _compressible(response.headers.get("Content-Type"))
    ):
        return response
    encoding = chosen_encoding(accept_encoding)
    body = response.response
    if encoding is None or not isinstance(body, DataBody | IterableBody):
        return response
    if isinstance(body, DataBody):
        if len(body.data) < MINIMUM_SIZE:
            return response
        data = body.data
        compressed = (
            await asyncio.to_thread(_compress, data, encoding)
            if len(data) > _IN_THREAD_SIZE
            else _compress(data, encoding)
        )
        response.set_data(compressed)
    else:
        response.response = IterableBody(_compressed_stream(body, encoding))
        response.headers.pop("Content-Length", None)
    response.headers["Content-Encoding"] = encoding
    response.headers.add("Vary", "Accept-Encoding")
    return response
