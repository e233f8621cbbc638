"""DICOM matching as /tools/find and C-FIND define it, independent of any database.

The kernel turns a query into :class:`TagConstraint` objects; an index backend either translates them into its
own query language or calls :meth:`TagConstraint.matches`. Case-insensitive comparisons use
:func:`normalize`, which backends also apply to the values they index, so that "müller" finds "MULLER".
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from dataclasses import dataclass, field

from .model import ResourceType


@functools.lru_cache(maxsize=65536)
def normalize(value: str) -> str:
    """Upper-case and strip accents: the form Orthanc compares case-insensitive values in."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


class ConstraintKind(enum.Enum):
    EQUAL = "Equal"
    RANGE = "Range"
    WILDCARD = "Wildcard"
    LIST = "List"


#: Value representations for which "A-B" means a range rather than a literal dash.
RANGE_VRS = frozenset({"DA", "TM", "DT"})


@dataclass(frozen=True)
class TagConstraint:
    """One condition on one main DICOM tag (by keyword), at the level where that tag is indexed."""

    keyword: str
    level: ResourceType
    kind: ConstraintKind
    values: tuple[str, ...]  # EQUAL: (v,); RANGE: (low, high), "" when open; WILDCARD: (pattern,); LIST: values
    case_sensitive: bool = True

    @classmethod
    def parse(
        cls, keyword: str, level: ResourceType, text: str, *, vr: str, case_sensitive: bool
    ) -> TagConstraint | None:
        """Read a DICOM query value; ``None`` when it constrains nothing (empty or a lone ``*``)."""
        text = text.strip()
        if text in ("", "*"):
            return None
        if vr in RANGE_VRS and "-" in text and "\\" not in text:
            low, _, high = text.partition("-")
            return cls(keyword, level, ConstraintKind.RANGE, (low.strip(), high.strip()), True)
        if "\\" in text:
            items = tuple(v for v in text.split("\\"))
            return cls(keyword, level, ConstraintKind.LIST, items, case_sensitive)
        if "*" in text or "?" in text:
            return cls(keyword, level, ConstraintKind.WILDCARD, (text,), case_sensitive)
        return cls(keyword, level, ConstraintKind.EQUAL, (text,), case_sensitive)

    def compared(self) -> tuple[str, ...]:
        """The values in the form they are compared in (normalized when case-insensitive)."""
        if self.case_sensitive or self.kind is ConstraintKind.RANGE:
            return self.values
        return tuple(normalize(v) for v in self.values)

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        values = self.compared()
        if self.kind is ConstraintKind.RANGE:
            return range_matches(values[0], values[1], value)
        probe = value if self.case_sensitive else normalize(value)
        if self.kind is ConstraintKind.EQUAL:
            return probe == values[0]
        if self.kind is ConstraintKind.LIST:
            return any(_item_matches(v, probe) for v in values)
        return wildcard_regex(values[0]).fullmatch(probe) is not None


def _item_matches(item: str, probe: str) -> bool:
    if "*" in item or "?" in item:
        return wildcard_regex(item).fullmatch(probe) is not None
    return item == probe


def range_matches(low: str, high: str, value: str) -> bool:
    """Dates, times and datetimes compare as strings once both sides have the same precision."""
    if not value:
        return False
    if low and value[: len(low)] < low[: len(value)]:
        return False
    return not (high and value[: len(high)] > high)


@functools.lru_cache(maxsize=1024)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """DICOM wildcards: ``*`` is any run of characters, ``?`` any single one; nothing else is special."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


class LabelsConstraint(enum.Enum):
    ALL = "All"
    ANY = "Any"
    NONE = "None"


@dataclass
class FindQuery:
    """A lookup the index answers alone: resources of ``level`` whose own or ancestors' tags match."""

    level: ResourceType
    constraints: list[TagConstraint] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    labels_constraint: LabelsConstraint = LabelsConstraint.ALL
    since: int = 0
    limit: int | None = None
