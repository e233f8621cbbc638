"""The change log, the export log and server-wide properties of the SQLite index."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from isengard.model import Change, ChangeType, ExportedResource, ResourceType, now_iso

from .sql import chunks, in_list


def insert_change(conn: Connection, kind: ChangeType, level: ResourceType, public_id: str, date: str) -> Change:
    """On the driver's cursor, as the ingest's own statements: every new resource logs a change when it becomes
    stable, and SQLAlchemy's statement handling would cost more than the insert."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(
        "INSERT INTO changes (change_type, level, public_id, date) VALUES (?, ?, ?, ?)",
        (int(kind), int(level), public_id, date),
    )
    return Change(int(cursor.lastrowid or 0), kind, level, public_id, date)


def forget_changes(conn: Connection, public_ids: Sequence[str]) -> None:
    """As in Orthanc, the log forgets what it said about deleted resources (no dangling references), and
    says instead that they were deleted."""
    for chunk in chunks(public_ids):
        marks, params = in_list("p", chunk)
        conn.execute(text(f"DELETE FROM changes WHERE public_id IN ({marks})"), params)


class LogsMixin:
    """The log and property methods of :class:`~isengard_sqlite.index.SqliteIndex` (kept apart to keep modules
    small)."""

    _read: Callable[[Callable[[Connection], Any]], Awaitable[Any]]
    _write: Callable[[Callable[[Connection], Any]], Awaitable[Any]]

    async def log_change(self, change_type: ChangeType, level: ResourceType, public_id: str) -> Change:
        return await self._write(lambda conn: insert_change(conn, change_type, level, public_id, now_iso()))

    @staticmethod
    def _change(row: Any) -> Change:
        return Change(row.seq, ChangeType(row.change_type), ResourceType(row.level), row.public_id, row.date)

    async def get_changes(self, since: int, limit: int) -> tuple[list[Change], bool, int]:
        def run(conn: Connection) -> tuple[list[Change], bool, int]:
            rows = conn.execute(
                text("SELECT * FROM changes WHERE seq > :s ORDER BY seq LIMIT :l"), {"s": since, "l": limit + 1}
            ).all()
            # AUTOINCREMENT's counter, not MAX(seq): the sequence goes on after the log is emptied.
            last = conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")).scalar() or 0
            return [self._change(r) for r in rows[:limit]], len(rows) <= limit, int(last)

        return await self._read(run)

    async def last_change(self) -> Change | None:
        def run(conn: Connection) -> Change | None:
            row = conn.execute(text("SELECT * FROM changes ORDER BY seq DESC LIMIT 1")).first()
            return None if row is None else self._change(row)

        return await self._read(run)

    async def clear_changes(self) -> None:
        await self._write(lambda conn: conn.execute(text("DELETE FROM changes")))

    async def log_export(self, resource: ExportedResource) -> None:
        def run(conn: Connection) -> None:
            conn.execute(
                text(
                    "INSERT INTO exports (level, public_id, remote_modality, patient_id, study_uid, series_uid, "
                    "sop_uid, date) VALUES (:l, :p, :m, :pid, :st, :se, :so, :d)"
                ),
                {
                    "l": int(resource.level),
                    "p": resource.public_id,
                    "m": resource.remote_modality,
                    "pid": resource.patient_id,
                    "st": resource.study_uid,
                    "se": resource.series_uid,
                    "so": resource.sop_uid,
                    "d": resource.date,
                },
            )

        await self._write(run)

    async def get_exports(self, since: int, limit: int) -> tuple[list[ExportedResource], bool, int]:
        def run(conn: Connection) -> tuple[list[ExportedResource], bool, int]:
            rows = conn.execute(
                text("SELECT * FROM exports WHERE seq > :s ORDER BY seq LIMIT :l"), {"s": since, "l": limit + 1}
            ).all()
            last = conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM exports")).scalar() or 0
            items = [
                ExportedResource(
                    r.seq,
                    ResourceType(r.level),
                    r.public_id,
                    r.remote_modality,
                    r.date,
                    r.patient_id,
                    r.study_uid,
                    r.series_uid,
                    r.sop_uid,
                )
                for r in rows[:limit]
            ]
            return items, len(rows) <= limit, int(last)

        return await self._read(run)

    async def clear_exports(self) -> None:
        await self._write(lambda conn: conn.execute(text("DELETE FROM exports")))

    async def get_property(self, name: str) -> str | None:
        sql = "SELECT value FROM properties WHERE name = :n"
        return await self._read(lambda conn: conn.execute(text(sql), {"n": name}).scalar())

    async def set_property(self, name: str, value: str | None) -> None:
        def run(conn: Connection) -> None:
            if value is None:
                conn.execute(text("DELETE FROM properties WHERE name = :n"), {"n": name})
            else:
                conn.execute(
                    text(
                        "INSERT INTO properties (name, value) VALUES (:n, :v) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                    ),
                    {"n": name, "v": value},
                )

        await self._write(run)
