"""Ingest, read and delete: the one place that coordinates the index, the storage and the events.

The order of operations is what keeps index and storage consistent across crashes: a file is written (atomically)
before the index refers to it, and forgotten by the index before it is removed. A crash can therefore only leave
files nobody refers to, which :meth:`Store.sweep` removes; never an index entry without its file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
import uuid as uuidlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from .dicom.imaging import little_endian
from .dicom.native import native_frame_span
from .dicom.parse import ParsedInstance, parse_instance, read_header
from .dicom.tags import expected_instances
from .dicom.transcode import IngestTranscoding
from .errors import ErrorCode, InstanceDiscarded, OrthancError, unknown_resource
from .model import (
    STABLE_RESOURCE_CHANGE,
    CompressionType,
    FileContentType,
    FileInfo,
    InstanceRecord,
    MetadataType,
    Resource,
    ResourceType,
    now_iso,
)
from .plugins import resolve
from .stability import StabilityTracker

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("isengard.store")

_SIZE_PREFIX = struct.Struct("<Q")
#: Larger files are streamed in chunks rather than read whole (the typical CT or MR instance is below).
STREAM_THRESHOLD = 8 * 1024 * 1024


@dataclass
class IngestResult:
    status: str  # "Success" or "AlreadyStored"
    instance: ParsedInstance

    def to_json(self) -> dict[str, Any]:
        ids = self.instance.identifiers.public_ids()
        return {
            "ID": ids[ResourceType.INSTANCE],
            "ParentPatient": ids[ResourceType.PATIENT],
            "ParentSeries": ids[ResourceType.SERIES],
            "ParentStudy": ids[ResourceType.STUDY],
            "Path": f"/instances/{ids[ResourceType.INSTANCE]}",
            "Status": self.status,
        }


def compress(data: bytes) -> bytes:
    """Orthanc's "zlib with size" format: the uncompressed size (8 bytes, little endian), then zlib."""
    return _SIZE_PREFIX.pack(len(data)) + zlib.compress(data, 6)


def decompress(data: bytes) -> bytes:
    if len(data) < _SIZE_PREFIX.size:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, "compressed attachment too short")
    (size,) = _SIZE_PREFIX.unpack_from(data)
    out = zlib.decompress(data[_SIZE_PREFIX.size :])
    if len(out) != size:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, "compressed attachment has a wrong size")
    return out


def _lost(info: FileInfo) -> OrthancError:
    return OrthancError(ErrorCode.INEXISTENT_FILE, f"the storage has lost attachment {info.uuid}")


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def indexed_tags(parsed: ParsedInstance) -> dict[ResourceType, dict[str, str]]:
    """Main tags per level as the index keeps them: the study also keeps the patient's tags as this study
    received them (C-FIND and PatientMainDicomTags answer per study, as in Orthanc)."""
    tags = dict(parsed.main_tags)
    tags[ResourceType.STUDY] = {**parsed.main_tags[ResourceType.PATIENT], **parsed.main_tags[ResourceType.STUDY]}
    return tags


class Store:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        config = context.config
        self.overwrite = config.bool("OverwriteInstances")
        self.compression = config.bool("StorageCompression")
        self.store_md5 = config.bool("StoreMD5ForAttachments")
        self.default_encoding = config.str("DefaultEncoding")
        self.max_size = config.int("MaximumStorageSize") * 1024 * 1024
        self.max_patients = config.int("MaximumPatientCount")
        self.reject_when_full = config.str("MaximumStorageMode") == "Reject"
        self.stability = StabilityTracker(float(config.int("StableAge")), self._became_stable)
        self.transcoding = IngestTranscoding.from_config(config)
        self._recycle_lock = asyncio.Lock()

    # -- files -----------------------------------------------------------------------------------------------
    def _prepare(self, data: bytes, content_type: int, compressed: bool) -> tuple[FileInfo, bytes]:
        """The record of a new file and the bytes to store (checksums and compression off the event loop)."""
        md5 = hashlib.md5(data).hexdigest() if self.store_md5 else ""
        uuid = str(uuidlib.uuid4())
        if not compressed:
            return FileInfo(uuid, content_type, len(data), md5, CompressionType.NONE, len(data), md5), data
        packed = compress(data)
        packed_md5 = hashlib.md5(packed).hexdigest() if self.store_md5 else ""
        info = FileInfo(uuid, content_type, len(data), md5, CompressionType.ZLIB_WITH_SIZE, len(packed), packed_md5)
        return info, packed

    def _read_incoming(self, data: bytes) -> tuple[ParsedInstance, list[tuple[FileInfo, bytes]]]:
        data = self.transcoding.apply(data)
        parsed = parse_instance(data, self.context.main_tags, default_encoding=self.default_encoding)
        prepared = [self._prepare(data, FileContentType.DICOM, self.compression)]
        if self.compression and parsed.pixel_data_offset:
            # Orthanc's trick: the header kept apart, so tags are read without inflating the pixels.
            header = data[: parsed.pixel_data_offset]
            prepared.append(self._prepare(header, FileContentType.DICOM_UNTIL_PIXEL_DATA, True))
        return parsed, prepared

    async def write_attachment(self, data: bytes, content_type: int, *, compressed: bool | None = None) -> FileInfo:
        """Write a file (compressed as StorageCompression says, unless told); the caller then indexes it."""
        info, payload = await asyncio.to_thread(
            self._prepare, data, content_type, self.compression if compressed is None else compressed
        )
        await self.context.storage.create(info.uuid, content_type, payload)
        return info

    async def write_attachment_file(self, path: Path, content_type: int) -> FileInfo:
        """Store a file the server made (a job's archive) as it is, uncompressed. A storage with the optional
        ``create_from_file(uuid, content_type, path)`` copies it without holding it in memory; any other gets
        its bytes through ``create``."""
        size = (await asyncio.to_thread(path.stat)).st_size
        md5 = await asyncio.to_thread(_file_md5, path) if self.store_md5 else ""
        info = FileInfo(str(uuidlib.uuid4()), content_type, size, md5, CompressionType.NONE, size, md5)
        create_from_file = getattr(self.context.storage, "create_from_file", None)
        if create_from_file is not None:
            await create_from_file(info.uuid, content_type, path)
        else:
            await self.context.storage.create(info.uuid, content_type, await asyncio.to_thread(path.read_bytes))
        return info

    async def read_attachment(self, info: FileInfo) -> bytes:
        try:
            data = await self.context.storage.read(info.uuid, info.content_type)
        except FileNotFoundError as e:
            raise _lost(info) from e
        if info.compression is CompressionType.ZLIB_WITH_SIZE:
            return await asyncio.to_thread(decompress, data)
        return data

    async def attachment_body(self, info: FileInfo) -> bytes | AsyncIterator[bytes]:
        """The uncompressed file as a response body: whole when small (one trip to the storage's thread), in
        chunks beyond STREAM_THRESHOLD so that large downloads never sit whole in memory."""
        if info.compression is CompressionType.NONE and info.stored_size > STREAM_THRESHOLD:
            return self.context.storage.stream(info.uuid, info.content_type)
        return await self.read_attachment(info)

    async def remove_files(self, files: list[FileInfo]) -> None:
        for info in files:
            try:
                await self.context.storage.remove(info.uuid, info.content_type)
            except Exception:
                log.exception("could not remove file %s (the sweep will)", info.uuid)

    # -- ingest ----------------------------------------------------------------------------------------------
    async def ingest(self, data: bytes, origin: dict[str, str]) -> IngestResult:
        """Store one DICOM file. ``origin`` carries Origin, RemoteAET, RemoteIP, CalledAET, HttpUsername."""
        ctx = self.context
        # One trip to a worker thread for all the CPU work: parsing, checksums, compression.
        parsed, prepared = await asyncio.to_thread(self._read_incoming, data)
        for answer in ctx.pm.hook.accept_instance(instance=parsed, origin=origin):
            verdict = await resolve(answer)
            if verdict is False:
                raise InstanceDiscarded()
            if type(verdict) is int and verdict != 0:  # a DIMSE status for the C-STORE SCU (bool is no int here)
                raise InstanceDiscarded(verdict)
        ids = parsed.identifiers.public_ids()
        if not self.overwrite and await ctx.index.lookup(ids[ResourceType.INSTANCE]) is not None:
            return IngestResult("AlreadyStored", parsed)
        await self._make_room(len(data), ids[ResourceType.PATIENT])
        files: list[FileInfo] = []
        try:
            for info, payload in prepared:
                await ctx.storage.create(info.uuid, info.content_type, payload)
                files.append(info)
            record = InstanceRecord(parsed.identifiers, indexed_tags(parsed), self._metadata(parsed, origin), files)
            outcome = await ctx.index.store_instance(record, overwrite=self.overwrite)
        except BaseException:
            await self.remove_files(files)
            raise
        if outcome.status != "Success":  # a concurrent writer stored it between our lookup and our write
            await self.remove_files(files)
            return IngestResult(outcome.status, parsed)
        await self.remove_files(outcome.replaced)
        self.stability.touch(ids)
        for change in outcome.changes:
            ctx.events.publish("on_change", context=ctx, change=change)
        ctx.events.publish(
            "on_stored", context=ctx, instance_id=ids[ResourceType.INSTANCE], instance=parsed, origin=origin
        )
        return IngestResult("Success", parsed)

    def _metadata(self, parsed: ParsedInstance, origin: dict[str, str]) -> dict[ResourceType, dict[int, str]]:
        """Metadata per level: reception facts on the instance, first-instance facts on new parents."""
        signature = self.context.main_tags.signature
        instance: dict[int, str] = {
            MetadataType.RECEPTION_DATE: now_iso(),
            MetadataType.ORIGIN: origin.get("Origin", "Unknown"),
            MetadataType.REMOTE_AET: origin.get("RemoteAET", ""),
            MetadataType.REMOTE_IP: origin.get("RemoteIP", ""),
            MetadataType.TRANSFER_SYNTAX: parsed.transfer_syntax,
            MetadataType.SOP_CLASS_UID: parsed.sop_class_uid,
            MetadataType.MAIN_DICOM_TAGS_SIGNATURE: signature(ResourceType.INSTANCE),
        }
        if "CalledAET" in origin:  # only DICOM receptions have one
            instance[MetadataType.CALLED_AET] = origin["CalledAET"]
        if "HttpUsername" in origin:  # only HTTP receptions have one
            instance[MetadataType.HTTP_USERNAME] = origin["HttpUsername"]
        instance_tags = parsed.main_tags[ResourceType.INSTANCE]
        for keyword in ("InstanceNumber", "ImageIndex"):
            if keyword in instance_tags:
                instance[MetadataType.INDEX_IN_SERIES] = instance_tags[keyword]
                break
        if parsed.pixel_data_offset is not None:
            instance[MetadataType.PIXEL_DATA_OFFSET] = str(parsed.pixel_data_offset)
            if parsed.pixel_data_vr:
                instance[MetadataType.PIXEL_DATA_VR] = parsed.pixel_data_vr
        series: dict[int, str] = {
            MetadataType.REMOTE_AET: origin.get("RemoteAET", ""),
            MetadataType.MAIN_DICOM_TAGS_SIGNATURE: signature(ResourceType.SERIES),
        }
        expected = expected_instances(parsed.main_tags[ResourceType.SERIES])
        if expected is not None:
            series[MetadataType.EXPECTED_NUMBER_OF_INSTANCES] = str(expected)
        levels = {
            ResourceType.PATIENT: {MetadataType.MAIN_DICOM_TAGS_SIGNATURE: signature(ResourceType.PATIENT)},
            ResourceType.STUDY: {MetadataType.MAIN_DICOM_TAGS_SIGNATURE: signature(ResourceType.STUDY)},
            ResourceType.SERIES: series,
            ResourceType.INSTANCE: instance,
        }
        return {level: {int(k): v for k, v in meta.items()} for level, meta in levels.items()}

    async def _make_room(self, incoming: int, patient: str) -> None:
        """Recycle the oldest unprotected patients until the new instance fits the configured limits."""
        if not self.max_size and not self.max_patients:
            return
        async with self._recycle_lock:
            while True:
                stats = await self.context.index.statistics()
                too_big = bool(self.max_size) and stats.disk_size + incoming > self.max_size
                new_patient = await self.context.index.lookup(patient) is None
                too_many = bool(self.max_patients) and new_patient and stats.count_patients >= self.max_patients
                if not too_big and not too_many:
                    return
                victim = None if self.reject_when_full else await self.context.index.recycling_candidate(patient)
                if victim is None:
                    raise OrthancError(ErrorCode.FULL_STORAGE)
                log.info("recycling patient %s to make room", victim)
                try:
                    await self.delete(ResourceType.PATIENT, victim)
                except OrthancError as e:  # another server sharing the index recycled it first: look again
                    if e.code is not ErrorCode.UNKNOWN_RESOURCE:
                        raise

    # -- deletion --------------------------------------------------------------------------------------------
    async def delete(self, level: ResourceType, public_id: str) -> tuple[ResourceType, str] | None:
        """Delete a resource and its empty ancestors; return the closest remaining ancestor."""
        ctx = self.context
        outcome = await ctx.index.delete_resource(level, public_id)
        if outcome is None:
            raise unknown_resource(public_id)
        await self.remove_files(outcome.files)
        for change in outcome.changes:
            self.stability.forget(change.level, change.public_id)
            ctx.events.publish("on_change", context=ctx, change=change)
        ctx.events.publish("on_deleted", context=ctx, level=level, public_id=public_id)
        return outcome.remaining_ancestor

    # -- reading DICOM ---------------------------------------------------------------------------------------
    async def dicom_attachment(self, instance_id: str) -> FileInfo:
        attachments = await self._attachments(ResourceType.INSTANCE, instance_id)
        info = attachments.get(FileContentType.DICOM)
        if info is None:
            raise OrthancError(ErrorCode.INEXISTENT_FILE, f"instance {instance_id} has no DICOM file")
        return info

    async def _attachments(self, level: ResourceType, public_id: str) -> dict[int, FileInfo]:
        try:
            return await self.context.index.get_attachments(level, public_id)
        except KeyError:
            raise unknown_resource(public_id) from None

    async def read_dicom(self, instance_id: str) -> bytes:
        return await self.read_attachment(await self.dicom_attachment(instance_id))

    async def read_native_frame(self, instance: Resource, index: int) -> bytes | None:
        """Frame ``index`` (0-based) as imaging.raw_frame answers it, for a file stored uncompressed with native
        pixel data: only the bytes before the pixels and the frame's are read (dicom/native.py), not the whole
        file, nor parsed by pydicom. ``None`` when the file does not allow it: the caller reads the whole file.

        ``instance`` is the index's view of it (its pixel data offset, and its attachment where the index gives it).
        """
        offset = instance.metadata.get(MetadataType.PIXEL_DATA_OFFSET)
        if not offset or not instance.metadata.get(MetadataType.PIXEL_DATA_VR):
            return None
        info = instance.attachment or await self.dicom_attachment(instance.public_id)
        if info.compression is not CompressionType.NONE:
            return None
        head = await self._read_range(info, 0, int(offset) + 12)
        span = native_frame_span(head, int(offset), info.uncompressed_size, index)
        if span is None:
            return None
        frame = await self._read_range(info, span.start, span.end)
        if len(frame) != span.end - span.start:
            return None
        return await asyncio.to_thread(little_endian, frame, span.swap) if span.swap else frame

    async def _read_range(self, info: FileInfo, start: int, end: int) -> bytes:
        try:
            return await self.context.storage.read_range(info.uuid, info.content_type, start, end)
        except FileNotFoundError as e:
            raise _lost(info) from e

    async def read_header(self, instance_id: str, known: Resource | None = None) -> tuple[Dataset, bool]:
        """The dataset without pixel data, reading only the bytes before the pixels when the file allows it.

        ``known`` is the instance as the caller already read it from the index: with a file stored uncompressed,
        it spares the two index queries (attachments, pixel data offset) that answering many instances repeats.
        Returns (dataset, has_pixel_data).
        """
        if known is not None and known.attachment is not None and known.attachment.compression is CompressionType.NONE:
            offset = known.metadata.get(MetadataType.PIXEL_DATA_OFFSET)
            data = await self._until_pixels(known.attachment, offset)
        else:
            attachments = await self._attachments(ResourceType.INSTANCE, instance_id)
            info = attachments.get(FileContentType.DICOM)
            if info is None:
                raise OrthancError(ErrorCode.INEXISTENT_FILE, f"instance {instance_id} has no DICOM file")
            header = attachments.get(FileContentType.DICOM_UNTIL_PIXEL_DATA)
            offset = None
            if header is not None:  # stored compressed: the header was kept apart, small to inflate
                data = await self.read_attachment(header)
                offset = str(len(data))
            elif info.compression is CompressionType.NONE:
                resources = await self.context.index.get_resources(ResourceType.INSTANCE, [instance_id])
                offset = resources[0].metadata.get(MetadataType.PIXEL_DATA_OFFSET) if resources else None
                data = await self._until_pixels(info, offset)
            else:
                data = await self.read_attachment(info)
        ds, pixel_offset = await asyncio.to_thread(read_header, data, default_encoding=self.default_encoding)
        return ds, bool(offset) or pixel_offset is not None

    async def _until_pixels(self, info: FileInfo, offset: str | None) -> bytes:
        end = int(offset) if offset else info.uncompressed_size
        return await self.context.storage.read_range(info.uuid, info.content_type, 0, end)

    async def reindex(self, instance_id: str, data: bytes) -> None:
        """Index an instance's tags again from its file, for every level (after ExtraMainDicomTags changed)."""
        ctx = self.context
        parsed = await asyncio.to_thread(parse_instance, data, ctx.main_tags, default_encoding=self.default_encoding)
        ids = parsed.identifiers.public_ids()
        if ids[ResourceType.INSTANCE] != instance_id:
            raise OrthancError(ErrorCode.CORRUPTED_FILE, f"the file of {instance_id} holds another instance")
        tags = indexed_tags(parsed)
        for level in ResourceType:
            await ctx.index.update_main_tags(level, ids[level], tags[level])
            _, change = await ctx.index.set_metadata(
                level,
                ids[level],
                MetadataType.MAIN_DICOM_TAGS_SIGNATURE,
                ctx.main_tags.signature(level),
                expected_revision=None,
            )
            ctx.events.publish("on_change", context=ctx, change=change)

    # -- background duties -----------------------------------------------------------------------------------
    async def _became_stable(self, level: ResourceType, public_id: str) -> None:
        ctx = self.context
        if await ctx.index.lookup(public_id) is None:
            return
        change = await ctx.index.log_change(STABLE_RESOURCE_CHANGE[level], level, public_id)
        ctx.events.publish("on_change", context=ctx, change=change)
        ctx.events.publish("on_stable", context=ctx, level=level, public_id=public_id)

    async def sweep(self, *, grace: float = 60.0) -> int:
        """Remove files no index entry refers to (left by a crash between write and index), older than ``grace``.

        Files younger than ``grace`` seconds may belong to an ingest still in flight, so they are kept.
        """
        cutoff = time.time() - grace
        on_disk = await self.context.storage.list_uuids(cutoff)
        if not on_disk:
            return 0
        known = await self.context.index.all_attachment_uuids()
        orphans = [u for u in on_disk if u not in known]
        for uuid in orphans:
            await self.context.storage.remove(uuid, FileContentType.DICOM)
        if orphans:
            log.info("sweep removed %d orphaned files", len(orphans))
        return len(orphans)
