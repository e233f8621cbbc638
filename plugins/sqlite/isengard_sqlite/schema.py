"""Tables of the SQLite index. One row per resource, one per main tag, metadata and attachment; the change and
export logs; jobs; server-wide properties. Foreign keys cascade, so deleting a resource row deletes its subtree.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, String, Table

SCHEMA_VERSION = "1"

metadata_obj = MetaData()

resources = Table(
    "resources",
    metadata_obj,
    Column("id", Integer, primary_key=True),
    Column("level", Integer, nullable=False),
    Column("public_id", String, nullable=False, unique=True),
    Column("parent_id", Integer, ForeignKey("resources.id", ondelete="CASCADE")),
    Column("protected", Integer, nullable=False, server_default="0"),
    Column("recycle_seq", Integer),  # patients: the seq of their latest instance, oldest recycled first
)
Index("ix_resources_parent", resources.c.parent_id)
Index("ix_resources_level", resources.c.level, resources.c.id)
Index("ix_resources_recycle", resources.c.level, resources.c.protected, resources.c.recycle_seq)

main_tags = Table(
    "main_tags",
    metadata_obj,
    Column("resource_id", Integer, ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String, primary_key=True),
    Column("value", String, nullable=False),
    Column("norm", String, nullable=False),  # upper-case, accents removed: case-insensitive matching
)
Index("ix_main_tags_value", main_tags.c.tag, main_tags.c.value)
Index("ix_main_tags_norm", main_tags.c.tag, main_tags.c.norm)

metadata = Table(
    "metadata",
    metadata_obj,
    Column("resource_id", Integer, ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", Integer, primary_key=True),
    Column("value", String, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),
)

attachments = Table(
    "attachments",
    metadata_obj,
    Column("resource_id", Integer, ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", Integer, primary_key=True),
    Column("uuid", String, nullable=False),
    Column("compression", Integer, nullable=False),
    Column("compressed_size", Integer, nullable=False),
    Column("compressed_md5", String, nullable=False),
    Column("uncompressed_size", Integer, nullable=False),
    Column("uncompressed_md5", String, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),
)
Index("ix_attachments_uuid", attachments.c.uuid)

labels = Table(
    "labels",
    metadata_obj,
    Column("resource_id", Integer, ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
    Column("label", String, primary_key=True),
)
Index("ix_labels_label", labels.c.label)

changes = Table(
    "changes",
    metadata_obj,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("change_type", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("public_id", String, nullable=False),
    Column("date", String, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_changes_public_id", changes.c.public_id)

exports = Table(
    "exports",
    metadata_obj,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("level", Integer, nullable=False),
    Column("public_id", String, nullable=False),
    Column("remote_modality", String, nullable=False),
    Column("patient_id", String, nullable=False),
    Column("study_uid", String, nullable=False),
    Column("series_uid", String, nullable=False),
    Column("sop_uid", String, nullable=False),
    Column("date", String, nullable=False),
    sqlite_autoincrement=True,
)

# Jobs: the whole record as JSON in ``data``; the fields the engine selects on are columns too, and the columns
# win over the JSON (renew_jobs touches the heartbeat column only).
jobs = Table(
    "jobs",
    metadata_obj,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # submission order
    Column("id", String, nullable=False, unique=True),
    Column("type", String, nullable=False),
    Column("state", String, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("owner", String),
    Column("heartbeat", Float, nullable=False, server_default="0"),
    Column("revision", Integer, nullable=False),
    Column("data", String, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_jobs_claim", jobs.c.state, jobs.c.priority, jobs.c.seq)

properties = Table(
    "properties",
    metadata_obj,
    Column("name", String, primary_key=True),
    Column("value", String, nullable=False),
)


def configure_connection(dbapi_connection: sqlite3.Connection) -> None:
    """Per-connection settings: WAL for concurrent readers, cascading keys."""
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (needed for savepoints)
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()
