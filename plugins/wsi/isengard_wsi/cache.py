"""Pyramids and frame locations, kept in memory per server and series until the series changes.

Building a pyramid reads the header of every instance of the series, and locating frames walks the pixel data
once: both are far slower than a tile, so they are kept (orthanc-wsi keeps its pyramids the same way). Stored
frames are read by groups of neighbours and kept too, up to a size: each storage read costs a trip to a worker
thread, a good part of a tile's time when the file is in the page cache. A stored or deleted instance drops what
it could have changed. The on-the-fly pyramids of single frames are kept the same way, fewer of them as they
hold decoded pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from isengard.context import ServerContext
from isengard.dicom.imaging import Extraction, decode_frame, extract, open_dataset
from isengard.errors import unknown_resource
from isengard.model import ResourceType

from .pyramid import FramePyramid, InstanceGeometry, Pyramid, TileSource, assemble, instance_geometry
from .tiles import FrameRanges, frame_group, frame_ranges, read_frames, read_from_file

#: How many series keep their pyramid; the least recently used goes first.
MAX_PYRAMIDS = 64
#: How many decoded frames keep their on-the-fly pyramid (each holds the frame as RGB, plus a third for its levels).
MAX_FRAME_PYRAMIDS = 4
#: Bytes of stored frames kept (as they are stored: JPEG tiles are served from here), least recently used first out.
MAX_FRAME_BYTES = 32 * 1024 * 1024
#: Frames are read by blocks of about this many bytes of neighbours: a row of tiles on a screen, a few reads.
READ_AHEAD = 256 * 1024


@dataclass
class PyramidCache:
    """The pyramids and frame ranges of one server."""

    context: ServerContext
    pyramids: dict[str, Pyramid] = field(default_factory=dict)
    ranges: dict[str, FrameRanges | None] = field(default_factory=dict)
    frames: dict[tuple[str, int], asyncio.Task[FramePyramid]] = field(default_factory=dict)
    stored: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (instance, frame): least recent first
    stored_bytes: int = 0
    reading: dict[tuple[str, int], asyncio.Task[list[bytes]]] = field(default_factory=dict)  # by first frame

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
        """The stored bytes of a tile's frame, read with its group of neighbours (one read for the requests
        asking for any of them at the same time) unless it is kept already."""
        key = (source.instance_id, source.frame)
        data = self._take(key)
        if data is None:
            instance = source.instance_id
            if instance not in self.ranges:
                count = pyramid.instances[instance].frames
                self.ranges[instance] = await frame_ranges(self.context, instance, count)
            ranges = self.ranges[instance]
            frames = None
            if ranges is not None and ranges.ranges is not None:
                group = frame_group(ranges.ranges, source.frame, READ_AHEAD)
                task = self.reading.get((instance, group.start))
                if task is None:
                    task = asyncio.ensure_future(read_frames(self.context, ranges, group))
                    self.reading[(instance, group.start)] = task
                    task.add_done_callback(lambda _: self.reading.pop((instance, group.start), None))
                frames = await asyncio.shield(task)
                if frames is None:  # not one fragment per frame: from now on, frames come from the whole file
                    self.ranges[instance] = None
            if frames is None:
                data = await read_from_file(self.context, instance, source.frame)
            else:
                for number, frame in zip(group, frames, strict=True):
                    self._keep((instance, number), frame)
                data = frames[source.frame - group.start]
        self._keep(key, data)
        return data

    def _take(self, key: tuple[str, int]) -> bytes | None:
        data = self.stored.pop(key, None)
        if data is not None:
            self.stored_bytes -= len(data)
        return data

    def _keep(self, key: tuple[str, int], data: bytes) -> None:
        self._take(key)
        self.stored[key] = data  # most recently used last
        self.stored_bytes += len(data)
        while self.stored_bytes > MAX_FRAME_BYTES:
            self._take(next(iter(self.stored)))

    async def frame_pyramid(self, instance_id: str, frame: int) -> FramePyramid:
        """The on-the-fly pyramid of one frame, decoded once: the tiles a viewer asks for together share it."""
        if await self.context.index.lookup(instance_id) is not ResourceType.INSTANCE:
            self.forget_instance(instance_id)
            raise unknown_resource(instance_id)
        key = (instance_id, frame)
        task = self.frames.pop(key, None)
        if task is None:
            task = asyncio.ensure_future(self._decode(instance_id, frame))
        self.frames[key] = task  # most recently used last
        while len(self.frames) > MAX_FRAME_PYRAMIDS:
            self.frames.pop(next(iter(self.frames)))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if task.done() and self.frames.get(key) is task:
                del self.frames[key]  # an undecodable frame is not kept
            raise

    async def _decode(self, instance_id: str, frame: int) -> FramePyramid:
        data = await self.context.store.read_dicom(instance_id)

        def build() -> FramePyramid:
            """8-bit samples as they are (orthanc-wsi converts them to RGB); deeper ones stretched, as previews."""
            decoded = decode_frame(open_dataset(data), frame)
            pixels = decoded.pixels if decoded.pixels.dtype == np.uint8 else extract(decoded, Extraction.PREVIEW)
            return FramePyramid.build(instance_id, frame, pixels)

        return await asyncio.to_thread(build)

    def forget(self, series_id: str) -> None:
        pyramid = self.pyramids.pop(series_id, None)
        instances = pyramid.instances if pyramid else {}
        for instance_id in instances:
            self.ranges.pop(instance_id, None)
        self._drop_stored(lambda instance_id: instance_id in instances)

    def _drop_stored(self, dropped: Callable[[str], bool]) -> None:
        for key in [key for key in self.stored if dropped(key[0])]:
            self._take(key)

    def forget_instance(self, instance_id: str) -> None:
        for key in [key for key in self.frames if key[0] == instance_id]:
            del self.frames[key]
        self._drop_stored(lambda stored: stored == instance_id)
        for series_id, pyramid in list(self.pyramids.items()):
            if instance_id in pyramid.instances:
                self.forget(series_id)

    def clear(self) -> None:
        self.pyramids.clear()
        self.ranges.clear()
        self.frames.clear()
        self.stored.clear()
        self.stored_bytes = 0
