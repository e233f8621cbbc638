"""A series loaded as a volume of real-world values (HU, SUVbw, ...), and the memory cache that keeps a few.

Loading reads every header first (the kernel's ``read_header``: only the bytes before the pixel data), decides
the stack from them, then decodes one file at a time per worker (the kernel's ``decode_frame``, so every transfer
syntax the kernel renders) straight into the volume: nothing but the volume and the files being decoded is held.
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


@dataclass
class Volume:
    """Values as (slices, rows, columns) float32, and what places and labels them."""

    series_id: str
    voxels: np.ndarray
    stack: Stack
    units: str
    window: tuple[float, float]
    window_source: str  # "File" or "Computed"
    modality: str
    frame_of_reference: str | None
    value_range: tuple[float, float]

    @property
    def geometry(self) -> Geometry | None:
        return self.stack.geometry

    @property
    def size(self) -> tuple[int, int, int]:
        slices, rows, columns = self.voxels.shape
        return columns, rows, slices

    def describe(self) -> dict[str, Any]:
        """The JSON of /viewer/api/series/{id}/volume."""
        geometry = self.geometry
        return {
            "ID": self.series_id,
            "Size": list(self.size),
            "Spacing": [round(v, 6) for v in geometry.spacing] if geometry else None,
            "Origin": geometry.origins[0].tolist() if geometry else None,
            "Directions": [geometry.row.tolist(), geometry.column.tolist(), geometry.normal.tolist()]
            if geometry
            else None,
            "Units": self.units,
            "DefaultWindow": {"Center": self.window[0], "Width": self.window[1], "Source": self.window_source},
            "Range": list(self.value_range),
            "FrameOfReferenceUID": self.frame_of_reference,
            "Modality": self.modality,
            "Slices": [[f.instance_id, f.frame] for f in self.stack.frames],
            "Problems": self.stack.problems,
        }


async def load_volume(context: ServerContext, series: Resource, threads: int) -> Volume:
    """Read, order, decode and rescale the frames of a series."""
    instances = await context.index.get_resources(ResourceType.INSTANCE, series.children)
    if not instances:
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Series {series.public_id} has no instance")
    frames: list[FrameHeader] = []
    first: Dataset | None = None
    acquisitions: list[datetime.datetime] = []
    for instance in instances:
        ds, has_pixels = await context.store.read_header(instance.public_id, known=instance)
        if not has_pixels:
            continue
        first = first or ds
        frames.extend(frames_of(ds, instance.public_id))
        if (moment := acquisition_time(ds)) is not None:
            acquisitions.append(moment)
    if first is None or not frames:
        raise OrthancError(
            ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Series {series.public_id} has no image", http_status=415
        )
    stack = assemble(frames)
    voxels = np.empty((len(stack.frames), stack.frames[0].rows, stack.frames[0].columns), np.float32)
    slots: dict[str, list[tuple[int, FrameHeader]]] = {}
    for slot, frame in enumerate(stack.frames):
        slots.setdefault(frame.instance_id, []).append((slot, frame))
    limit = asyncio.Semaphore(threads)

    async def decode(instance_id: str) -> None:
        async with limit:
            data = await context.store.read_dicom(instance_id)
            await asyncio.to_thread(_decode_into, voxels, data, slots[instance_id])

    await asyncio.gather(*(decode(instance_id) for instance_id in slots))
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
    value_range, computed = await asyncio.to_thread(_finish, voxels, factor)
    return Volume(
        series_id=series.public_id,
        voxels=voxels,
        stack=stack,
        units=units,
        window=window or computed,
        window_source="File" if window else "Computed",
        modality=modality,
        frame_of_reference=str(first.get("FrameOfReferenceUID", "")) or None,
        value_range=value_range,
    )


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


class VolumeCache:
    """The most recently used volumes up to a total size; one load at a time per key.

    A key is the series with its last update and number of instances, so a series that changes is loaded again.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._volumes: OrderedDict[tuple[str, ...], Volume] = OrderedDict()
        self._loading: dict[tuple[str, ...], asyncio.Future[Volume]] = {}

    async def get(self, key: tuple[str, ...], load: Callable[[], Awaitable[Volume]]) -> Volume:
        if key in self._volumes:
            self._volumes.move_to_end(key)
            return self._volumes[key]
        if key in self._loading:
            return await asyncio.shield(self._loading[key])
        future: asyncio.Future[Volume] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            volume = await load()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._loading[key]
        future.set_result(volume)
        self._store(key, volume)
        return volume

    def _store(self, key: tuple[str, ...], volume: Volume) -> None:
        for stale in [k for k in self._volumes if k[0] == key[0]]:
            del self._volumes[stale]
        if volume.voxels.nbytes > self.capacity:
            return
        self._volumes[key] = volume
        while sum(v.voxels.nbytes for v in self._volumes.values()) > self.capacity:
            self._volumes.popitem(last=False)

    def clear(self) -> None:
        self._volumes.clear()


async def series_volume(context: ServerContext, cache: VolumeCache, series: Resource, threads: int) -> Volume:
    """The volume of a series, from the cache while the series has not changed."""
    key = (series.public_id, series.last_update or "", str(len(series.children)))
    return await cache.get(key, lambda: load_volume(context, series, threads))
