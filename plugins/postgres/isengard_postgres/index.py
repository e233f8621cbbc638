"""The PostgreSQL index: the kernel's IndexBackend on asyncpg, safe for several servers sharing one database.

Semantics are the SQLite plugin's, method for method (the shared contract tests in isengard.index_contract run
against both). What differs is concurrency between processes:

- ingest and deletion of resources of one patient take that patient's advisory lock first (rows.patient_lock_key),
  so a study deleted by one server while another adds an instance to it ends either with the instance stored
  (under re-created parents) or deleted with everything else, never half-linked or lost silently;
- other writes lock the rows they read (FOR UPDATE / FOR KEY SHARE) and db.Database.write runs a transaction
  again when it lost a race (unique or foreign key violation, serialization failure, deadlock);
- the change log takes its numbers from a counter row (see rows.LOG_CHANGES).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from isengard.backends import RevisionMismatch
from isengard.model import (
    NEW_RESOURCE_CHANGE,
    Change,
    ChangeType,
    DeleteOutcome,
    ExportedResource,
    FileInfo,
    InstanceRecord,
    MetadataType,
    Resource,
    ResourceType,
    Statistics,
    StoreOutcome,
    now_iso,
)
from isengard.query import FindQuery, normalize

from . import rows, schema
from .db import Database
from .find import build_find
from .jobs import OUTPUT_UUIDS, JobsMixin
from .settings import Settings

Conn = asyncpg.Connection
PAT, INS = ResourceType.PATIENT, ResourceType.INSTANCE

_STORE_ROWS = f"""
WITH tags AS (
    INSERT INTO main_tags (resource_id, tag, value, norm)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
), meta AS (
    INSERT INTO metadata (resource_id, kind, value)
    SELECT * FROM unnest($5::bigint[], $6::integer[], $7::text[])
    ON CONFLICT (resource_id, kind) DO UPDATE SET value = excluded.value, revision = metadata.revision + 1
), files AS (
    INSERT INTO attachments (resource_id, {rows.ATTACHMENT_COLUMNS})
    SELECT $8::bigint, u.*, 0 FROM unnest($9::integer[], $10::text[], $11::smallint[], $12::bigint[], $13::text[],
                                  $14::bigint[], $15::text[]) AS u
)
UPDATE resources SET recycle_seq = $8::bigint WHERE id = $16::bigint
"""


class PostgresIndex(JobsMixin):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)

    # -- life cycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.db.open(prepare=schema.upgrade)

    async def stop(self) -> None:
        await self.db.close()

    # -- helpers run inside a connection ---------------------------------------------------------------------
    @staticmethod
    async def _require(conn: Conn, level: ResourceType, public_id: str, *, lock: bool = False) -> int:
        """The internal id of a resource (KeyError when unknown); ``lock`` holds it against deletion."""
        sql = "SELECT id FROM resources WHERE public_id = $1 AND level = $2"
        found = await conn.fetchval(sql + (" FOR KEY SHARE" if lock else ""), public_id, int(level))
        if found is None:
            raise KeyError(public_id)
        return int(found)

    @staticmethod
    async def _attachments_of(conn: Conn, ids: Sequence[int]) -> list[FileInfo]:
        found = await conn.fetch(
            f"SELECT {rows.ATTACHMENT_COLUMNS} FROM attachments WHERE resource_id = ANY($1::bigint[]) "
            "ORDER BY resource_id, kind",
            list(ids),
        )
        return [rows.file_info(r) for r in found]

    # -- ingest ----------------------------------------------------------------------------------------------
    async def store_instance(self, record: InstanceRecord, *, overwrite: bool) -> StoreOutcome:
        return await self.db.write(lambda conn: self._store(conn, record, overwrite))

    async def _store(self, conn: Conn, record: InstanceRecord, overwrite: bool) -> StoreOutcome:
        ids = record.identifiers.public_ids()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", rows.patient_lock_key(ids[PAT]))
        known = {
            ResourceType(r["level"]): int(r["id"])
            for r in await conn.fetch(
                "SELECT id, level FROM resources WHERE public_id = ANY($1::text[])", [ids[lv] for lv in ResourceType]
            )
        }
        replaced: list[FileInfo] = []
        if INS in known:
            if not overwrite:
                return StoreOutcome("AlreadyStored")
            replaced = await self._attachments_of(conn, [known[INS]])
            await conn.execute("DELETE FROM resources WHERE id = $1", known.pop(INS))
        parent_id: int | None = None
        created: dict[ResourceType, int] = {}
        touched: list[int] = []
        for level in ResourceType:
            if level in known:
                parent_id = known[level]
                touched.append(parent_id)
                continue
            parent_id = int(
                await conn.fetchval(
                    "INSERT INTO resources (level, public_id, parent_id) VALUES ($1, $2, $3) RETURNING id",
                    int(level),
                    ids[level],
                    parent_id,
                )
            )
            created[level] = parent_id
            if level is not INS:
                touched.append(parent_id)
        tags = [(rid, k, v) for level, rid in created.items() for k, v in record.main_tags.get(level, {}).items()]
        meta = {(rid, k): v for level, rid in created.items() for k, v in record.metadata.get(level, {}).items()}
        meta.update({(rid, int(MetadataType.LAST_UPDATE)): record.when for rid in touched})
        files = [(info.content_type, *rows.attachment_columns(info)) for info in record.attachments]
        await conn.execute(
            _STORE_ROWS,
            [t[0] for t in tags],
            [t[1] for t in tags],
            [t[2] for t in tags],
            [normalize(t[2]) for t in tags],
            [k[0] for k in meta],
            [k[1] for k in meta],
            list(meta.values()),
            created[INS],
            *([f[i] for f in files] for i in range(7)),
            created.get(PAT) or known[PAT],
        )
        entries = [(NEW_RESOURCE_CHANGE[lv], lv, ids[lv]) for lv in sorted(created, reverse=True)]
        return StoreOutcome("Success", await rows.log_changes(conn, entries, record.when), replaced)

    async def delete_resource(self, level: ResourceType, public_id: str) -> DeleteOutcome | None:
        return await self.db.write(lambda conn: self._delete(conn, level, public_id))

    async def _delete(self, conn: Conn, level: ResourceType, public_id: str) -> DeleteOutcome | None:
        sql = "SELECT id, parent_id FROM resources WHERE public_id = $1 AND level = $2"
        row = await conn.fetchrow(sql, public_id, int(level))
        if row is None:
            return None
        patient = await conn.fetchval(rows.PATIENT_OF, row["id"])
        if patient is None:  # deleted meanwhile by another server
            return None
        await conn.execute("SELECT pg_advisory_xact_lock($1)", rows.patient_lock_key(patient))
        row = await conn.fetchrow(sql, public_id, int(level))  # again, now that nobody else writes this tree
        if row is None:
            return None
        subtree = await conn.fetch(rows.SUBTREE, row["id"])
        files = await self._attachments_of(conn, [r["id"] for r in subtree])
        await conn.execute("DELETE FROM resources WHERE id = $1", row["id"])
        gone = [(ResourceType(r["level"]), r["public_id"]) for r in sorted(subtree, key=lambda r: -r["level"])]
        remaining = None
        parent_id = row["parent_id"]
        while parent_id is not None:
            parent = await conn.fetchrow(
                "SELECT id, level, public_id, parent_id, "
                "EXISTS (SELECT 1 FROM resources c WHERE c.parent_id = p.id) AS has_children "
                "FROM resources p WHERE id = $1",
                parent_id,
            )
            if parent["has_children"]:
                remaining = (ResourceType(parent["level"]), parent["public_id"])
                break
            files += await self._attachments_of(conn, [parent["id"]])
            await conn.execute("DELETE FROM resources WHERE id = $1", parent["id"])
            gone.append((ResourceType(parent["level"]), parent["public_id"]))
            parent_id = parent["parent_id"]
        # As in Orthanc, the log forgets what it said about deleted resources, and says they were deleted.
        await conn.execute("DELETE FROM changes WHERE public_id = ANY($1::text[])", [p for _, p in gone])
        changes = await rows.log_changes(conn, [(ChangeType.DELETED, lv, p) for lv, p in gone], now_iso())
        return DeleteOutcome(files, changes, remaining)

    async def update_main_tags(self, level: ResourceType, public_id: str, tags: dict[str, str]) -> None:
        async def run(conn: Conn) -> None:
            rid = await self._require(conn, level, public_id, lock=True)
            await conn.execute("DELETE FROM main_tags WHERE resource_id = $1", rid)
            await conn.execute(
                "INSERT INTO main_tags (resource_id, tag, value, norm) "
                "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])",
                rid,
                list(tags),
                list(tags.values()),
                [normalize(v) for v in tags.values()],
            )

        await self.db.write(run)

    # -- reading ---------------------------------------------------------------------------------------------
    async def lookup(self, public_id: str) -> ResourceType | None:
        sql = "SELECT level FROM resources WHERE public_id = $1"
        found = await self.db.run(lambda conn: conn.fetchval(sql, public_id))
        return None if found is None else ResourceType(found)

    async def get_resources(self, level: ResourceType, public_ids: Iterable[str]) -> list[Resource]:
        wanted = list(dict.fromkeys(public_ids))
        if not wanted:
            return []
        found = await self.db.run(lambda conn: conn.fetch(rows.GET_RESOURCES, int(level), wanted))
        by_id = {r["public_id"]: rows.resource(level, r) for r in found}
        return [by_id[p] for p in wanted if p in by_id]

    async def list_resources(self, level: ResourceType, *, since: int = 0, limit: int | None = None) -> list[str]:
        sql = "SELECT public_id FROM resources WHERE level = $1 ORDER BY id LIMIT $2 OFFSET $3"
        found = await self.db.run(lambda conn: conn.fetch(sql, int(level), limit, since))
        return [r[0] for r in found]

    async def instances_of(self, level: ResourceType, public_id: str) -> list[str]:
        sql = (
            "WITH RECURSIVE sub(id, level, public_id) AS ("
            " SELECT id, level, public_id FROM resources WHERE public_id = $1 AND level = $2"
            " UNION ALL SELECT r.id, r.level, r.public_id FROM resources r JOIN sub ON r.parent_id = sub.id)"
            " SELECT public_id FROM sub WHERE level = 4 ORDER BY id"
        )
        found = await self.db.run(lambda conn: conn.fetch(sql, public_id, int(level)))
        return [r[0] for r in found]

    async def find(self, query: FindQuery) -> list[str]:
        sql, params = build_find(query)
        found = await self.db.run(lambda conn: conn.fetch(sql, *params))
        return [r[0] for r in found]

    async def statistics(self, level: ResourceType | None = None, public_id: str | None = None) -> Statistics:
        if public_id is None:
            source, params, prefix = "resources", [], ""
        else:
            prefix = (
                "WITH RECURSIVE sub(id, level) AS ("
                " SELECT id, level FROM resources WHERE public_id = $1 AND level = $2"
                " UNION ALL SELECT r.id, r.level FROM resources r JOIN sub ON r.parent_id = sub.id) "
            )
            source, params = "sub", [public_id, int(level or 0)]
        attachments = "attachments a" + ("" if public_id is None else " JOIN sub ON a.resource_id = sub.id")
        sql = (
            f"{prefix}SELECT "
            f"(SELECT json_object_agg(level, n) FROM (SELECT level, COUNT(*) AS n FROM {source} GROUP BY level) c), "
            "COALESCE(SUM(a.compressed_size), 0), COALESCE(SUM(a.uncompressed_size), 0), "
            "COALESCE(SUM(a.compressed_size) FILTER (WHERE a.kind = 1), 0), "
            "COALESCE(SUM(a.uncompressed_size) FILTER (WHERE a.kind = 1), 0) "
            f"FROM {attachments}"
        )
        row = await self.db.run(lambda conn: conn.fetchrow(sql, *params))
        counts = {int(k): v for k, v in json.loads(row[0] or "{}").items()}
        return Statistics(
            count_patients=counts.get(1, 0),
            count_studies=counts.get(2, 0),
            count_series=counts.get(3, 0),
            count_instances=counts.get(4, 0),
            disk_size=int(row[1]),
            uncompressed_size=int(row[2]),
            dicom_disk_size=int(row[3]),
            dicom_uncompressed_size=int(row[4]),
        )

    # -- metadata and attachments ----------------------------------------------------------------------------
    async def get_metadata(self, level: ResourceType, public_id: str) -> dict[int, tuple[str, int]]:
        async def run(conn: Conn) -> dict[int, tuple[str, int]]:
            found = await conn.fetch(
                "SELECT r.id, m.kind, m.value, m.revision FROM resources r "
                "LEFT JOIN metadata m ON m.resource_id = r.id WHERE r.public_id = $1 AND r.level = $2 ORDER BY m.kind",
                public_id,
                int(level),
            )
            if not found:
                raise KeyError(public_id)
            return {r["kind"]: (r["value"], r["revision"]) for r in found if r["kind"] is not None}

        return await self.db.run(run)

    async def _current_metadata(self, conn: Conn, level: ResourceType, public_id: str, kind: int) -> tuple[int, Any]:
        rid = await self._require(conn, level, public_id, lock=True)
        sql = "SELECT revision FROM metadata WHERE resource_id = $1 AND kind = $2 FOR UPDATE"
        return rid, await conn.fetchval(sql, rid, kind)

    async def set_metadata(
        self, level: ResourceType, public_id: str, kind: int, value: str, *, expected_revision: int | None
    ) -> tuple[int, Change]:
        async def run(conn: Conn) -> tuple[int, Change]:
            rid, current = await self._current_metadata(conn, level, public_id, kind)
            if expected_revision is not None and current is not None and current != expected_revision:
                raise RevisionMismatch(f"metadata {kind} is at revision {current}")
            revision = await conn.fetchval(
                "INSERT INTO metadata (resource_id, kind, value) VALUES ($1, $2, $3) ON CONFLICT (resource_id, kind) "
                "DO UPDATE SET value = excluded.value, revision = metadata.revision + 1 RETURNING revision",
                rid,
                kind,
                value,
            )
            [change] = await rows.log_changes(conn, [(ChangeType.UPDATED_METADATA, level, public_id)], now_iso())
            return int(revision), change

        return await self.db.write(run)

    async def delete_metadata(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> bool:
        async def run(conn: Conn) -> bool:
            rid, current = await self._current_metadata(conn, level, public_id, kind)
            if current is None:
                return False
            if expected_revision is not None and current != expected_revision:
                raise RevisionMismatch(f"metadata {kind} is at revision {current}")
            await conn.execute("DELETE FROM metadata WHERE resource_id = $1 AND kind = $2", rid, kind)
            await rows.log_changes(conn, [(ChangeType.UPDATED_METADATA, level, public_id)], now_iso())
            return True

        return await self.db.write(run)

    async def get_attachments(self, level: ResourceType, public_id: str) -> dict[int, FileInfo]:
        sql = (
            f"SELECT r.id, {', '.join('a.' + c.strip() for c in rows.ATTACHMENT_COLUMNS.split(','))} "
            "FROM resources r LEFT JOIN attachments a ON a.resource_id = r.id WHERE r.public_id = $1 AND r.level = $2"
        )
        found = await self.db.run(lambda conn: conn.fetch(sql, public_id, int(level)))
        if not found:
            raise KeyError(public_id)
        return {r["kind"]: rows.file_info(r) for r in found if r["kind"] is not None}

    async def _current_attachment(
        self, conn: Conn, level: ResourceType, public_id: str, kind: int
    ) -> tuple[int, FileInfo | None]:
        rid = await self._require(conn, level, public_id, lock=True)
        sql = f"SELECT {rows.ATTACHMENT_COLUMNS} FROM attachments WHERE resource_id = $1 AND kind = $2 FOR UPDATE"
        found = await conn.fetchrow(sql, rid, kind)
        return rid, None if found is None else rows.file_info(found)

    async def set_attachment(
        self, level: ResourceType, public_id: str, info: FileInfo, *, expected_revision: int | None
    ) -> tuple[FileInfo | None, Change]:
        async def run(conn: Conn) -> tuple[FileInfo | None, Change]:
            rid, old = await self._current_attachment(conn, level, public_id, info.content_type)
            if expected_revision is not None and old is not None and old.revision != expected_revision:
                raise RevisionMismatch(f"attachment {info.content_type} is at revision {old.revision}")
            if old is not None:
                sql = "DELETE FROM attachments WHERE resource_id = $1 AND kind = $2"
                await conn.execute(sql, rid, info.content_type)
            await conn.execute(
                f"INSERT INTO attachments (resource_id, {rows.ATTACHMENT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                rid,
                info.content_type,
                *rows.attachment_columns(info),
                0 if old is None else old.revision + 1,
            )
            [change] = await rows.log_changes(conn, [(ChangeType.UPDATED_ATTACHMENT, level, public_id)], now_iso())
            return old, change

        return await self.db.write(run)

    async def delete_attachment(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> FileInfo | None:
        async def run(conn: Conn) -> FileInfo | None:
            rid, old = await self._current_attachment(conn, level, public_id, kind)
            if old is None:
                return None
            if expected_revision is not None and old.revision != expected_revision:
                raise RevisionMismatch(f"attachment {kind} is at revision {old.revision}")
            await conn.execute("DELETE FROM attachments WHERE resource_id = $1 AND kind = $2", rid, kind)
            await rows.log_changes(conn, [(ChangeType.UPDATED_ATTACHMENT, level, public_id)], now_iso())
            return old

        return await self.db.write(run)

    # -- labels and protection -------------------------------------------------------------------------------
    async def set_label(self, level: ResourceType, public_id: str, label: str, present: bool) -> None:
        async def run(conn: Conn) -> None:
            rid = await self._require(conn, level, public_id, lock=True)
            sql = (
                "INSERT INTO labels (resource_id, label) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                if present
                else "DELETE FROM labels WHERE resource_id = $1 AND label = $2"
            )
            await conn.execute(sql, rid, label)

        await self.db.write(run)

    async def all_labels(self) -> list[str]:
        sql = "SELECT DISTINCT label FROM labels ORDER BY label"
        return [r[0] for r in await self.db.run(lambda conn: conn.fetch(sql))]

    async def set_protected(self, public_id: str, protected: bool) -> None:
        async def run(conn: Conn) -> None:
            rid = await self._require(conn, PAT, public_id)
            await conn.execute("UPDATE resources SET protected = $1 WHERE id = $2", protected, rid)

        await self.db.write(run)

    async def recycling_candidate(self, avoid: str | None = None) -> str | None:
        sql = (
            "SELECT public_id FROM resources WHERE level = 1 AND NOT protected AND public_id <> $1 "
            "ORDER BY recycle_seq LIMIT 1"
        )
        return await self.db.run(lambda conn: conn.fetchval(sql, avoid or ""))

    # -- logs and properties ---------------------------------------------------------------------------------
    async def log_change(self, change_type: ChangeType, level: ResourceType, public_id: str) -> Change:
        entries = [(change_type, level, public_id)]
        [change] = await self.db.write(lambda conn: rows.log_changes(conn, entries, now_iso()))
        return change

    async def get_changes(self, since: int, limit: int) -> tuple[list[Change], bool, int]:
        # One statement, one snapshot: the counter and the page agree, so "Last" never skips a change.
        sql = (
            "SELECT n.value AS last, c.* FROM counters n LEFT JOIN LATERAL "
            "(SELECT * FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true WHERE n.name = 'changes' "
            "ORDER BY c.seq"
        )
        found = await self.db.run(lambda conn: conn.fetch(sql, since, limit + 1))
        page = [rows.change(r) for r in found if r["seq"] is not None]
        return page[:limit], len(page) <= limit, int(found[0]["last"])

    async def last_change(self) -> Change | None:
        sql = "SELECT * FROM changes ORDER BY seq DESC LIMIT 1"
        found = await self.db.run(lambda conn: conn.fetchrow(sql))
        return None if found is None else rows.change(found)

    async def clear_changes(self) -> None:
        await self.db.write(lambda conn: conn.execute("DELETE FROM changes"))

    async def log_export(self, resource: ExportedResource) -> None:
        sql = (
            "INSERT INTO exports (level, public_id, remote_modality, patient_id, study_uid, series_uid, sop_uid, date) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        values = (
            int(resource.level),
            resource.public_id,
            resource.remote_modality,
            resource.patient_id,
            resource.study_uid,
            resource.series_uid,
            resource.sop_uid,
            resource.date,
        )
        await self.db.write(lambda conn: conn.execute(sql, *values))

    async def get_exports(self, since: int, limit: int) -> tuple[list[ExportedResource], bool, int]:
        sql = (
            "SELECT m.last, e.* FROM (SELECT COALESCE(MAX(seq), 0) AS last FROM exports) m LEFT JOIN LATERAL "
            "(SELECT * FROM exports WHERE seq > $1 ORDER BY seq LIMIT $2) e ON true ORDER BY e.seq"
        )
        found = await self.db.run(lambda conn: conn.fetch(sql, since, limit + 1))
        page = [rows.export(r) for r in found if r["seq"] is not None]
        return page[:limit], len(page) <= limit, int(found[0]["last"])

    async def clear_exports(self) -> None:
        await self.db.write(lambda conn: conn.execute("DELETE FROM exports"))

    async def get_property(self, name: str) -> str | None:
        sql = "SELECT value FROM properties WHERE name = $1"
        return await self.db.run(lambda conn: conn.fetchval(sql, name))

    async def set_property(self, name: str, value: str | None) -> None:
        if value is None:
            await self.db.write(lambda conn: conn.execute("DELETE FROM properties WHERE name = $1", name))
            return
        sql = "INSERT INTO properties (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2"
        await self.db.write(lambda conn: conn.execute(sql, name, value))

    async def all_attachment_uuids(self) -> set[str]:
        """The attachments' files, and those of job outputs."""
        sql = f"SELECT uuid FROM attachments UNION {OUTPUT_UUIDS}"
        found = await self.db.run(lambda conn: conn.fetch(sql))
        return {r[0] for r in found}
