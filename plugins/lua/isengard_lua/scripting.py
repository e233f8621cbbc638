"""The scripts of one server: loading ``LuaScripts``, calling Orthanc's callbacks, the heart beat.

Callbacks are called by name, as Orthanc does: a script defines ``function OnStoredInstance(...)`` and the
latest definition wins. Each call is logged when it fails (with the chunk and line Lua reports) and answers a
fallback chosen by the caller, so a broken script never stops an ingest or a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import OrthancFunctions, rest_request
from .runtime import LuaThread, from_lua

if TYPE_CHECKING:
    from quart import Quart

    from isengard.config import Config

log = logging.getLogger("isengard.lua")

#: Orthanc's callbacks (Orthanc Book, users/lua.rst), called by name.
CALLBACKS = (
    "Initialize",
    "Finalize",
    "OnStoredInstance",
    "ReceivedInstanceFilter",
    "ReceivedCStoreInstanceFilter",
    "IncomingHttpRequestFilter",
    "OnStablePatient",
    "OnStableStudy",
    "OnStableSeries",
    "OnDeletedPatient",
    "OnDeletedStudy",
    "OnDeletedSeries",
    "OnDeletedInstance",
    "OnUpdatedPatient",
    "OnUpdatedStudy",
    "OnUpdatedSeries",
    "OnUpdatedInstance",
    "OnHeartBeat",
    "IncomingFindRequestFilter",
    "IncomingWorklistRequestFilter",
    "OutgoingFindRequestFilter",
    "OnJobSubmitted",
    "OnJobSuccess",
    "OnJobFailure",
)


def script_paths(config: Config) -> list[Path]:
    """``LuaScripts``, relative to the configuration file's folder as in Orthanc."""
    base = Path(config.source) if config.source else Path.cwd()
    folder = base if base.is_dir() else base.parent
    return [folder / Path(str(p)).expanduser() for p in config.list("LuaScripts")]


class Scripting:
    """The interpreter, Orthanc's functions bound to it, and the callbacks the hooks call."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.thread = LuaThread(loop, max_instructions=config.int("LuaMaxInstructions"), callbacks=CALLBACKS)
        self.functions = OrthancFunctions(self.thread, config)
        self._heart_beat: asyncio.Task[None] | None = None

    @property
    def app(self) -> Quart | None:
        return self.functions.app

    async def start(self) -> None:
        self.thread.start()
        for path in script_paths(self.config):
            await self.load(path)

    async def load(self, path: Path) -> None:
        try:
            source = await asyncio.to_thread(path.read_bytes)
        except OSError as e:
            log.error("cannot read the Lua script %s: %s", path, e)
            return
        try:
            await self.thread.submit(lambda: self.thread.execute(source, f"@{path}"))
            log.info("loaded the Lua script %s", path)
        except Exception as e:
            log.error("Lua error in the script %s: %s", path, e)

    async def serving(self) -> None:
        """The REST API answers: Initialize() may use it, and the heart beat starts."""
        await self.callback("Initialize")
        period = self.config.int("LuaHeartBeatPeriod")
        if period > 0:
            self._heart_beat = asyncio.create_task(self._beat(period), name="isengard-lua-heart-beat")

    async def stop(self) -> None:
        if self._heart_beat is not None:
            self._heart_beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart_beat
        await self.callback("Finalize")
        await asyncio.to_thread(self.thread.stop)

    async def _beat(self, period: int) -> None:
        while True:
            await asyncio.sleep(period)
            await self.callback("OnHeartBeat")

    async def callback(self, name: str, *args: Any, fallback: Any = None) -> Any:
        """Call ``name`` if a script defines it: its answer as a Python value, ``None`` if undefined,
        ``fallback`` if it failed (the error is logged)."""
        if not self.defines(name):
            return None

        def run() -> Any:
            _, answer = self.thread.call(name, *args)
            return from_lua(answer)

        try:
            return await self.thread.submit(run)
        except Exception as e:
            log.error("Lua error in %s(): %s", name, e)
            return fallback

    def defines(self, name: str) -> bool:
        return name in self.thread.defined

    async def execute(self, source: bytes) -> str:
        """Run a script sent over REST; Lua errors propagate to the caller."""
        return await self.thread.submit(lambda: self.thread.capture(source))

    async def get_json(self, path: str) -> Any:
        """A REST answer for a callback's arguments (not subject to IncomingHttpRequestFilter)."""
        if self.app is None:
            return {}
        status, body = await rest_request(self.app, "GET", path)
        return json.loads(body) if status < 400 else {}
