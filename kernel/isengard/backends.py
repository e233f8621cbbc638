"""The two contracts a deployment must fill: where the index lives and where the files live.

The kernel knows no SQL and no file layout. An index plugin returns an :class:`IndexBackend` from the
``index_backend`` hook, a storage plugin a :class:`StorageArea` from ``storage_area``. Every method is a
coroutine called from the event loop; blocking work belongs in the plugin's own threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable
from typing import Protocol, runtime_checkable

from .model import (
    Change,
    ChangeType,
    DeleteOutcome,
    ExportedResource,
    FileInfo,
    InstanceRecord,
    JobRecord,
    JobState,
    Resource,
    ResourceType,
    Statistics,
    StoreOutcome,
)
from .query import FindQuery


@runtime_checkable
class IndexBackend(Protocol):
    """The whole persistence API of the kernel: resources, tags, metadata, attachments, logs, properties.

    Writes are atomic: a method either applies all its effects (including the change-log rows it returns) or
    none. Identifiers are Orthanc's public ids; the backend keeps its internal keys to itself.
    """

    async def start(self) -> None:
        """Open connections and create or upgrade the schema."""

    async def stop(self) -> None:
        """Flush and close; no call follows."""

    # -- ingest and deletion ---------------------------------------------------------------------------------
    async def store_instance(self, record: InstanceRecord, *, overwrite: bool) -> StoreOutcome:
        """Create the instance and any missing ancestors, with their tags, metadata, attachment and changes.

        If the instance exists: with ``overwrite`` replace its tags, metadata and attachment (returning the old
        attachments in ``replaced``), otherwise change nothing and answer "AlreadyStored".
        """
        ...

    async def delete_resource(self, level: ResourceType, public_id: str) -> DeleteOutcome | None:
        """Delete a resource, its descendants and every ancestor left without children; ``None`` if unknown."""
        ...

    async def update_main_tags(self, level: ResourceType, public_id: str, tags: dict[str, str]) -> None:
        """Replace the main tags of one resource (re-indexing after the main tag lists changed)."""
        ...

    # -- reading ---------------------------------------------------------------------------------------------
    async def lookup(self, public_id: str) -> ResourceType | None:
        """The level of a public id, or ``None``."""
        ...

    async def get_resources(self, level: ResourceType, public_ids: Iterable[str]) -> list[Resource]:
        """Resources in the order asked; unknown ids are left out."""
        ...

    async def list_resources(self, level: ResourceType, *, since: int = 0, limit: int | None = None) -> list[str]:
        """Public ids of a level in creation order, paged."""
        ...

    async def instances_of(self, level: ResourceType, public_id: str) -> list[str]:
        """Ids of every instance under a resource (the instance itself at instance level)."""
        ...

    async def find(self, query: FindQuery) -> list[str]:
        """Ids of the resources that satisfy every constraint, in creation order."""
        ...

    async def statistics(self, level: ResourceType | None = None, public_id: str | None = None) -> Statistics:
        """Counts and sizes of the whole store, or of one resource and its descendants."""
        ...

    # -- metadata and attachments ----------------------------------------------------------------------------
    async def get_metadata(self, level: ResourceType, public_id: str) -> dict[int, tuple[str, int]]:
        """Metadata type -> (value, revision)."""
        ...

    async def set_metadata(
        self, level: ResourceType, public_id: str, kind: int, value: str, *, expected_revision: int | None
    ) -> tuple[int, Change]:
        """Set one metadata; returns its new revision. Raises ``RevisionMismatch`` on a stale revision."""
        ...

    async def delete_metadata(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> bool:
        """Remove one metadata; ``False`` if it was absent."""
        ...

    async def get_attachments(self, level: ResourceType, public_id: str) -> dict[int, FileInfo]: ...

    async def set_attachment(
        self, level: ResourceType, public_id: str, info: FileInfo, *, expected_revision: int | None
    ) -> tuple[FileInfo | None, Change]:
        """Add or replace an attachment; returns the replaced one (its file must then be removed)."""
        ...

    async def delete_attachment(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> FileInfo | None: ...

    # -- labels and protection -------------------------------------------------------------------------------
    async def set_label(self, level: ResourceType, public_id: str, label: str, present: bool) -> None: ...

    async def all_labels(self) -> list[str]: ...

    async def set_protected(self, public_id: str, protected: bool) -> None:
        """Protect a patient from recycling (or release it)."""
        ...

    async def recycling_candidate(self, avoid: str | None = None) -> str | None:
        """The oldest unprotected patient other than ``avoid`` (the one being written to), or ``None``."""
        ...

    # -- logs and properties ---------------------------------------------------------------------------------
    async def log_change(self, change_type: ChangeType, level: ResourceType, public_id: str) -> Change: ...

    async def get_changes(self, since: int, limit: int) -> tuple[list[Change], bool, int]:
        """(changes with seq > since, done, last seq in the whole log)."""
        ...

    async def last_change(self) -> Change | None: ...

    async def clear_changes(self) -> None: ...

    async def log_export(self, resource: ExportedResource) -> None: ...

    async def get_exports(self, since: int, limit: int) -> tuple[list[ExportedResource], bool, int]: ...

    async def clear_exports(self) -> None: ...

    async def get_property(self, name: str) -> str | None:
        """Server-wide key/value state (jobs, modalities, peers...): shared by all servers on one index."""
        ...

    async def set_property(self, name: str, value: str | None) -> None: ...

    async def all_attachment_uuids(self) -> set[str]:
        """Every uuid of a file the index refers to, for the storage sweep that removes files a crash left
        unindexed: the attachments, and the files of job outputs (``JobRecord.outputs``)."""
        ...

    # -- jobs ------------------------------------------------------------------------------------------------
    # Jobs live in the index so that every server on one database sees the same jobs and a restart loses none.
    # A backend stores every field of a JobRecord (``to_json``/``from_json`` give a JSON form; the fields the
    # methods below select on may also get columns of their own). The kernel drives the state machine with
    # compare-and-set writes; the backend only needs these primitives to be atomic.

    async def add_job(self, job: JobRecord) -> None:
        """Store a new job (its id is a fresh uuid), remembering the order of submission."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job, or ``None``."""
        ...

    async def list_jobs(self, states: Collection[JobState] | None = None) -> list[JobRecord]:
        """The jobs in these states (all when ``None``), in submission order."""
        ...

    async def update_job(self, job: JobRecord, *, expected_revision: int) -> bool:
        """Replace a job's record if its stored revision is still ``expected_revision``; the stored record then
        gets revision ``expected_revision + 1`` (and so does ``job``). ``False``, writing nothing, when the job is
        gone or was written meanwhile: the caller reads it again and decides anew."""
        ...

    async def claim_job(self, owner: str, now: float, types: Collection[str]) -> JobRecord | None:
        """Atomically take the next job to run: among the Pending jobs of one of ``types``, the one of highest
        priority, oldest submission first. It becomes Running, with ``owner`` and ``heartbeat = now``, its revision
        grows by one, and it is returned as stored. ``None`` when none is pending. Two servers never get the same
        job."""
        ...

    async def renew_jobs(self, owner: str, now: float) -> None:
        """Set ``heartbeat = now`` on the Running jobs of ``owner`` (its lease), without changing their revision."""
        ...

    async def delete_job(self, job_id: str) -> JobRecord | None:
        """Forget a job; returns what it was (its output files must then be removed), ``None`` if unknown."""
        ...


class RevisionMismatch(Exception):
    """A write named a revision that is no longer the current one (HTTP 409 in the REST API)."""


@runtime_checkable
class StorageArea(Protocol):
    """Where attachment bytes live, addressed only by the uuid the kernel generated and the content type.

    Data arrive already compressed when StorageCompression is on; the storage keeps bytes as given.
    ``create`` must be atomic: after a crash a file is either complete or absent. A storage may also offer
    ``async create_from_file(uuid, content_type, path)``, the same from a file, for large files the kernel
    makes (archives of jobs) without reading them into memory (the filesystem storage does).
    """

    async def create(self, uuid: str, content_type: int, data: bytes) -> None: ...

    async def read(self, uuid: str, content_type: int) -> bytes:
        """The whole file; raises ``FileNotFoundError`` when absent."""
        ...

    async def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``: lets the kernel read a header without the pixels."""
        ...

    def stream(self, uuid: str, content_type: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The file in chunks, for downloads that must not sit whole in memory."""
        ...

    async def remove(self, uuid: str, content_type: int) -> None:
        """Delete; absent files are not an error."""
        ...

    async def list_uuids(self, older_than: float) -> list[str]:
        """Uuids of files last modified before ``older_than`` (epoch seconds), for the orphan sweep."""
        ...
