"""Which instances a C-MOVE or C-GET identifier designates, and the contexts to send them with.

Orthanc's rules: the resources are named by the unique key of the level (a list of values is allowed), or by
AccessionNumber at study level; keys of other levels are ignored; a missing QueryRetrieveLevel (some SCUs omit
it) is deduced from the most specific unique key that holds a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context

from ..errors import ErrorCode, OrthancError
from ..model import MetadataType, ResourceType
from ..query import ConstraintKind, FindQuery, TagConstraint
from .parse import dataset_text
from .tags import IDENTIFIER_TAGS, parse_tag

if TYPE_CHECKING:
    from ..context import ServerContext

LEVELS = {
    "PATIENT": ResourceType.PATIENT,
    "STUDY": ResourceType.STUDY,
    "SERIES": ResourceType.SERIES,
    "IMAGE": ResourceType.INSTANCE,
    "INSTANCE": ResourceType.INSTANCE,
}

#: The most presentation contexts an association may propose (PS3.8).
MAX_CONTEXTS = 128
_UNCOMPRESSED_LE = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def query_level(identifier: Dataset) -> ResourceType:
    text = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if text not in LEVELS:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"bad QueryRetrieveLevel {text!r}")
    return LEVELS[text]


def _values(identifier: Dataset, keyword: str) -> list[str]:
    tag = parse_tag(keyword)
    text = dataset_text(identifier, tag) if tag in identifier else None
    return [v.strip() for v in text.split("\\") if v.strip()] if text else []


def retrieved_resources(identifier: Dataset) -> tuple[ResourceType, str, list[str]]:
    """(level, key, values) naming the resources a C-MOVE or C-GET asks for."""
    if "QueryRetrieveLevel" in identifier and str(identifier.QueryRetrieveLevel).strip():
        levels = [query_level(identifier)]
    else:
        levels = sorted(ResourceType, reverse=True)
    for level in levels:
        keys = [IDENTIFIER_TAGS[level]] + (["AccessionNumber"] if level is ResourceType.STUDY else [])
        for keyword in keys:
            values = _values(identifier, keyword)
            if values:
                return level, keyword, values
    raise OrthancError(ErrorCode.BAD_REQUEST, "the identifier names no resource (no unique key with a value)")


async def instances_for_query(ctx: ServerContext, identifier: Dataset) -> list[str]:
    level, keyword, values = retrieved_resources(identifier)
    constraint = TagConstraint(keyword, level, ConstraintKind.LIST, tuple(values), case_sensitive=True)
    instances: list[str] = []
    for public_id in await ctx.index.find(FindQuery(level, [constraint])):
        instances += await ctx.index.instances_of(level, public_id)
    return instances


async def storage_contexts(ctx: ServerContext, instances: list[str]) -> list[PresentationContext]:
    """Contexts to send these instances as stored: one per SOP class and stored transfer syntax.

    Each syntax gets a context of its own (a context settles on one syntax, the acceptor's choice), and each SOP
    class one more with both little endian syntaxes, which pynetdicom can convert any uncompressed file to when
    the peer takes no other, and compressed files are decompressed to (:mod:`.transcode`). Past 128 contexts the
    last are left out, and their instances fail.
    """
    syntaxes: dict[str, set[str]] = {}
    for resource in await ctx.index.get_resources(ResourceType.INSTANCE, instances):
        sop_class = resource.metadata.get(MetadataType.SOP_CLASS_UID)
        if sop_class:
            syntaxes.setdefault(sop_class, set()).add(
                resource.metadata.get(MetadataType.TRANSFER_SYNTAX, ExplicitVRLittleEndian)
            )
    contexts = []
    for sop_class, found in sorted(syntaxes.items()):
        contexts += [build_context(sop_class, [syntax]) for syntax in sorted(found)]
        contexts.append(build_context(sop_class, _UNCOMPRESSED_LE))
    return contexts[:MAX_CONTEXTS]
