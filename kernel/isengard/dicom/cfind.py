"""The default C-FIND handler: Patient Root and Study Root queries answered from the index.

Registered like any plugin (``trylast``), so a plugin implementing ``handle_c_find`` is asked first and can
answer, or return ``None`` to leave the query to this one.

Orthanc's rules, checked against Orthanc 1.10 with the same files and queries:

- a key with a value constrains the answers (wildcards, ranges and lists as in ``query.py``); the main tags of
  the queried level and of its ancestors are matched in the index, other tags in the header of one instance;
- ModalitiesInStudy at study level matches the studies that have a series of one of the modalities;
- a main tag of a lower level (Modality in a study query) matches nothing, and is answered empty;
- each answer holds the requested keys only (no unique key the query did not ask for), in UTF-8: empty keys are
  filled from the index, the computed keys (NumberOfStudyRelatedInstances, ModalitiesInStudy, ...) of the queried
  level are computed, others are read from the file; sequences are left out;
- LimitFindResults and LimitFindInstances cut the answers, and the last response then says 0xFE00 (matching
  terminated) instead of success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .. import hookimpl
from ..lookup import find_resources
from ..model import ResourceType
from ..query import FindQuery, TagConstraint
from ..requested import relatives_of, requested_tags
from .parse import dataset_text
from .retrieve import query_level
from .scp import FIND_MODELS, FindAnswers
from .tags import parse_tag

if TYPE_CHECKING:
    from ..context import ServerContext

#: Keys of the identifier that are not attributes of the resources.
_NOT_ATTRIBUTES = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
#: How the index's text becomes the value pydicom wants, for the VRs that are not text.
_CASTS: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV"), int),
    **dict.fromkeys(("FL", "FD"), float),
    "AT": parse_tag,
}


@dataclass
class ParsedQuery:
    level: ResourceType
    index: list[TagConstraint] = field(default_factory=list)  # answered by the index
    files: list[TagConstraint] = field(default_factory=list)  # matched in the files
    answers_nothing: bool = False
    keys: list[tuple[int, str, str]] = field(default_factory=list)  # (tag, keyword, VR) to answer, query order


def parse_query(ctx: ServerContext, query: Dataset) -> ParsedQuery:
    """Split a C-FIND identifier into constraints and return keys; raises OrthancError for bad values."""
    out = ParsedQuery(query_level(query))
    case_sensitive_pn = ctx.config.bool("CaseSensitivePN")
    for elem in query:
        keyword = elem.keyword
        if not keyword or keyword in _NOT_ATTRIBUTES or elem.tag.group == 0x0002 or elem.tag.element == 0:
            continue
        if elem.VR == "SQ":
            continue  # Orthanc neither matches nor answers sequences
        # an ambiguous VR ("US or SS") is settled by the file in a dataset; an answer takes the first one
        out.keys.append((int(elem.tag), keyword, elem.VR.split(" or ")[0]))
        text = dataset_text(query, elem.tag)
        if not text:
            continue  # universal matching
        sensitive = elem.VR != "PN" or case_sensitive_pn
        tag_level = ctx.main_tags.level_of(keyword)
        if keyword == "ModalitiesInStudy" and out.level is ResourceType.STUDY:
            # PS3.4 C.6.2.1.2: a study matches when one of its series has one of the modalities
            keyword, tag_level = "Modality", ResourceType.SERIES
        elif tag_level is not None and tag_level > out.level:
            out.answers_nothing = True
            continue
        constraint = TagConstraint.parse(keyword, tag_level or out.level, text, vr=elem.VR, case_sensitive=sensitive)
        if constraint is not None:
            (out.index if tag_level is not None else out.files).append(constraint)
    return out


def _value(vr: str, text: str | None) -> Any:
    """A text value (as the index keeps them) as pydicom expects it for the element's VR; None when empty."""
    if not text:
        return None
    cast = _CASTS.get(vr)
    if cast is None:
        return text
    try:
        values = [cast(v) for v in text.split("\\") if v]
    except (ValueError, KeyError):
        return None
    return values[0] if len(values) == 1 else values


async def answer_query(ctx: ServerContext, query: Dataset) -> FindAnswers:
    parsed = parse_query(ctx, query)
    if parsed.answers_nothing:
        return FindAnswers()
    level = parsed.level
    limit = ctx.config.int("LimitFindInstances" if level is ResourceType.INSTANCE else "LimitFindResults") or None
    # One more than the limit tells whether answers were left out.
    probe = None if limit is None else limit + 1
    ids = await find_resources(ctx, FindQuery(level, parsed.index, limit=probe), parsed.files)
    answers = FindAnswers(complete=limit is None or len(ids) <= limit)
    ids = ids[:limit]
    # Keys of a lower level than the query's are answered empty, as Orthanc does (it never reads them).
    answerable = [k for _, k, _ in parsed.keys if (ctx.main_tags.level_of(k) or level) <= level]
    resources = await ctx.index.get_resources(level, ids)
    known = await relatives_of(ctx, resources, answerable)
    for resource in resources:
        values = await requested_tags(ctx, resource, answerable, known=known)
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = query.QueryRetrieveLevel
        ds.RetrieveAETitle = ctx.config.str("DicomAet")
        for tag, keyword, vr in parsed.keys:
            value = values.get(keyword)
            ds.add_new(Tag(tag), vr, _value(vr, value if isinstance(value, str) else None))
        answers.append(ds)
    return answers


@hookimpl(trylast=True)
def handle_c_find(context: ServerContext, query: Dataset, model: str) -> Awaitable[FindAnswers] | None:
    if model not in FIND_MODELS[:2]:
        return None  # worklists and other models belong to plugins
    return answer_query(context, query)
