"""The PostgreSQL index against the shared index contract (isengard.index_contract), plus its schema: versioned
upgrades, the trigram index, and the indexes the find statements use."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from isengard.backends import IndexBackend
from isengard.config import ConfigError
from isengard.index_contract import PAT, STU, TABLES, IndexContract, public, record
from isengard.model import ResourceType
from isengard.query import FindQuery, TagConstraint
from isengard_postgres import PostgresIndex
from isengard_postgres.find import build_find
from isengard_postgres.schema import MIGRATIONS
from isengard_postgres.testing import connection_arguments

from .conftest import settings


class TestPostgresIndexContract(IndexContract):
    async def table_counts(self, index: IndexBackend) -> dict[str, int]:
        assert isinstance(index, PostgresIndex)
        async with index.db.pool.acquire() as conn:
            return {t: await conn.fetchval(f"SELECT COUNT(*) FROM {t}") for t in TABLES}


async def test_upgrade_from_an_older_schema_keeps_the_data(database: str) -> None:
    """A database left at version 1 by an older release is brought to the latest version on start."""
    conn = await asyncpg.connect(**connection_arguments(database))
    try:
        await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        await conn.execute("INSERT INTO schema_version VALUES (1)")
        await MIGRATIONS[0](conn)
        await conn.execute("INSERT INTO properties (name, value) VALUES ('kept', 'yes')")
    finally:
        await conn.close()
    index = PostgresIndex(settings(database))
    await index.start()
    try:
        assert await index.get_property("kept") == "yes"
        assert await index.list_jobs() == []  # the tables of version 2 exist
        async with index.db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT version FROM schema_version") == len(MIGRATIONS)
    finally:
        await index.stop()


async def test_a_newer_schema_is_refused(database: str) -> None:
    index = PostgresIndex(settings(database))
    await index.start()
    async with index.db.pool.acquire() as conn:
        await conn.execute("UPDATE schema_version SET version = $1", len(MIGRATIONS) + 1)
    await index.stop()
    with pytest.raises(ConfigError, match="newer than this Isengard knows"):
        await PostgresIndex(settings(database)).start()


async def test_servers_starting_together_create_the_schema_once(database: str) -> None:
    indexes = [PostgresIndex(settings(database)) for _ in range(4)]
    await asyncio.gather(*(i.start() for i in indexes))
    try:
        await indexes[0].store_instance(record(), overwrite=False)
        assert (await indexes[3].statistics()).count_instances == 1
    finally:
        await asyncio.gather(*(i.stop() for i in indexes))


async def test_wildcards_use_the_trigram_index(index: PostgresIndex) -> None:
    async with index.db.pool.acquire() as conn:  # 20,000 patients with 5 tags each, by SQL
        await conn.execute(
            "INSERT INTO resources (level, public_id) SELECT 1, 'p' || i FROM generate_series(1, 20000) i;"
            "INSERT INTO main_tags (resource_id, tag, value, norm) "
            "SELECT id, tag, 'Name^' || md5(public_id || tag), upper('Name^' || md5(public_id || tag)) FROM resources, "
            "unnest(ARRAY['PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'OtherPatientIDs']) tag;"
            "ANALYZE"
        )
        wanted = await conn.fetchval("SELECT public_id FROM resources ORDER BY id LIMIT 1")
        needle = (await conn.fetchval("SELECT md5($1 || 'PatientName')", wanted))[10:16]
    name = TagConstraint.parse("PatientName", PAT, f"*{needle}*", vr="PN", case_sensitive=False)
    assert name is not None
    sql, params = build_find(FindQuery(PAT, [name]))
    async with index.db.pool.acquire() as conn:
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *params))
    assert "main_tags_norm_trgm" in plan, plan
    assert wanted in await index.find(FindQuery(PAT, [name]))


async def test_like_characters_and_long_values_are_plain_data(index: PostgresIndex) -> None:
    """ "%" and "_" match themselves; a value longer than a B-tree entry allows is stored and found exactly."""
    long_description = "LONG " * 2000
    odd, long = record(patient="100%_A"), record(patient="P2", study="2.1", series="2.1.1", sop="2.1.1.1")
    long.main_tags[STU]["StudyDescription"] = long_description
    for rec in (odd, long, record(patient="100XYA", study="3.1", series="3.1.1", sop="3.1.1.1")):
        await index.store_instance(rec, overwrite=False)

    def find(keyword: str, level: ResourceType, text: str, vr: str = "LO") -> FindQuery:
        constraint = TagConstraint.parse(keyword, level, text, vr=vr, case_sensitive=True)
        assert constraint is not None
        return FindQuery(level, [constraint])

    assert await index.find(find("PatientID", PAT, "100%_*")) == [public(odd, PAT)]
    assert await index.find(find("StudyDescription", STU, long_description)) == [public(long, STU)]
    assert await index.find(find("StudyDescription", STU, long_description + "X")) == []
    assert await index.find(find("StudyDescription", STU, "*LONG LONG*")) == [public(long, STU)]
