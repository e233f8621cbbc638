"""Named definitions from a configuration option, plus the additions and deletions made over REST.

DICOM modalities and Orthanc peers work alike: the configuration names some, REST adds, replaces and deletes.
What REST changed is kept in the index (one property: {"added": {name: definition}, "deleted": [names of the
configuration's]}), so every server on one database sees the same list and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import OrthancError

if TYPE_CHECKING:
    from .context import ServerContext

T = TypeVar("T")

#: Read-modify-write of the stored definitions, one at a time in this process.
_write_lock = asyncio.Lock()


class Registry(Generic[T]):
    """The definitions of one option; subclasses say how one is read, stored, and what "unknown" answers."""

    #: The configuration option, also the name of the index property holding the REST changes.
    option: str

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def parse(self, name: str, value: Any, *, stored: bool) -> T:
        """One definition, from the configuration or (``stored``) from the index."""
        raise NotImplementedError

    def to_stored(self, item: T) -> Any:
        """What the index keeps of a definition added over REST."""
        raise NotImplementedError

    def unknown(self, name: str, *, deleting: bool) -> OrthancError:
        """The error for a name that is not defined (Orthanc words it differently for GET and DELETE)."""
        raise NotImplementedError

    def configured(self) -> dict[str, Any]:
        """The definitions of the configuration file (a subclass whose definitions sit deeper says where)."""
        return self.ctx.config.dict(self.option)

    async def _stored(self) -> dict[str, Any]:
        raw = await self.ctx.index.get_property(self.option)
        return json.loads(raw) if raw else {"added": {}, "deleted": []}

    async def all(self) -> dict[str, T]:
        stored = await self._stored()
        found = {name: self.parse(name, v, stored=False) for name, v in self.configured().items()}
        for name in stored["deleted"]:
            found.pop(name, None)
        found.update({name: self.parse(name, v, stored=True) for name, v in stored["added"].items()})
        return dict(sorted(found.items()))

    async def get(self, name: str) -> T:
        found = (await self.all()).get(name)
        if found is None:
            raise self.unknown(name, deleting=False)
        return found

    async def put(self, name: str, item: T) -> None:
        async with _write_lock:
            stored = await self._stored()
            stored["added"][name] = self.to_stored(item)
            stored["deleted"] = [n for n in stored["deleted"] if n != name]
            await self.ctx.index.set_property(self.option, json.dumps(stored))

    async def delete(self, name: str) -> None:
        async with _write_lock:
            if name not in await self.all():
                raise self.unknown(name, deleting=True)
            stored = await self._stored()
            stored["added"].pop(name, None)
            if name in self.configured() and name not in stored["deleted"]:
                stored["deleted"].append(name)
            await self.ctx.index.set_property(self.option, json.dumps(stored))
