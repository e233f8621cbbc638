"""Finding resources for /tools/find and C-FIND alike: the index answers main tags, files answer the rest."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from .dicom.parse import dataset_text
from .dicom.tags import parse_tag
from .query import FindQuery, TagConstraint

if TYPE_CHECKING:
    from .context import ServerContext

#: Candidates whose files are read at the same time when a find involves tags the index does not keep.
FILE_CHECKS_AT_ONCE = 16


async def _file_matches(ctx: ServerContext, query: FindQuery, public_id: str, in_files: list[TagConstraint]) -> bool:
    """Tags the index does not keep are checked in the header of one instance of the resource (as Orthanc)."""
    instances = await ctx.index.instances_of(query.level, public_id)
    if not instances:
        return False
    ds, _ = await ctx.store.read_header(instances[0])
    for constraint in in_files:
        tag = parse_tag(constraint.keyword)
        if not constraint.matches(dataset_text(ds, tag) if tag in ds else None):
            return False
    return True


async def find_resources(ctx: ServerContext, query: FindQuery, in_files: list[TagConstraint]) -> list[str]:
    """Identifiers matching ``query`` (from the index) and ``in_files`` (checked in files), paged by the query."""
    if not in_files:
        return await ctx.index.find(query)
    # Paging applies after the file check, so the index is asked for every candidate, and files are read in
    # small batches until the page is full.
    candidates = await ctx.index.find(dataclasses.replace(query, since=0, limit=None))
    wanted = None if query.limit is None else query.since + query.limit
    matching: list[str] = []
    for start in range(0, len(candidates), FILE_CHECKS_AT_ONCE):
        batch = candidates[start : start + FILE_CHECKS_AT_ONCE]
        checks = await asyncio.gather(*(_file_matches(ctx, query, c, in_files) for c in batch))
        matching += [c for c, ok in zip(batch, checks, strict=True) if ok]
        if wanted is not None and len(matching) >= wanted:
            break
    return matching[query.since : wanted]
