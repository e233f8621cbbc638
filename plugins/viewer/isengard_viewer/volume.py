"""A series loaded as a volume of real-world values (HU, SUVbw, ...), and the memory cache that keeps a few.

Loading reads every header first (the kernel's ``read_header``: only the bytes before the pixel data), decides
the stack from them, then decodes one file at a time per worker (the kernel's ``decode_frame``, so every transfer
syntax the kernel renders) straight into the volume: nothing but the volume and the files being decoded is held.

The headers alone (a ``VolumeHeader``, cached apart from the volumes) place every slice and give the units and the
files' window, so a series' description and its slices on the acquisition plane need not wait for the whole volume:
one slice is decoded from its own file, by the same steps as in the volume, while the volume loads in the background.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from isengard.context import ServerContext
from isengard.dicom.imaging import decode_frame, open_dataset
from isengard.errors import ErrorCode, OrthancError
from isengard.model import Resource, ResourceType

from .geometry import FrameHeader, Geometry, Stack, assemble, frames_of
from .suv import acquisition_time, suv_factor

#: How many values a computed window looks at, at most.
_WINDOW_SAMPLES = 1 << 20
#: How many headers are read at once (each is a small read of the storage, then a parse in a worker thread).
_HEADER_READS = 8


@dataclass(kw_only=True)
class VolumeHeader:
    """What the headers of a series say about its volume: where each slice lies, units, the files' window and the
    factor to the units (SUVbw), but no values."""

    series_id: str
    stack: Stack
    units: str
    window: tuple[float, float] | None  # the files' first WindowCenter/WindowWidth, in the units
    modality: str
    frame_of_reference: str | None
    factor: float = 1.0  # rescaled values times this are in ``units`` (SUVbw of a PET)

    @property
    def geometry(self) -> Geometry | None:
        return self.stack.geometry

    @property
    def size(self) -> tuple[int, int, int]:
        first = self.stack.frames[0]
        return first.columns, first.rows, len(self.stack.frames)

    @property
    def nbytes(self) -> int:
        """The memory the decoded volume takes (float32 values)."""
        columns, rows, slices = self.size
        return columns * rows * slices * 4

    def describe(self) -> dict[str, Any]:
        """The JSON of /viewer/api/series/{id}/volume; ``Range`` is null until the values are loaded."""
        geometry = self.geometry
        window = self.window
        return {
            "ID": self.series_id,
            "Size": list(self.size),
            "Spacing": [round(v, 6) for v in geometry.spacing] if geometry else None,
            "Origin": geometry.origins[0].tolist() if geometry else None,
            "Directions": [geometry.row.tolist(), geometry.column.tolist(), geometry.normal.tolist()]
            if geometry
            else None,
            "Units": self.units,
            "DefaultWindow": {"Center": window[0], "Width": window[1], "Source": "File"} if window else None,
            "Range": None,
            "FrameOfReferenceUID": self.frame_of_reference,
            "Modality": self.modality,
            "Slices": [[f.instance_id, f.frame] for f in self.stack.frames],
            "Problems": self.stack.problems,
        }


@dataclass(kw_only=True)
class Volume(VolumeHeader):
    """Values as (slices, rows, columns) float32, and what places and labels them."""

    voxels: np.ndarray
    window: tuple[float, float]
    window_source: str  # "File" or "Computed"
    value_range: tuple[float, float]

    @property
    def size(self) -> tuple[int, int, int]:
        slices, rows, columns = self.voxels.shape
        return columns, rows, slices

    def describe(self) -> dict[str, Any]:
        center, width = self.window
        return {
            **super().describe(),
            "DefaultWindow": {"Center": center, "Width": width, "Source": self.window_source},
            "Range": list(self.value_range),
        }


async def read_volume_header(context: ServerContext, series: Resource) -> VolumeHeader:
    """Read the headers of a series (no pixel data), ``_HEADER_READS`` at a time, and order its frames into a
    stack (in a worker thread: half a millisecond a file, 500 files would hold the event loop)."""
    instances = await context.index.get_resources(ResourceType.INSTANCE, series.children)
    if not instances:
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Series {series.public_id} has no instance")
    limit = asyncio.Semaphore(_HEADER_READS)

    async def read(instance: Resource) -> tuple[str, Dataset, bool]:
        async with limit:
            return (instance.public_id, *await context.store.read_header(instance.public_id, known=instance))

    headers = await asyncio.gather(*(read(instance) for instance in instances))
    return await asyncio.to_thread(_volume_header, series.public_id, headers)


def _volume_header(series_id: str, headers: list[tuple[str, Dataset, bool]]) -> VolumeHeader:
    frames: list[FrameHeader] = []
    first: Dataset | None = None
    acquisitions: list[datetime.datetime] = []
    for instance_id, ds, has_pixels in headers:
        if not has_pixels:
            continue
        first = first or ds
        frames.extend(frames_of(ds, instance_id))
        if (moment := acquisition_time(ds)) is not None:
            acquisitions.append(moment)
    if first is None or not frames:
        raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Series {series_id} has no image", http_status=415)
    stack = assemble(frames)
    modality = str(first.get("Modality", "")).strip().upper()
    units = "HU" if modality == "CT" else str(first.get("RescaleType", "") or "").strip() or "US"
    window = next((f.window for f in stack.frames if f.window), None)
    factor = 1.0
    if modality == "PT":
        suv = suv_factor(first, acquisitions)
        units = str(first.get("Units", "") or "").strip().upper() or "US"
        if suv.factor is not None:
            factor, units = suv.factor, "SUVbw"
            window = (window[0] * factor, window[1] * factor) if window else None
        else:
            stack.problems.append({"Type": "SuvNotComputable", "Details": suv.reason})
    return VolumeHeader(
        series_id=series_id,
        stack=stack,
        units=units,
        window=window,
        modality=modality,
        frame_of_reference=str(first.get("FrameOfReferenceUID", "")) or None,
        factor=factor,
    )


async def load_volume(context: ServerContext, header: VolumeHeader, threads: int) -> Volume:
    """Decode and rescale the frames of a stack, ``threads`` files at a time."""
    columns, rows, slices = header.size
    voxels = np.empty((slices, rows, columns), np.float32)
    slots: dict[str, list[tuple[int, FrameHeader]]] = {}
    for slot, frame in enumerate(header.stack.frames):
        slots.setdefault(frame.instance_id, []).append((slot, frame))
    limit = asyncio.Semaphore(threads)

    async def decode(instance_id: str) -> None:
        async with limit:
            data = await context.store.read_dicom(instance_id)
            await asyncio.to_thread(_decode_into, voxels, data, slots[instance_id])

    await asyncio.gather(*(decode(instance_id) for instance_id in slots))
    value_range, computed = await asyncio.to_thread(_finish, voxels, header.factor)
    return Volume(
        series_id=header.series_id,
        stack=header.stack,
        units=header.units,
        modality=header.modality,
        frame_of_reference=header.frame_of_reference,
        factor=header.factor,
        voxels=voxels,
        window=header.window or computed,
        window_source="File" if header.window else "Computed",
        value_range=value_range,
    )


async def decode_slice(context: ServerContext, header: VolumeHeader, slot: int) -> np.ndarray:
    """Slice ``slot`` of the stack as (rows, columns) float32, decoded from its own file by the very steps that
    fill the volume (rescale, then the factor to the units): the same values, bit for bit."""
    frame = header.stack.frames[slot]
    columns, rows, _ = header.size
    values = np.empty((1, rows, columns), np.float32)
    data = await context.store.read_dicom(frame.instance_id)

    def decode() -> None:
        _decode_into(values, data, [(0, frame)])
        if header.factor != 1.0:
            values[0] *= np.float32(header.factor)

    await asyncio.to_thread(decode)
    return values[0]


def _decode_into(voxels: np.ndarray, data: bytes, wanted: list[tuple[int, FrameHeader]]) -> None:
    """Decode the frames of one file that the stack kept, rescaled by their own slope and intercept."""
    ds = open_dataset(data)
    for slot, header in wanted:
        frame = decode_frame(ds, header.frame)
        if frame.is_color:
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "A colour series is not a volume", http_status=415)
        if frame.pixels.shape != voxels.shape[1:]:
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_SIZE, "The frames of the series differ in size")
        np.multiply(frame.pixels, header.slope, out=voxels[slot], casting="unsafe")
        voxels[slot] += np.float32(header.intercept)


def _finish(voxels: np.ndarray, factor: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Scale to the final units in place; return the range of values and a window from the 1st to the 99th
    percentile of (a sample of) them, for series whose files have none."""
    if factor != 1.0:
        voxels *= np.float32(factor)
    value_range = (float(voxels.min()), float(voxels.max()))
    sample = voxels.ravel()[:: max(1, voxels.size // _WINDOW_SAMPLES)]
    low, high = (float(v) for v in np.percentile(sample, [1, 99]))
    if high <= low:
        low, high = value_range
    return value_range, (round((low + high) / 2, 3), round(max(high - low, 1.0), 3))


#: How many series' headers are kept (a 500-slice series' take about half a megabyte).
_HEADERS = 32


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception as retrieved: a background load that fails is answered to whoever waits for it,
    and is not worth a "never retrieved" warning when nobody does."""
    if not task.cancelled():
        task.exception()


class VolumeCache:
    """The most recently used volumes up to a total size (``CacheSize``), and the headers of the last series.

    A key is the series with its last update and number of instances, so a series that changes is loaded again.
    A load is a task of its own, shared by every request that needs that volume meanwhile (one load per key at a
    time), which also lets it go on in the background, and survive a client that hangs up.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.loads = 0  # volumes loaded since the start: what /viewer/api/cache reports as "Loads"
        self._volumes: OrderedDict[tuple[str, ...], Volume] = OrderedDict()
        self._loading: dict[tuple[str, ...], asyncio.Task[Volume]] = {}
        self._headers: OrderedDict[tuple[str, ...], asyncio.Task[VolumeHeader]] = OrderedDict()

    def cached(self, key: tuple[str, ...]) -> Volume | None:
        volume = self._volumes.get(key)
        if volume is not None:
            self._volumes.move_to_end(key)
        return volume

    def start(self, key: tuple[str, ...], load: Callable[[], Awaitable[Volume]]) -> asyncio.Task[Volume]:
        """The task loading ``key``: the one running, else a new one."""
        task = self._loading.get(key)
        if task is None:
            self.loads += 1
            task = asyncio.create_task(self._load(key, load))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        return task

    async def _load(self, key: tuple[str, ...], load: Callable[[], Awaitable[Volume]]) -> Volume:
        try:
            volume = await load()
        finally:
            del self._loading[key]
        self._store(key, volume)
        return volume

    async def get(self, key: tuple[str, ...], load: Callable[[], Awaitable[Volume]]) -> Volume:
        volume = self.cached(key)
        return volume if volume is not None else await asyncio.shield(self.start(key, load))

    async def header(self, key: tuple[str, ...], read: Callable[[], Awaitable[VolumeHeader]]) -> VolumeHeader:
        """The cached volume (its header is part of it), else the series' headers, read once per key."""
        volume = self.cached(key)
        if volume is not None:
            return volume
        task = self._headers.get(key)
        if task is None:
            for stale in [k for k in self._headers if k[0] == key[0]]:
                del self._headers[stale]
            task = asyncio.create_task(read())
            task.add_done_callback(_retrieve)
            self._headers[key] = task
            while len(self._headers) > _HEADERS:
                self._headers.popitem(last=False)
        else:
            self._headers.move_to_end(key)
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._headers.get(key) is task:
                del self._headers[key]  # read again next time: the error may not last (a file being stored)
            raise

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.capacity

    def _store(self, key: tuple[str, ...], volume: Volume) -> None:
        for stale in [k for k in self._volumes if k[0] == key[0]]:
            del self._volumes[stale]
        if not self.fits(volume.voxels.nbytes):
            return
        self._volumes[key] = volume
        while sum(v.voxels.nbytes for v in self._volumes.values()) > self.capacity:
            self._volumes.popitem(last=False)

    def describe(self) -> dict[str, Any]:
        """The JSON of /viewer/api/cache."""
        return {
            "CacheSize": self.capacity // (1024 * 1024),
            "Bytes": sum(v.voxels.nbytes for v in self._volumes.values()),
            "Volumes": [{"ID": key[0], "Bytes": v.voxels.nbytes} for key, v in self._volumes.items()],
            "Loading": [key[0] for key in self._loading],
            "Loads": self.loads,
        }

    def clear(self) -> None:
        self._volumes.clear()
        self._headers.clear()


def series_key(series: Resource) -> tuple[str, ...]:
    return (series.public_id, series.last_update or "", str(len(series.children)))


async def series_header(context: ServerContext, cache: VolumeCache, series: Resource) -> VolumeHeader:
    """The loaded volume of a series if it is cached, else its headers (read once while the series is unchanged)."""
    return await cache.header(series_key(series), lambda: read_volume_header(context, series))


def _loader(
    context: ServerContext, cache: VolumeCache, series: Resource, threads: int
) -> Callable[[], Awaitable[Volume]]:
    async def load() -> Volume:
        return await load_volume(context, await series_header(context, cache, series), threads)

    return load


async def series_volume(context: ServerContext, cache: VolumeCache, series: Resource, threads: int) -> Volume:
    """The volume of a series, from the cache while the series has not changed."""
    return await cache.get(series_key(series), _loader(context, cache, series, threads))


def prefetch_volume(
    context: ServerContext, cache: VolumeCache, series: Resource, header: VolumeHeader, threads: int
) -> None:
    """Start loading the volume in the background (once), unless it is cached or could not be kept."""
    key = series_key(series)
    if cache.cached(key) is None and cache.fits(header.nbytes):
        cache.start(key, _loader(context, cache, series, threads))
