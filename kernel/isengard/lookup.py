"""Finding resources for /tools/find and C-FIND alike: the index answers main tags, files answer the rest.

Keys inside sequences (``RequestAttributesSequence.ScheduledProcedureStepID``, PS3.18 8.3.4.1) are matched as
PS3.4 C.2.2.2.6 says: the keys given for a sequence describe one item, which matches when all its keys match,
and a resource matches when any item of its sequence does. Sequences are never in the index: always checked in
the files.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .dicom.parse import dataset_text
from .dicom.tags import parse_tag
from .query import FindQuery, TagConstraint

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .context import ServerContext

#: Candidates whose files are read at the same time when a find involves tags the index does not keep.
FILE_CHECKS_AT_ONCE = 16


@dataclasses.dataclass
class SequenceConstraint:
    """The keys of the one item a query gives for a sequence (by keyword, or "gggg,eeee" when private)."""

    keyword: str
    keys: list[FileConstraint] = dataclasses.field(default_factory=list)

    def matches_in(self, ds: Dataset) -> bool:
        tag = parse_tag(self.keyword)
        elem = ds.get(tag)
        if elem is None or elem.VR != "SQ":
            return False
        return any(dataset_matches(item, self.keys) for item in elem.value or ())


#: A constraint checked in a file header: on an element of the dataset, or on the items of a sequence.
FileConstraint = TagConstraint | SequenceConstraint


def dataset_matches(ds: Dataset, constraints: Sequence[FileConstraint]) -> bool:
    """Whether a header (or a sequence item) satisfies every constraint."""
    for constraint in constraints:
        if isinstance(constraint, SequenceConstraint):
            if not constraint.matches_in(ds):
                return False
            continue
        tag = parse_tag(constraint.keyword)
        if not constraint.matches(dataset_text(ds, tag) if tag in ds else None):
            return False
    return True


def add_constraint(constraints: list[FileConstraint], path: Sequence[str], constraint: TagConstraint) -> None:
    """Add a constraint on a key inside the sequences of ``path`` (outermost first; empty: at the top level).

    Keys under one sequence join its one item (PS3.4 C.2.2.2.6), so that
    ``A.B=1&A.C=2`` asks for an item of A holding both, not for one item with B=1 and another with C=2.
    """
    if not path:
        constraints.append(constraint)
        return
    found = next((c for c in constraints if isinstance(c, SequenceConstraint) and c.keyword == path[0]), None)
    if found is None:
        found = SequenceConstraint(path[0])
        constraints.append(found)
    add_constraint(found.keys, path[1:], constraint)


async def _file_matches(
    ctx: ServerContext, query: FindQuery, public_id: str, in_files: Sequence[FileConstraint]
) -> bool:
    """Tags the index does not keep are checked in the header of one instance of the resource (as Orthanc)."""
    instances = await ctx.index.instances_of(query.level, public_id)
    if not instances:
        return False
    ds, _ = await ctx.store.read_header(instances[0])
    return dataset_matches(ds, in_files)


async def find_resources(ctx: ServerContext, query: FindQuery, in_files: Sequence[FileConstraint]) -> list[str]:
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
