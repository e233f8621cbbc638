"""The tables of the PostgreSQL index, created and upgraded at start-up by ordered migrations.

``schema_version`` holds one row: the number of migrations applied. Each migration is a function run in the
same transaction as the update of that row, under an advisory lock, so that several servers starting at once
on a new database upgrade it exactly once. A database newer than this code is refused rather than misread.

Text columns compared or sorted by the index use the "C" collation: byte order, as SQLite compares, so that
ranges ("20200101-20201231"), the order of public ids and of labels are the same on both backends whatever
the database's locale.

Values are indexed through ``left(value, 256)``: B-tree entries have a size limit (a third of a page) that a long
LT or UT value given in ExtraMainDicomTags would exceed; find.py compares the prefix for the index and the
whole value for the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from isengard.config import ConfigError
from isengard.dicom.tags import MAIN_TAGS, vr_of
from isengard.query import WILDCARD_VRS

from . import jobs
from .db import LOCK_SCHEMA

log = logging.getLogger("isengard.postgres")

#: Characters of a value the B-tree indexes keep (see the module's docstring).
INDEXED_PREFIX = 256
#: Main tags on which wildcards are allowed (textual VRs): the only ones worth a trigram index.
WILDCARD_TAGS = sorted({k for keywords in MAIN_TAGS.values() for k in keywords if vr_of(k) in WILDCARD_VRS})

Migration = Callable[[asyncpg.Connection], Awaitable[None]]


async def _v1_tables(conn: asyncpg.Connection) -> None:
    await conn.execute(
        f"""
        CREATE TABLE resources (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            level smallint NOT NULL,
            public_id text COLLATE "C" NOT NULL UNIQUE,
            parent_id bigint REFERENCES resources (id) ON DELETE CASCADE,
            protected boolean NOT NULL DEFAULT false,
            recycle_seq bigint  -- patients: the id of their latest instance, oldest recycled first
        );
        CREATE INDEX resources_parent ON resources (parent_id);
        CREATE INDEX resources_level_id ON resources (level, id);
        CREATE INDEX resources_level_public ON resources (level, public_id);
        CREATE INDEX resources_recycle ON resources (recycle_seq) WHERE level = 1 AND NOT protected;

        CREATE TABLE main_tags (
            resource_id bigint NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
            tag text COLLATE "C" NOT NULL,
            value text COLLATE "C" NOT NULL,
            norm text COLLATE "C" NOT NULL,  -- isengard.query.normalize(value): case-insensitive matching
            PRIMARY KEY (resource_id, tag)
        );
        CREATE INDEX main_tags_value ON main_tags (tag, left(value, {INDEXED_PREFIX}));
        CREATE INDEX main_tags_norm ON main_tags (tag, left(norm, {INDEXED_PREFIX}));

        CREATE TABLE metadata (
            resource_id bigint NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
            kind integer NOT NULL,
            value text NOT NULL,
            revision integer NOT NULL DEFAULT 0,
            PRIMARY KEY (resource_id, kind)
        );

        CREATE TABLE attachments (
            resource_id bigint NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
            kind integer NOT NULL,
            uuid text NOT NULL,
            compression smallint NOT NULL,
            compressed_size bigint NOT NULL,
            compressed_md5 text NOT NULL,
            uncompressed_size bigint NOT NULL,
            uncompressed_md5 text NOT NULL,
            revision integer NOT NULL DEFAULT 0,
            PRIMARY KEY (resource_id, kind)
        );

        CREATE TABLE labels (
            resource_id bigint NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
            label text COLLATE "C" NOT NULL,
            PRIMARY KEY (resource_id, label)
        );
        CREATE INDEX labels_label ON labels (label);

        -- seq is assigned from the counter row below in the writing transaction: no gaps, commit order
        CREATE TABLE changes (
            seq bigint PRIMARY KEY,
            change_type smallint NOT NULL,
            level smallint NOT NULL,
            public_id text COLLATE "C" NOT NULL,
            date text NOT NULL
        );
        CREATE INDEX changes_public_id ON changes (public_id);
        CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
        INSERT INTO counters (name, value) VALUES ('changes', 0);

        CREATE TABLE exports (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            level smallint NOT NULL,
            public_id text NOT NULL,
            remote_modality text NOT NULL,
            patient_id text NOT NULL,
            study_uid text NOT NULL,
            series_uid text NOT NULL,
            sop_uid text NOT NULL,
            date text NOT NULL
        );

        CREATE TABLE properties (name text PRIMARY KEY, value text NOT NULL);
        """
    )


async def _v2_jobs(conn: asyncpg.Connection) -> None:
    await conn.execute(jobs.SCHEMA)


#: Applied in order; never edit one that has shipped, append a new one.
MIGRATIONS: list[Migration] = [_v1_tables, _v2_jobs]


async def upgrade(conn: asyncpg.Connection) -> int:
    """Bring the schema to the latest version; returns that version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *LOCK_SCHEMA)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = await conn.fetchval("SELECT version FROM schema_version")
        if current is None:
            current = 0
            await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > len(MIGRATIONS):
            raise ConfigError(
                f"the PostgreSQL index is at schema version {current}, newer than this Isengard knows "
                f"({len(MIGRATIONS)}): upgrade isengard-postgres"
            )
        for version, migrate in enumerate(MIGRATIONS[current:], start=current + 1):
            log.warning("upgrading the PostgreSQL index to schema version %d", version)
            await migrate(conn)
            await conn.execute("UPDATE schema_version SET version = $1", version)
        await _trigram_indexes(conn)
    return len(MIGRATIONS)


async def _trigram_indexes(conn: asyncpg.Connection) -> None:
    """Trigram indexes for wildcards ("*SMITH*"), when the pg_trgm extension exists or may be created.

    Not a migration: a database whose role could not create the extension gets the indexes at the first start
    after an administrator did. Partial, on the textual main tags only: UIDs, dates and numbers take no
    wildcards, and would triple the size of the index.
    """
    try:
        async with conn.transaction():  # a savepoint: a refusal must not abort the upgrade
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except asyncpg.PostgresError as e:
        log.warning("pg_trgm is not available (%s): wildcard searches scan instead of using an index", e)
        return
    tags = ", ".join("'" + t + "'" for t in WILDCARD_TAGS)
    await conn.execute(
        f"CREATE INDEX IF NOT EXISTS main_tags_norm_trgm ON main_tags USING gin (norm gin_trgm_ops) "
        f"WHERE tag IN ({tags})"
    )
