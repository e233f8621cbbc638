"""Request bodies read as they arrive, with flow control.

Quart's receiver task appends every chunk the server gets to the request's buffer however slowly the view reads
it: a view spooling a 4 GB upload to a slow disk, or storing each part of a STOW-RS body before the next, would
see the rest of the body pile up in memory. With these classes, once a view reads the body chunk by chunk
(``async for chunk in request.body``), the receiver waits while more than :data:`FLOW_HIGH_WATER` bytes are
unread: the server stops reading the socket and TCP slows the client down. A view that awaits the whole body
(``await request.get_data()``) is unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

from hypercorn.typing import ASGIReceiveCallable
from quart import current_app, request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers import Request
from quart.wrappers.request import Body

from ..errors import ErrorCode, OrthancError

#: Unread bytes beyond which the receiver of a body read chunk by chunk waits for the view.
FLOW_HIGH_WATER = 4 * 1024 * 1024


class FlowControlledBody(Body):
    """Quart's body buffer, telling its receiver when a view reading it chunk by chunk has caught up."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._streamed = False
        self._drained = asyncio.Event()
        self._drained.set()

    async def __anext__(self) -> bytes:
        self._streamed = True
        try:
            return await super().__anext__()
        finally:
            self._drained.set()

    def __await__(self) -> Generator[Any, None, Any]:
        self._streamed = False  # the whole body is wanted (as by an after_request drain): never hold it back
        self._drained.set()
        return super().__await__()

    def append(self, data: bytes) -> None:
        super().append(data)
        if self._streamed and len(self._data) > FLOW_HIGH_WATER:
            self._drained.clear()

    async def drained(self) -> None:
        """Until the view has read enough of what arrived (at once when it does not read chunk by chunk)."""
        await self._drained.wait()


class FlowControlledRequest(Request):
    body_class = FlowControlledBody


class FlowControlledConnection(ASGIHTTPConnection):
    """Quart's HTTP connection, whose receiver waits for the view when its body buffer is full."""

    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.request":
                request.body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    request.body.set_complete()
                elif isinstance(request.body, FlowControlledBody):
                    await request.body.drained()
            elif message["type"] == "http.disconnect":
                return


async def body_chunks() -> AsyncIterator[bytes]:
    """The request body as it arrives, within the upload limit: Quart checks a declared Content-Length, not the
    bytes a chunked body (which has none) actually brings."""
    limit, size = int(current_app.config["MAX_CONTENT_LENGTH"]), 0
    async for chunk in request.body:
        size += len(chunk)
        if size > limit:
            message = f"The body exceeds the upload limit ({limit} bytes)"
            raise OrthancError(ErrorCode.BAD_REQUEST, message, http_status=413)
        yield chunk
