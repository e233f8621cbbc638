"""StableAge: a patient, study or series is stable once no instance arrived for it during StableAge seconds.

Kept in memory, as in Orthanc: after a restart every resource counts as stable. When a resource becomes stable
the tracker logs the ``Stable*`` change and publishes ``on_stable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .model import ResourceType

log = logging.getLogger("isengard.stability")


class StabilityTracker:
    def __init__(
        self, age: float, on_stable: Callable[[ResourceType, str], Awaitable[None]], *, period: float = 1.0
    ) -> None:
        self.age = age
        self._on_stable = on_stable
        self._period = min(period, max(age / 2, 0.05))
        self._deadlines: dict[tuple[ResourceType, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, ids: dict[ResourceType, str]) -> None:
        deadline = time.monotonic() + self.age
        for level, public_id in ids.items():
            if level is not ResourceType.INSTANCE:
                self._deadlines[(level, public_id)] = deadline

    def forget(self, level: ResourceType, public_id: str) -> None:
        self._deadlines.pop((level, public_id), None)

    def is_stable(self, level: ResourceType, public_id: str) -> bool:
        return (level, public_id) not in self._deadlines

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="isengard-stability")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            now = time.monotonic()
            due = sorted((k for k, t in self._deadlines.items() if t <= now), key=lambda k: -k[0])
            for key in due:
                if self._deadlines.get(key, now + 1) <= now:
                    del self._deadlines[key]
                    try:
                        await self._on_stable(*key)
                    except Exception:
                        log.exception("could not record that %s %s is stable", key[0].label, key[1])
