"""The SQLite index: SQLAlchemy Core on the standard sqlite3 driver, writes through one group-commit thread,
reads from a small thread pool (WAL lets them run beside the writer). See docs/architecture.md for why threads
rather than an async driver.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, text

from isengard.backends import RevisionMismatch
from isengard.model import (
    NEW_RESOURCE_CHANGE,
    Change,
    ChangeType,
    CompressionType,
    DeleteOutcome,
    FileInfo,
    InstanceRecord,
    MetadataType,
    Resource,
    ResourceType,
    Statistics,
    StoreOutcome,
    now_iso,
)
from isengard.query import ConstraintKind, FindQuery, normalize

from . import schema
from .find import build_find
from .jobs import JobsMixin
from .logs import LogsMixin, forget_changes, insert_change
from .sql import chunks, in_list
from .writer import WRITER, GroupCommitWriter

T = TypeVar("T")


def _file_info(row: Any) -> FileInfo:
    compression = CompressionType(row.compression)
    return FileInfo(
        uuid=row.uuid,
        content_type=row.kind,
        uncompressed_size=row.uncompressed_size,
        uncompressed_md5=row.uncompressed_md5,
        compression=compression,
        compressed_size=row.compressed_size,
        compressed_md5=row.compressed_md5,
        revision=row.revision,
    )


_UPSERT_METADATA = (
    "INSERT INTO metadata (resource_id, kind, value, revision) VALUES (?, ?, ?, 0) "
    "ON CONFLICT (resource_id, kind) DO UPDATE SET value = excluded.value, revision = metadata.revision + 1"
)
_INSERT_ATTACHMENT = (
    "INSERT INTO attachments (resource_id, kind, uuid, compression, compressed_size, compressed_md5, "
    "uncompressed_size, uncompressed_md5, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Row(dict[str, Any]):
    """A driver row read by column name, as SQLAlchemy rows are."""

    __getattr__ = dict.__getitem__


#: A read statement (named parameters) and its rows, through SQLAlchemy or on the driver's connection.
_Query = Callable[[str, dict[str, Any]], Sequence[Any]]


def _rows(cursor: sqlite3.Cursor) -> list[_Row]:
    names = [d[0] for d in cursor.description]
    return [_Row(zip(names, r, strict=True)) for r in cursor]


def _rows_of(conn: Connection) -> _Query:
    return lambda sql, params: conn.execute(text(sql), params).all()


#: Identifiers an exact value of which names one resource (or two, a UID shared by two patients).
_UIDS = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"})


def _by_uids(query: FindQuery) -> bool:
    """Whether a find is exact UIDs alone (every DICOMweb path, a C-MOVE): point lookups whatever the index size."""
    return (
        bool(query.constraints)
        and not query.labels
        and not query.order_by
        and all(c.kind is ConstraintKind.EQUAL and c.keyword in _UIDS for c in query.constraints)
    )


def _attachment_row(info: FileInfo) -> tuple[Any, ...]:
    return (
        info.content_type,
        info.uuid,
        int(info.compression),
        info.stored_size,
        info.stored_md5,
        info.uncompressed_size,
        info.uncompressed_md5,
    )


def _begin(conn: Connection) -> None:
    """The writer takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction that read first and
    writes later gets SQLITE_BUSY at once, without waiting, when another process or index committed meanwhile.
    On the driver's connection: once per transaction, SQLAlchemy's statement handling would cost more than it."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("BEGIN IMMEDIATE" if conn.info.get(WRITER) else "BEGIN")


class SqliteIndex(JobsMixin, LogsMixin):
    def __init__(self, path: Path | str, *, readers: int = 4) -> None:
        self.path = Path(path)
        self._readers_count = readers

    # -- life cycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        in_memory = str(self.path) == ":memory:"
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        url = "sqlite://" if in_memory else f"sqlite:///{self.path}"
        self.engine = create_engine(url, pool_size=self._readers_count + 1, max_overflow=4)
        event.listen(self.engine, "connect", lambda dbapi, _rec: schema.configure_connection(dbapi))
        event.listen(self.engine, "begin", _begin)
        self._readers = ThreadPoolExecutor(self._readers_count, thread_name_prefix="isengard-sqlite-read")
        await asyncio.get_running_loop().run_in_executor(self._readers, self._create_schema)
        self._writer = GroupCommitWriter(self.engine)
        # Point lookups by public id take ~10 us: a thread hop costs more than the query, so they run on the
        # event loop, on a connection of their own (WAL: readers never wait for the writer).
        self._inline = sqlite3.connect(self.path, check_same_thread=False)
        schema.configure_connection(self._inline)

    def _create_schema(self) -> None:
        """As a writer (BEGIN IMMEDIATE): a deferred transaction would read the tables first, then fail at once
        with "database is locked" if another server on the same file wrote meanwhile (it happened in CI)."""
        with self.engine.connect() as conn:
            conn.info[WRITER] = True  # the pool keeps the connection (and its info) for readers afterwards
            try:
                with conn.begin():
                    schema.metadata_obj.create_all(conn)
                    conn.execute(
                        text("INSERT OR IGNORE INTO properties (name, value) VALUES ('SchemaVersion', :v)"),
                        {"v": schema.SCHEMA_VERSION},
                    )
            finally:
                del conn.info[WRITER]

    async def stop(self) -> None:
        self._inline.close()
        await asyncio.to_thread(self._writer.stop)
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        return await self._writer.submit(fn)

    # -- helpers run inside a connection ---------------------------------------------------------------------
    @staticmethod
    def _row(conn: Connection, public_id: str, level: ResourceType | None = None) -> Any:
        row = conn.execute(
            text("SELECT id, level, parent_id FROM resources WHERE public_id = :p"), {"p": public_id}
        ).first()
        if row is None or (level is not None and row.level != level):
            return None
        return row

    @staticmethod
    def _insert_tags(conn: Connection, resource_id: int, tags: dict[str, str]) -> None:
        if tags:
            conn.execute(
                schema.main_tags.insert(),
                [{"resource_id": resource_id, "tag": k, "value": v, "norm": normalize(v)} for k, v in tags.items()],
            )

    @staticmethod
    def _upsert_metadata(conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(_UPSERT_METADATA, [(r["r"], r["k"], r["v"]) for r in rows])

    @staticmethod
    def _insert_attachment(conn: Connection, resource_id: int, info: FileInfo, revision: int) -> None:
        conn.exec_driver_sql(_INSERT_ATTACHMENT, (resource_id, *_attachment_row(info), revision))

    @staticmethod
    def _attachments_of(conn: Connection, ids: Sequence[int]) -> list[FileInfo]:
        files: list[FileInfo] = []
        for chunk in chunks(ids):
            marks, params = in_list("i", chunk)
            rows = conn.execute(text(f"SELECT * FROM attachments WHERE resource_id IN ({marks})"), params)
            files.extend(_file_info(r) for r in rows)
        return files

    # -- ingest ----------------------------------------------------------------------------------------------
    async def store_instance(self, record: InstanceRecord, *, overwrite: bool) -> StoreOutcome:
        return await self._write(lambda conn: self._store(conn, record, overwrite))

    def _store(self, conn: Connection, record: InstanceRecord, overwrite: bool) -> StoreOutcome:
        """The hot path of ingest, on the driver's cursor: SQLAlchemy's statement handling would double its cost.

        It runs inside the writer's transaction and savepoint, on the same connection.
        """
        ids = record.identifiers.public_ids()
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        replaced: list[FileInfo] = []
        existing = cur.execute("SELECT id FROM resources WHERE public_id = ?", (ids[ResourceType.INSTANCE],)).fetchone()
        if existing is not None:
            if not overwrite:
                return StoreOutcome("AlreadyStored")
            replaced = self._attachments_of(conn, [existing[0]])
            cur.execute("DELETE FROM resources WHERE id = ?", (existing[0],))
        ancestors = dict(
            cur.execute(
                "SELECT level, id FROM resources WHERE public_id IN (?, ?, ?)",
                (ids[ResourceType.PATIENT], ids[ResourceType.STUDY], ids[ResourceType.SERIES]),
            ).fetchall()
        )
        parent_id: int | None = None
        created: dict[ResourceType, int] = {}
        touched: list[int] = []
        tag_rows: list[tuple[int, str, str, str]] = []
        for level in ResourceType:
            found = ancestors.get(int(level)) if level is not ResourceType.INSTANCE else None
            if found is not None:
                parent_id = found
                touched.append(found)
                continue
            cur.execute(
                "INSERT INTO resources (level, public_id, parent_id) VALUES (?, ?, ?)",
                (int(level), ids[level], parent_id),
            )
            parent_id = cur.lastrowid
            assert parent_id is not None
            created[level] = parent_id
            if level is not ResourceType.INSTANCE:
                touched.append(parent_id)
            tag_rows += [(parent_id, k, v, normalize(v)) for k, v in record.main_tags.get(level, {}).items()]
        instance_id = created[ResourceType.INSTANCE]
        cur.executemany("INSERT INTO main_tags (resource_id, tag, value, norm) VALUES (?, ?, ?, ?)", tag_rows)
        meta = [(rid, k, v) for level, rid in created.items() for k, v in record.metadata.get(level, {}).items()]
        meta += [(rid, int(MetadataType.LAST_UPDATE), record.when) for rid in touched]
        cur.executemany(_UPSERT_METADATA, meta)
        cur.executemany(_INSERT_ATTACHMENT, [(instance_id, *_attachment_row(info), 0) for info in record.attachments])
        changes = []
        for level in sorted(created, reverse=True):
            change_type = NEW_RESOURCE_CHANGE[level]
            cur.execute(
                "INSERT INTO changes (change_type, level, public_id, date) VALUES (?, ?, ?, ?)",
                (int(change_type), int(level), ids[level], record.when),
            )
            changes.append(Change(int(cur.lastrowid or 0), change_type, level, ids[level], record.when))
        patient_id = created.get(ResourceType.PATIENT) or ancestors[int(ResourceType.PATIENT)]
        cur.execute("UPDATE resources SET recycle_seq = ? WHERE id = ?", (changes[0].seq, patient_id))
        return StoreOutcome("Success", changes, replaced)

    async def delete_resource(self, level: ResourceType, public_id: str) -> DeleteOutcome | None:
        return await self._write(lambda conn: self._delete(conn, level, public_id))

    def _delete(self, conn: Connection, level: ResourceType, public_id: str) -> DeleteOutcome | None:
        row = self._row(conn, public_id, level)
        if row is None:
            return None
        subtree = conn.execute(
            text(
                "WITH RECURSIVE sub(id, level, public_id) AS ("
                " SELECT id, level, public_id FROM resources WHERE id = :i"
                " UNION ALL SELECT r.id, r.level, r.public_id FROM resources r JOIN sub ON r.parent_id = sub.id)"
                " SELECT id, level, public_id FROM sub"
            ),
            {"i": row.id},
        ).all()
        files = self._attachments_of(conn, [r.id for r in subtree])
        conn.execute(text("DELETE FROM resources WHERE id = :i"), {"i": row.id})
        forget_changes(conn, [r.public_id for r in subtree])
        date = now_iso()
        changes = [
            insert_change(conn, ChangeType.DELETED, ResourceType(r.level), r.public_id, date)
            for r in sorted(subtree, key=lambda r: -r.level)
        ]
        remaining = None
        parent_id = row.parent_id
        while parent_id is not None:
            parent = conn.execute(
                text("SELECT id, level, public_id, parent_id FROM resources WHERE id = :i"), {"i": parent_id}
            ).one()
            has_children = conn.execute(
                text("SELECT 1 FROM resources WHERE parent_id = :i LIMIT 1"), {"i": parent_id}
            ).first()
            if has_children:
                remaining = (ResourceType(parent.level), parent.public_id)
                break
            files += self._attachments_of(conn, [parent.id])
            conn.execute(text("DELETE FROM resources WHERE id = :i"), {"i": parent.id})
            forget_changes(conn, [parent.public_id])
            changes.append(insert_change(conn, ChangeType.DELETED, ResourceType(parent.level), parent.public_id, date))
            parent_id = parent.parent_id
        return DeleteOutcome(files, changes, remaining)

    async def update_main_tags(self, level: ResourceType, public_id: str, tags: dict[str, str]) -> None:
        def run(conn: Connection) -> None:
            row = self._require(conn, level, public_id)
            conn.execute(text("DELETE FROM main_tags WHERE resource_id = :i"), {"i": row.id})
            self._insert_tags(conn, row.id, tags)

        await self._write(run)

    # -- reading ---------------------------------------------------------------------------------------------
    async def lookup(self, public_id: str) -> ResourceType | None:
        row = self._inline.execute("SELECT level FROM resources WHERE public_id = ?", (public_id,)).fetchone()
        return None if row is None else ResourceType(row[0])

    async def get_resources(self, level: ResourceType, public_ids: Iterable[str]) -> list[Resource]:
        wanted = list(dict.fromkeys(public_ids))
        if level is ResourceType.INSTANCE and len(wanted) == 1:
            # One instance (a DICOMweb frame, /instances/{id}/...): five point lookups, no children, cheaper on
            # the event loop than the thread hop and SQLAlchemy's statement handling (as lookup()); in one read
            # transaction, as a pooled reader's.
            return self._inline_read(lambda query: self._get_resources(query, level, wanted))
        return await self._read(lambda conn: self._get_resources(_rows_of(conn), level, wanted))

    def _inline_read(self, fn: Callable[[_Query], T]) -> T:
        db = self._inline
        db.execute("BEGIN")
        try:
            return fn(lambda sql, params: _rows(db.execute(sql, params)))
        finally:
            db.execute("COMMIT")  # a read: nothing to roll back

    def _get_resources(self, query: _Query, level: ResourceType, wanted: list[str]) -> list[Resource]:
        found: dict[str, Resource] = {}
        for chunk in chunks(wanted):
            marks, params = in_list("p", chunk)
            params["l"] = int(level)
            rows = query(
                "SELECT r.id, r.public_id, r.protected, p.public_id AS parent "
                f"FROM resources r LEFT JOIN resources p ON p.id = r.parent_id "
                f"WHERE r.level = :l AND r.public_id IN ({marks})",
                params,
            )
            if not rows:
                continue
            by_id = {r.id: Resource(level, r.public_id, r.parent, [], {}, is_protected=bool(r.protected)) for r in rows}
            marks, params = in_list("i", list(by_id))
            for r in query(
                f"SELECT parent_id, public_id FROM resources WHERE parent_id IN ({marks}) ORDER BY id", params
            ):
                by_id[r.parent_id].children.append(r.public_id)
            for r in query(f"SELECT resource_id, tag, value FROM main_tags WHERE resource_id IN ({marks})", params):
                by_id[r.resource_id].main_tags[r.tag] = r.value
            for r in query(f"SELECT resource_id, kind, value FROM metadata WHERE resource_id IN ({marks})", params):
                res = by_id[r.resource_id]
                res.metadata[r.kind] = r.value
                if r.kind == MetadataType.LAST_UPDATE:
                    res.last_update = r.value
            for r in query(
                f"SELECT resource_id, label FROM labels WHERE resource_id IN ({marks}) ORDER BY label", params
            ):
                by_id[r.resource_id].labels.append(r.label)
            if level is ResourceType.INSTANCE:
                for r in query(f"SELECT * FROM attachments WHERE kind = 1 AND resource_id IN ({marks})", params):
                    by_id[r.resource_id].attachment = _file_info(r)
            found.update((res.public_id, res) for res in by_id.values())
        return [found[p] for p in wanted if p in found]

    async def list_resources(self, level: ResourceType, *, since: int = 0, limit: int | None = None) -> list[str]:
        sql = "SELECT public_id FROM resources WHERE level = :l ORDER BY id LIMIT :lim OFFSET :off"
        params = {"l": int(level), "lim": -1 if limit is None else limit, "off": since}
        return await self._read(lambda conn: list(conn.execute(text(sql), params).scalars()))

    async def instances_of(self, level: ResourceType, public_id: str) -> list[str]:
        sql = (
            "WITH RECURSIVE sub(id, level, public_id) AS ("
            " SELECT id, level, public_id FROM resources WHERE public_id = :p AND level = :l"
            " UNION ALL SELECT r.id, r.level, r.public_id FROM resources r JOIN sub ON r.parent_id = sub.id)"
            " SELECT public_id FROM sub WHERE level = 4 ORDER BY id"
        )
        return await self._read(lambda conn: list(conn.execute(text(sql), {"p": public_id, "l": int(level)}).scalars()))

    async def find(self, query: FindQuery) -> list[str]:
        sql, params = build_find(query)
        if _by_uids(query):  # a few rows from the (tag, value) index: on the event loop, as get_resources of one
            return [row[0] for row in self._inline.execute(sql, params)]
        return await self._read(lambda conn: list(conn.execute(text(sql), params).scalars()))

    async def statistics(self, level: ResourceType | None = None, public_id: str | None = None) -> Statistics:
        return await self._read(lambda conn: self._statistics(conn, level, public_id))

    @staticmethod
    def _statistics(conn: Connection, level: ResourceType | None, public_id: str | None) -> Statistics:
        stats = Statistics()
        if public_id is None:
            source = "resources"
            params: dict[str, Any] = {}
            prefix = ""
        else:
            prefix = (
                "WITH RECURSIVE sub(id, level) AS ("
                " SELECT id, level FROM resources WHERE public_id = :p AND level = :l"
                " UNION ALL SELECT r.id, r.level FROM resources r JOIN sub ON r.parent_id = sub.id) "
            )
            source = "sub"
            params = {"p": public_id, "l": int(level or 0)}
        counts = dict(conn.execute(text(f"{prefix}SELECT level, COUNT(*) FROM {source} GROUP BY level"), params).all())
        stats.count_patients = counts.get(1, 0)
        stats.count_studies = counts.get(2, 0)
        stats.count_series = counts.get(3, 0)
        stats.count_instances = counts.get(4, 0)
        row = conn.execute(
            text(
                f"{prefix}SELECT COALESCE(SUM(a.compressed_size), 0) AS disk, "
                "COALESCE(SUM(a.uncompressed_size), 0) AS raw, "
                "COALESCE(SUM(CASE WHEN a.kind = 1 THEN a.compressed_size END), 0) AS dicom_disk, "
                "COALESCE(SUM(CASE WHEN a.kind = 1 THEN a.uncompressed_size END), 0) AS dicom_raw "
                + (
                    "FROM attachments a"
                    if public_id is None
                    else "FROM attachments a JOIN sub ON a.resource_id = sub.id"
                )
            ),
            params,
        ).one()
        stats.disk_size, stats.uncompressed_size = row.disk, row.raw
        stats.dicom_disk_size, stats.dicom_uncompressed_size = row.dicom_disk, row.dicom_raw
        return stats

    # -- metadata and attachments ----------------------------------------------------------------------------
    def _require(self, conn: Connection, level: ResourceType, public_id: str) -> Any:
        row = self._row(conn, public_id, level)
        if row is None:
            raise KeyError(public_id)
        return row

    async def get_metadata(self, level: ResourceType, public_id: str) -> dict[int, tuple[str, int]]:
        def run(conn: Connection) -> dict[int, tuple[str, int]]:
            row = self._require(conn, level, public_id)
            rows = conn.execute(
                text("SELECT kind, value, revision FROM metadata WHERE resource_id = :i ORDER BY kind"), {"i": row.id}
            )
            return {r.kind: (r.value, r.revision) for r in rows}

        return await self._read(run)

    async def set_metadata(
        self, level: ResourceType, public_id: str, kind: int, value: str, *, expected_revision: int | None
    ) -> tuple[int, Change]:
        def run(conn: Connection) -> tuple[int, Change]:
            row = self._require(conn, level, public_id)
            current = conn.execute(
                text("SELECT revision FROM metadata WHERE resource_id = :i AND kind = :k"), {"i": row.id, "k": kind}
            ).scalar()
            if expected_revision is not None and current is not None and current != expected_revision:
                raise RevisionMismatch(f"metadata {kind} is at revision {current}")
            self._upsert_metadata(conn, [{"r": row.id, "k": kind, "v": value}])
            change = insert_change(conn, ChangeType.UPDATED_METADATA, level, public_id, now_iso())
            return (0 if current is None else current + 1), change

        return await self._write(run)

    async def delete_metadata(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> bool:
        def run(conn: Connection) -> bool:
            row = self._require(conn, level, public_id)
            current = conn.execute(
                text("SELECT revision FROM metadata WHERE resource_id = :i AND kind = :k"), {"i": row.id, "k": kind}
            ).scalar()
            if current is None:
                return False
            if expected_revision is not None and current != expected_revision:
                raise RevisionMismatch(f"metadata {kind} is at revision {current}")
            conn.execute(text("DELETE FROM metadata WHERE resource_id = :i AND kind = :k"), {"i": row.id, "k": kind})
            insert_change(conn, ChangeType.UPDATED_METADATA, level, public_id, now_iso())
            return True

        return await self._write(run)

    async def get_attachments(self, level: ResourceType, public_id: str) -> dict[int, FileInfo]:
        db = self._inline  # a point lookup, as in lookup()
        row = db.execute(
            "SELECT id FROM resources WHERE public_id = ? AND level = ?", (public_id, int(level))
        ).fetchone()
        if row is None:
            raise KeyError(public_id)
        cursor = db.execute("SELECT * FROM attachments WHERE resource_id = ?", (row[0],))
        names = [d[0] for d in cursor.description]
        return {f.content_type: f for f in (_file_info(_Row(zip(names, r, strict=True))) for r in cursor)}

    async def set_attachment(
        self, level: ResourceType, public_id: str, info: FileInfo, *, expected_revision: int | None
    ) -> tuple[FileInfo | None, Change]:
        def run(conn: Connection) -> tuple[FileInfo | None, Change]:
            row = self._require(conn, level, public_id)
            old = next((f for f in self._attachments_of(conn, [row.id]) if f.content_type == info.content_type), None)
            if expected_revision is not None and old is not None and old.revision != expected_revision:
                raise RevisionMismatch(f"attachment {info.content_type} is at revision {old.revision}")
            if old is not None:
                conn.execute(
                    text("DELETE FROM attachments WHERE resource_id = :i AND kind = :k"),
                    {"i": row.id, "k": info.content_type},
                )
            self._insert_attachment(conn, row.id, info, 0 if old is None else old.revision + 1)
            return old, insert_change(conn, ChangeType.UPDATED_ATTACHMENT, level, public_id, now_iso())

        return await self._write(run)

    async def delete_attachment(
        self, level: ResourceType, public_id: str, kind: int, *, expected_revision: int | None
    ) -> FileInfo | None:
        def run(conn: Connection) -> FileInfo | None:
            row = self._require(conn, level, public_id)
            old = next((f for f in self._attachments_of(conn, [row.id]) if f.content_type == kind), None)
            if old is None:
                return None
            if expected_revision is not None and old.revision != expected_revision:
                raise RevisionMismatch(f"attachment {kind} is at revision {old.revision}")
            conn.execute(text("DELETE FROM attachments WHERE resource_id = :i AND kind = :k"), {"i": row.id, "k": kind})
            insert_change(conn, ChangeType.UPDATED_ATTACHMENT, level, public_id, now_iso())
            return old

        return await self._write(run)

    # -- labels and protection -------------------------------------------------------------------------------
    async def set_label(self, level: ResourceType, public_id: str, label: str, present: bool) -> None:
        def run(conn: Connection) -> None:
            row = self._require(conn, level, public_id)
            sql = (
                "INSERT OR IGNORE INTO labels (resource_id, label) VALUES (:i, :l)"
                if present
                else "DELETE FROM labels WHERE resource_id = :i AND label = :l"
            )
            conn.execute(text(sql), {"i": row.id, "l": label})

        await self._write(run)

    async def all_labels(self) -> list[str]:
        sql = "SELECT DISTINCT label FROM labels ORDER BY label"
        return await self._read(lambda conn: list(conn.execute(text(sql)).scalars()))

    async def set_protected(self, public_id: str, protected: bool) -> None:
        def run(conn: Connection) -> None:
            row = self._require(conn, ResourceType.PATIENT, public_id)
            conn.execute(text("UPDATE resources SET protected = :v WHERE id = :i"), {"v": int(protected), "i": row.id})

        await self._write(run)

    async def recycling_candidate(self, avoid: str | None = None) -> str | None:
        sql = (
            "SELECT public_id FROM resources WHERE level = 1 AND protected = 0 AND public_id != :a "
            "ORDER BY recycle_seq LIMIT 1"
        )
        return await self._read(lambda conn: conn.execute(text(sql), {"a": avoid or ""}).scalar())

    async def all_attachment_uuids(self) -> set[str]:
        def run(conn: Connection) -> set[str]:
            return set(conn.execute(text("SELECT uuid FROM attachments")).scalars()) | self._job_output_uuids(conn)

        return await self._read(run)
