"""Pyramids and frame locations, kept in memory per server and series until the series changes.

Building a pyramid reads the header of every instance of the series, and locating frames walks the pixel data
once: both are far slower than a tile, so they are kept (orthanc-wsi keeps its pyramids the same way). A stored
or deleted instance drops what it could have changed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from isengard.context import ServerContext
from isengard.errors import unknown_resource
from isengard.model import ResourceType

from .pyramid import InstanceGeometry, Pyramid, TileSource, assemble, instance_geometry
from .tiles import FrameRanges, frame_ranges, read_frame

#: How many series keep their pyramid; the least recently used goes first.
MAX_PYRAMIDS = 64


@dataclass
class PyramidCache:
    """The pyramids and frame ranges of one server."""

    context: ServerContext
    pyramids: dict[str, Pyramid] = field(default_factory=dict)
    ranges: dict[str, FrameRanges | None] = field(default_factory=dict)

    async def pyramid(self, series_id: str) -> Pyramid:
        """The pyramid of a series; an unknown series, or one without a pyramid level, is a 404."""
        found = self.pyramids.pop(series_id, None)
        if found is None:
            found = await self._build(series_id)
        self.pyramids[series_id] = found  # most recently used last
        while len(self.pyramids) > MAX_PYRAMIDS:
            self.forget(next(iter(self.pyramids)))
        return found

    async def _build(self, series_id: str) -> Pyramid:
        if await self.context.index.lookup(series_id) is not ResourceType.SERIES:
            raise unknown_resource(series_id)
        instances = await self.context.index.instances_of(ResourceType.SERIES, series_id)
        headers = await asyncio.gather(*(self.context.store.read_header(i) for i in instances))
        geometries: list[InstanceGeometry] = []
        for instance_id, (ds, _) in zip(instances, headers, strict=True):
            geometry = instance_geometry(instance_id, ds)
            if geometry is not None:
                geometries.append(geometry)
        return assemble(series_id, geometries)

    async def frame(self, pyramid: Pyramid, source: TileSource) -> bytes:
        """The stored bytes of a tile's frame."""
        if source.instance_id not in self.ranges:
            count = pyramid.instances[source.instance_id].frames
            self.ranges[source.instance_id] = await frame_ranges(self.context, source.instance_id, count)
        return await read_frame(self.context, source, self.ranges[source.instance_id])

    def forget(self, series_id: str) -> None:
        pyramid = self.pyramids.pop(series_id, None)
        for instance_id in pyramid.instances if pyramid else ():
            self.ranges.pop(instance_id, None)

    def forget_instance(self, instance_id: str) -> None:
        for series_id, pyramid in list(self.pyramids.items()):
            if instance_id in pyramid.instances:
                self.forget(series_id)

    def clear(self) -> None:
        self.pyramids.clear()
        self.ranges.clear()
