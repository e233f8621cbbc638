"""A series loaded as a volume of real-world values (HU, SUVbw, ...), and the memory cache that keeps a few.

Loading reads every header first (the kernel's ``read_header``: only the bytes before the pixel data), decides
the stack from them, then decodes one file at a time per worker (the kernel's ``decode_frame``, so every transfer
syntax the kernel renders) straight into the volume: nothing but the volume and the files being decoded is held.

The headers alone (a ``VolumeHeader``, cached apart from the volumes) place every slice and give the units and the
files' window, so a series' description and its slices on the acquisition plane need not wait for the whole volume:
one slice is decoded from its own file, by the same steps as in the volume, while the volume loads in the background.
Of a regular series the header is first provisional: the stack ordered from the index's main tags and one header
read (``read_provisional_header``), checked against each slice's own file when it is decoded, and replaced once every
header has been read in the background.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from isengard.context import ServerContext
from isengard.dicom.imaging import decode_frame, open_dataset
from isengard.dicom.imaging import first_number as number
from isengard.errors import ErrorCode, OrthancError
from isengard.model import Resource, ResourceType

from .geometry import FrameHeader, Geometry, Stack, assemble, floats, frames_of
from .suv import acquisition_time, suv_factor

if TYPE_CHECKING:
    from .reslice import Plane

#: How many values a computed window looks at, at most.
_WINDOW_SAMPLES = 1 << 20
#: How many headers are read at once (each is a small read of the storage, then a parse in a worker thread).
_HEADER_READS = 8
#: The problems a provisional stack may have: those of the positions alone, which the index holds.
_PROVISIONAL_PROBLEMS = frozenset({"NonUniformSpacing", "GantryTilt"})


class HeaderMismatch(Exception):
    """A slice's own file is not what the provisional header (the index and one header) said: its request is
    answered again from every header."""


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
    provisional: bool = False  # from the index and one header (``read_provisional_header``), not every header
    #: The named planes at a slice index made on this header (``reslice.make_plane``: what a stack asks, slice by
    #: slice), each made once. A series that changes has a header of its own; ``replace`` makes one with none.
    planes: dict[tuple[str, int], Plane] = field(default_factory=dict, init=False, repr=False, compare=False)

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


async def read_volume_header(context: ServerContext, series: Resource, instances: list[Resource]) -> VolumeHeader:
    """Read every header of a series (no pixel data), ``_HEADER_READS`` at a time, and order its frames into a
    stack (in a worker thread: half a millisecond a file, 500 files would hold the event loop)."""
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
    return _labelled(series_id, first, assemble(frames), acquisitions)


def _labelled(
    series_id: str, first: Dataset, stack: Stack, acquisitions: list[datetime.datetime], provisional: bool = False
) -> VolumeHeader:
    """The header of a stack: units, window and SUV factor from ``first`` (and the acquisition times)."""
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
        provisional=provisional,
    )


def _indexed_floats(value: str | None, count: int) -> np.ndarray | None:
    """A multi-valued main tag of the index (``-125.0\\-120.5\\-300``), as ``floats`` reads the file's."""
    return floats(value.split("\\"), count) if value else None


def _indexed_frames(instances: list[Resource]) -> list[FrameHeader] | None:
    """One frame per instance, placed by the main tags of the index (no size, spacing nor rescale yet), or None
    when an instance is multi-frame or lacks its position or orientation there."""
    frames = []
    for instance in instances:
        tags = instance.main_tags
        position = _indexed_floats(tags.get("ImagePositionPatient"), 3)
        orientation = _indexed_floats(tags.get("ImageOrientationPatient"), 6)
        if position is None or orientation is None or (number(tags.get("NumberOfFrames")) or 1) != 1:
            return None
        order = (int(number(tags.get("InstanceNumber")) or 0), 0)
        frames.append(
            FrameHeader(
                instance_id=instance.public_id,
                frame=0,
                rows=0,
                columns=0,
                position=position,
                orientation=orientation,
                pixel_spacing=None,
                slice_spacing=None,
                slope=1.0,
                intercept=0.0,
                window=None,
                localizer=False,
                order=order,
            )
        )
    return frames


def _same_place(frame: FrameHeader, other: FrameHeader) -> bool:
    """Whether a file's own frame is where, and of the size and kind, the provisional stack put it."""
    return (frame.rows, frame.columns, frame.localizer) == (other.rows, other.columns, other.localizer) and all(
        a is not None and b is not None and np.array_equal(a, b)
        for a, b in (
            (frame.position, other.position),
            (frame.orientation, other.orientation),
            (frame.pixel_spacing, other.pixel_spacing),
        )
    )


async def read_provisional_header(
    context: ServerContext, series: Resource, instances: list[Resource]
) -> tuple[VolumeHeader | None, int]:
    """The stack from the index's main tags and the header of its first slice alone, or None when that could be
    wrong in a way the slices' own files would not reveal; with the number of headers read (0 or 1).

    Every instance must be single-frame with its position and orientation in the index, in one orientation, at
    distinct positions. What only the other headers know (their size, spacing, ImageType, rescale) is taken from
    each slice's file when it is decoded, a slice that disagrees sending its request to the exact header (every
    header read, ``VolumeCache.exact``), which then replaces this one. A PET whose SUV factor depends on the
    acquisition times of every slice (DecayCorrection START) is not answered from one header.
    """
    indexed = _indexed_frames(instances)
    normal = indexed[0].normal if indexed else None
    if indexed is None or normal is None or len({tuple(np.round(f.orientation, 4)) for f in indexed}) > 1:
        return None, 0  # the index alone rules it out (several orientations: as ``assemble`` rounds them)
    first = min(indexed, key=lambda f: (float(f.position @ normal), f.order))  # type: ignore[operator]
    ds, has_pixels = await context.store.read_header(
        first.instance_id, known=next(i for i in instances if i.public_id == first.instance_id)
    )
    own = frames_of(ds, first.instance_id)
    if not has_pixels or len(own) != 1 or own[0].localizer or own[0].pixel_spacing is None:
        return None, 1
    reference = own[0]
    if not _same_place(
        reference, replace(first, rows=reference.rows, columns=reference.columns, pixel_spacing=reference.pixel_spacing)
    ):
        return None, 1
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality == "PT" and str(ds.get("DecayCorrection", "")).strip().upper() == "START":
        return None, 1
    frames = [
        reference
        if f.instance_id == reference.instance_id
        else replace(
            reference,
            instance_id=f.instance_id,
            position=f.position,
            orientation=f.orientation,
            order=f.order,
            window=None,
        )
        for f in indexed
    ]
    stack = await asyncio.to_thread(assemble, frames)
    if any(p["Type"] not in _PROVISIONAL_PROBLEMS for p in stack.problems) or stack.frames[0] is not reference:
        return None, 1
    moment = acquisition_time(ds)
    return _labelled(series.public_id, ds, stack, [moment] if moment else [], provisional=True), 1


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


def decode_slice(header: VolumeHeader, slot: int, data: bytes) -> np.ndarray:
    """Slice ``slot`` of the stack as (rows, columns) float32, decoded from its own file (``data``) by the very
    steps that fill the volume (rescale, then the factor to the units): the same values, bit for bit. Blocking:
    the caller runs it in a worker thread, with what it does next with the slice.

    With a provisional header the slice is rescaled by its file's own slope and intercept, and
    ``HeaderMismatch`` is raised when the file is not where, of the size or of the kind the header said."""
    frame = header.stack.frames[slot]
    columns, rows, _ = header.size
    values = np.empty((1, rows, columns), np.float32)
    _decode_into(values, data, [(0, frame)], own_header=header.provisional)
    if header.factor != 1.0:
        values[0] *= np.float32(header.factor)
    return values[0]


def _decode_into(
    voxels: np.ndarray, data: bytes, wanted: list[tuple[int, FrameHeader]], own_header: bool = False
) -> None:
    """Decode the frames of one file that the stack kept, rescaled by their own slope and intercept (read again
    from the file itself with ``own_header``: the stack's frames were placed without it)."""
    ds = open_dataset(data)
    own = frames_of(ds, wanted[0][1].instance_id) if own_header else []
    for slot, header in wanted:
        if own_header:
            if header.frame >= len(own) or not _same_place(own[header.frame], header):
                raise HeaderMismatch(f"instance {header.instance_id} is not what the index and one header said")
            header = own[header.frame]
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
        self.header_reads = 0  # DICOM headers read since the start: "HeaderReads" of /viewer/api/cache
        self._headers: OrderedDict[tuple[str, ...], asyncio.Task[VolumeHeader]] = OrderedDict()
        self._exact: OrderedDict[tuple[str, ...], asyncio.Task[VolumeHeader]] = OrderedDict()

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

    async def header(self, key: tuple[str, ...], read: HeaderReader) -> VolumeHeader:
        """The cached volume (its header is part of it), else the series' header, read once per key: provisional
        (the index and one header) when that is safe, until every header has been read (``exact``)."""
        volume = self.cached(key)
        if volume is not None:
            return volume
        task = self._headers.get(key)
        if task is None:
            for stale in [k for k in (*self._headers, *self._exact) if k[0] == key[0]]:
                self._headers.pop(stale, None)
                self._exact.pop(stale, None)
            task = self._remember(self._headers, key, self._first_header(read))
        else:
            self._headers.move_to_end(key)
        return await self._answer(self._headers, key, task)

    async def _first_header(self, read: HeaderReader) -> VolumeHeader:
        header, reads = await read.provisional()
        self.header_reads += reads
        if header is None:
            self.header_reads += len(read.series.children)
            return await read.every()
        return header

    async def exact(self, key: tuple[str, ...], read: HeaderReader) -> VolumeHeader:
        """The header from every header of the series (read once per key, and then answered by ``header`` too)."""
        header = await self.header(key, read)
        if not header.provisional:
            return header
        task = self._exact.get(key)
        if task is None:
            self.header_reads += len(read.series.children)
            task = self._remember(self._exact, key, read.every())
            task.add_done_callback(lambda done: self._settle(key, done))
        return await self._answer(self._exact, key, task)

    def _settle(self, key: tuple[str, ...], task: asyncio.Task[VolumeHeader]) -> None:
        """Every header read: it answers from now on in place of the provisional one."""
        if not task.cancelled() and task.exception() is None and self._exact.get(key) is task:
            self._remember(self._headers, key, task)

    @staticmethod
    def _remember(
        tasks: OrderedDict[tuple[str, ...], asyncio.Task[VolumeHeader]],
        key: tuple[str, ...],
        read: Awaitable[VolumeHeader],
    ) -> asyncio.Task[VolumeHeader]:
        task = asyncio.ensure_future(read)  # a task given (``_settle``) is the task itself
        task.add_done_callback(_retrieve)
        tasks[key] = task
        while len(tasks) > _HEADERS:
            tasks.popitem(last=False)
        return task

    @staticmethod
    async def _answer(
        tasks: OrderedDict[tuple[str, ...], asyncio.Task[VolumeHeader]],
        key: tuple[str, ...],
        task: asyncio.Task[VolumeHeader],
    ) -> VolumeHeader:
        try:
            return await asyncio.shield(task)
        except Exception:
            if tasks.get(key) is task:
                del tasks[key]  # read again next time: the error may not last (a file being stored)
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
            "HeaderReads": self.header_reads,
        }

    def clear(self) -> None:
        self._volumes.clear()
        self._headers.clear()
        self._exact.clear()


def series_key(series: Resource) -> tuple[str, ...]:
    return (series.public_id, series.last_update or "", str(len(series.children)))


@dataclass(frozen=True)
class HeaderReader:
    """How the header of a series is read: provisionally (None when that is not safe), or from every header."""

    context: ServerContext
    series: Resource

    async def _instances(self) -> list[Resource]:
        instances = await self.context.index.get_resources(ResourceType.INSTANCE, self.series.children)
        if not instances:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Series {self.series.public_id} has no instance")
        return instances

    async def provisional(self) -> tuple[VolumeHeader | None, int]:
        return await read_provisional_header(self.context, self.series, await self._instances())

    async def every(self) -> VolumeHeader:
        return await read_volume_header(self.context, self.series, await self._instances())


async def series_header(context: ServerContext, cache: VolumeCache, series: Resource) -> VolumeHeader:
    """The loaded volume of a series if it is cached, else its header (read once while the series is unchanged):
    provisional until every header has been read."""
    return await cache.header(series_key(series), HeaderReader(context, series))


async def series_exact_header(context: ServerContext, cache: VolumeCache, series: Resource) -> VolumeHeader:
    """The loaded volume of a series if it is cached, else its header from every header."""
    return await cache.exact(series_key(series), HeaderReader(context, series))


def _loader(
    context: ServerContext, cache: VolumeCache, series: Resource, threads: int
) -> Callable[[], Awaitable[Volume]]:
    async def load() -> Volume:
        return await load_volume(context, await series_exact_header(context, cache, series), threads)

    return load


async def series_volume(context: ServerContext, cache: VolumeCache, series: Resource, threads: int) -> Volume:
    """The volume of a series, from the cache while the series has not changed."""
    return await cache.get(series_key(series), _loader(context, cache, series, threads))


def prefetch_volume(
    context: ServerContext, cache: VolumeCache, series: Resource, header: VolumeHeader, threads: int
) -> None:
    """Start loading the volume in the background (once), unless it is cached; when it could not be kept, read
    every header at least, so that the provisional header is checked and replaced all the same."""
    key = series_key(series)
    if cache.cached(key) is not None:
        return
    if cache.fits(header.nbytes):
        cache.start(key, _loader(context, cache, series, threads))
    elif header.provisional:
        asyncio.ensure_future(series_exact_header(context, cache, series)).add_done_callback(_retrieve)
