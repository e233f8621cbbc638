"""Statements shared by several index methods, and the conversions between rows and the kernel's records."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from isengard.model import (
    Change,
    ChangeType,
    CompressionType,
    ExportedResource,
    FileInfo,
    MetadataType,
    Resource,
    ResourceType,
)

#: Append changes to the log. The counter row is updated in the writing transaction and stays locked until its
#: COMMIT, so sequence numbers are gap-free (a rollback gives its numbers back) and become visible in order:
#: a reader never sees seq N+1 before seq N, whichever server wrote them. Writers therefore log last, to hold the
#: row for no more than their commit.
LOG_CHANGES = """
WITH c AS (
    UPDATE counters SET value = value + cardinality($1::smallint[]) WHERE name = 'changes' RETURNING value
)
INSERT INTO changes (seq, change_type, level, public_id, date)
SELECT c.value - cardinality($1::smallint[]) + u.ord, u.change_type, u.level, u.public_id, $4
FROM c, unnest($1::smallint[], $2::smallint[], $3::text[]) WITH ORDINALITY AS u(change_type, level, public_id, ord)
RETURNING seq
"""

#: Everything a Resource shows, in one statement (one snapshot, one round trip) for any number of ids.
GET_RESOURCES = """
SELECT r.id, r.public_id, r.protected, p.public_id AS parent,
       ARRAY(SELECT c.public_id FROM resources c WHERE c.parent_id = r.id ORDER BY c.id) AS children,
       (SELECT json_object_agg(t.tag, t.value ORDER BY t.tag) FROM main_tags t WHERE t.resource_id = r.id) AS tags,
       (SELECT json_object_agg(m.kind, m.value ORDER BY m.kind) FROM metadata m WHERE m.resource_id = r.id) AS meta,
       ARRAY(SELECT l.label FROM labels l WHERE l.resource_id = r.id ORDER BY l.label) AS labels,
       a.kind, a.uuid, a.compression, a.compressed_size, a.compressed_md5, a.uncompressed_size, a.uncompressed_md5,
       a.revision
FROM resources r
LEFT JOIN resources p ON p.id = r.parent_id
LEFT JOIN attachments a ON r.level = 4 AND a.resource_id = r.id AND a.kind = 1
WHERE r.level = $1 AND r.public_id = ANY($2::text[])
"""

SUBTREE = """
WITH RECURSIVE sub(id, level, public_id) AS (
    SELECT id, level, public_id FROM resources WHERE id = $1
    UNION ALL SELECT r.id, r.level, r.public_id FROM resources r JOIN sub ON r.parent_id = sub.id
)
SELECT id, level, public_id FROM sub
"""

PATIENT_OF = """
WITH RECURSIVE up(id, level, public_id, parent_id) AS (
    SELECT id, level, public_id, parent_id FROM resources WHERE id = $1
    UNION ALL SELECT r.id, r.level, r.public_id, r.parent_id FROM resources r JOIN up ON r.id = up.parent_id
)
SELECT public_id FROM up WHERE level = 1
"""

ATTACHMENT_COLUMNS = (
    "kind, uuid, compression, compressed_size, compressed_md5, uncompressed_size, uncompressed_md5, revision"
)


def patient_lock_key(public_id: str) -> int:
    """The advisory lock of a patient's tree: 64 bits of its public id (a SHA-1). A collision only serializes
    two unrelated patients; ingest and deletion of one patient never interleave."""
    return int(public_id.replace("-", "")[:16], 16) - (1 << 63)


def file_info(row: asyncpg.Record) -> FileInfo:
    return FileInfo(
        uuid=row["uuid"],
        content_type=row["kind"],
        uncompressed_size=row["uncompressed_size"],
        uncompressed_md5=row["uncompressed_md5"],
        compression=CompressionType(row["compression"]),
        compressed_size=row["compressed_size"],
        compressed_md5=row["compressed_md5"],
        revision=row["revision"],
    )


def attachment_columns(info: FileInfo) -> tuple[object, ...]:
    """The columns after ``kind`` as the kernel records a file: stored size and MD5 are the compressed ones."""
    return (
        info.uuid,
        int(info.compression),
        info.stored_size,
        info.stored_md5,
        info.uncompressed_size,
        info.uncompressed_md5,
    )


def resource(level: ResourceType, row: asyncpg.Record) -> Resource:
    metadata = {int(k): v for k, v in json.loads(row["meta"] or "{}").items()}
    return Resource(
        level,
        row["public_id"],
        row["parent"],
        list(row["children"]),
        json.loads(row["tags"] or "{}"),
        last_update=metadata.get(MetadataType.LAST_UPDATE),
        labels=list(row["labels"]),
        is_protected=row["protected"],
        metadata=metadata,
        attachment=file_info(row) if row["kind"] is not None else None,
    )


def change(row: asyncpg.Record) -> Change:
    return Change(row["seq"], ChangeType(row["change_type"]), ResourceType(row["level"]), row["public_id"], row["date"])


def export(row: asyncpg.Record) -> ExportedResource:
    return ExportedResource(
        row["seq"],
        ResourceType(row["level"]),
        row["public_id"],
        row["remote_modality"],
        row["date"],
        row["patient_id"],
        row["study_uid"],
        row["series_uid"],
        row["sop_uid"],
    )


async def log_changes(
    conn: asyncpg.Connection, entries: Sequence[tuple[ChangeType, ResourceType, str]], date: str
) -> list[Change]:
    if not entries:
        return []
    rows = await conn.fetch(
        LOG_CHANGES, [int(t) for t, _, _ in entries], [int(lv) for _, lv, _ in entries], [p for *_, p in entries], date
    )
    seqs = sorted(r["seq"] for r in rows)
    return [Change(seq, t, lv, p, date) for seq, (t, lv, p) in zip(seqs, entries, strict=True)]
