"""Delivery of events to plugins, in order, off the request path.

Writers publish once the index committed; one task per server delivers to the hooks in publication order, so a
slow or failing plugin never delays or breaks an ingest, and each change reaches ``on_change`` exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pluggy

from .plugins import resolve

log = logging.getLogger("isengard.events")


class EventBus:
    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="isengard-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    def publish(self, hook: str, **kwargs: Any) -> None:
        """Queue a hook call (``on_change``, ``on_stored``...); delivered later, in order."""
        self._idle.clear()
        self._queue.put_nowait((hook, kwargs))

    async def drained(self) -> None:
        """Wait until everything published so far was delivered (tests, shutdown, /tools/reset)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                self._idle.set()
                return
            hook, kwargs = item
            # Each implementation on its own: one failing plugin must not deprive the others of the event.
            for impl in reversed(getattr(self._pm.hook, hook).get_hookimpls()):
                try:
                    await resolve(impl.function(*[kwargs[name] for name in impl.argnames]))
                except Exception:
                    log.exception("plugin %s failed while handling %s", impl.plugin_name, hook)
            if self._queue.empty():
                self._idle.set()
