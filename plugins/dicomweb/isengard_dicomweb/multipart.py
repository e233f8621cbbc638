"""multipart/related bodies (RFC 2387), as WADO-RS answers and STOW-RS requests carry them, and Accept headers.

Answers are streamed part by part, so a study of a thousand instances is never held whole in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from isengard.errors import ErrorCode, OrthancError


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept (or Content-Type) header: ``multipart/related; type="application/dicom"; ...``."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_multipart(self) -> bool:
        return self.media_type in ("multipart/related", "multipart/*")

    @property
    def is_any(self) -> bool:
        return self.media_type == "*/*"


def _split_params(text: str) -> list[str]:
    """Split at ";" outside quotes (a quoted type may hold none, but a boundary may)."""
    parts, current, quoted = [], [], False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_media_type(text: str) -> MediaRange:
    media, *params = _split_params(text)
    values: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        if name.strip():
            values[name.strip().lower()] = value.strip().strip('"')
    return MediaRange(media.strip().lower(), values)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, most preferred first (by q, then order); [] when absent."""
    if not header or not header.strip():
        return []
    ranges: list[tuple[float, int, MediaRange]] = []
    quoted, start, entries = False, 0, []
    for i, c in enumerate(header):  # commas inside quoted parameters do not separate entries
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            entries.append(header[start:i])
            start = i + 1
    entries.append(header[start:])
    for position, entry in enumerate(entries):
        if not entry.strip():
            continue
        media = parse_media_type(entry)
        try:
            quality = float(media.params.get("q", "1"))
        except ValueError:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad quality in the Accept header: {entry}") from None
        ranges.append((-quality, position, media))
    return [media for _, _, media in sorted(ranges, key=lambda r: (r[0], r[1]))]


def not_acceptable(accept: str | None, offered: str) -> OrthancError:
    """PS3.18 8.7.7: no acceptable media type is a 406 (Orthanc's plugin answers 400 there)."""
    return OrthancError(ErrorCode.NOT_ACCEPTABLE, f"This resource is available as {offered}, not as: {accept}")


def accepted_part(accept: str | None, part_type: str) -> MediaRange | None:
    """The preferred media range of ``accept`` that takes multipart/related parts of ``part_type``.

    ``None`` when the header is absent or accepts anything (the defaults of the resource apply); a 406 when no
    range fits.
    """
    for media in parse_accept(accept):
        if media.is_any:
            return None
        if media.is_multipart and media.params.get("type", part_type).lower() in (part_type, "*/*", "*"):
            return media
    if not accept or not accept.strip():
        return None
    raise not_acceptable(accept, f'multipart/related; type="{part_type}"')


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(boundary: str, part_type: str) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def _part_head(boundary: str, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"--{boundary}\r\n{head}\r\n".encode("latin-1")


def _closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("latin-1")


async def stream_parts(parts: AsyncIterator[tuple[bytes, dict[str, str]]], boundary: str) -> AsyncIterator[bytes]:
    """The body of a multipart/related answer: each (content, headers) part in turn, then the closing line."""
    async for content, headers in parts:
        yield _part_head(boundary, headers)
        yield content
        yield b"\r\n"
    yield _closing(boundary)


def joined_parts(parts: list[tuple[bytes, dict[str, str]]], boundary: str) -> bytes:
    """The same body in one buffer, for an answer whose parts are in memory anyway: sent with a Content-Length in
    one write, where a stream costs a chunk header and a trip through the server per piece."""
    pieces = []
    for content, headers in parts:
        pieces += [_part_head(boundary, headers), content, b"\r\n"]
    pieces.append(_closing(boundary))
    return b"".join(pieces)


def _part(piece: bytes) -> tuple[dict[str, str], bytes]:
    """A part from what follows its delimiter: the rest of the delimiter line, the headers, an empty line."""
    head, sep, content = piece.partition(b"\r\n\r\n")
    if not sep:
        raise OrthancError(ErrorCode.BAD_REQUEST, "A part of the multipart body has no header end")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, content


async def read_parts(chunks: AsyncIterator[bytes], boundary: str) -> AsyncIterator[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body as it arrives, one at a time: a WADO-RS answer of a whole study is never
    held whole in memory, only the part being received."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    buffer = bytearray(b"\r\n")  # RFC 2046: the CRLF before the first delimiter is implied at the start
    started = False
    searched = 0  # where the buffer may start to hold a delimiter not looked for yet
    async for chunk in chunks:
        buffer += chunk
        while True:
            if started and buffer.startswith(b"--"):
                return  # the close delimiter: the rest is the epilogue
            end = buffer.find(delimiter, searched)
            if end < 0:
                searched = max(0, len(buffer) - len(delimiter))
                break
            if started:
                yield _part(bytes(buffer[:end]))
            started = True
            del buffer[: end + len(delimiter)]
            searched = 0
    raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "The multipart body ends before its close delimiter")
