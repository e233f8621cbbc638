"""DICOM matching as /tools/find and C-FIND define it, independent of any database.

The kernel turns a query into :class:`TagConstraint` objects; an index backend either translates them into its
own query language or calls :meth:`TagConstraint.matches`. The rules are those of DICOM PS3.4 C.2.2.2 as Orthanc
applies them:

- an empty value constrains nothing (universal matching);
- ``A-B``, ``A-`` and ``-B`` are ranges on DA, TM and DT tags, compared as plain strings, so that an empty value
  is below every bound and ``20080819`` is above ``2008``;
- ``A\\B`` is a list of exact values (wildcards inside a list are literal characters);
- ``*`` and ``?`` are wildcards only for the textual VRs (AE, CS, LO, LT, PN, SH, ST, UC, UR, UT); on any other
  VR (a date, a UID...) they are refused rather than compared literally;
- any other value is an exact match.

Case-insensitive comparisons use :func:`normalize`, which backends also apply to the values they index: Orthanc
folds the case of every alphabet ("ΔΙΟΝΥΣΙΟΣ" finds "Διονυσιος") but keeps accents ("BUC^JEROME" does not find
"Buc^Jérôme").
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field

from .dicom.tags import format_tag, parse_tag
from .errors import ErrorCode, OrthancError
from .model import ResourceType

#: Value representations for which "A-B" means a range rather than a literal dash.
RANGE_VRS = frozenset({"DA", "TM", "DT"})
#: Value representations on which "*" and "?" are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


@functools.lru_cache(maxsize=65536)
def normalize(value: str) -> str:
    """The form case-insensitive values are compared in: upper case in every alphabet, accents kept."""
    return value.upper()


class ConstraintKind(enum.Enum):
    EQUAL = "Equal"
    RANGE = "Range"
    WILDCARD = "Wildcard"
    LIST = "List"


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@dataclass(frozen=True)
class TagConstraint:
    """One condition on one DICOM tag (by keyword), at the level where that tag is indexed.

    A resource that lacks the tag never matches, even ``*``: only an empty query value is universal.
    """

    keyword: str
    level: ResourceType
    kind: ConstraintKind
    values: tuple[str, ...]  # EQUAL: (v,); RANGE: (low, high), "" when open; WILDCARD: (pattern,); LIST: values
    case_sensitive: bool = True

    @classmethod
    def parse(
        cls,
        keyword: str,
        level: ResourceType,
        text: str,
        *,
        vr: str,
        case_sensitive: bool,
        universal_star: bool = True,
    ) -> TagConstraint | None:
        """Read a DICOM query value; ``None`` when it constrains nothing.

        An empty value is universal; so is a lone ``*`` when ``universal_star`` (C-FIND), whereas /tools/find
        reads it as a wildcard that needs the tag to be present. Raises ``OrthancError`` for wildcards on a VR
        that does not allow them.
        """
        if text == "" or (universal_star and text == "*"):
            return None
        if vr in RANGE_VRS and "-" in text:
            low, _, high = text.partition("-")
            return cls(keyword, level, ConstraintKind.RANGE, (low, high), True)
        if "\\" in text:
            return cls(keyword, level, ConstraintKind.LIST, tuple(text.split("\\")), case_sensitive)
        if has_wildcard(text):
            if vr not in WILDCARD_VRS:
                tag = format_tag(parse_tag(keyword))
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Wildcards are not allowed on tag {tag}")
            return cls(keyword, level, ConstraintKind.WILDCARD, (text,), case_sensitive)
        return cls(keyword, level, ConstraintKind.EQUAL, (text,), case_sensitive)

    def compared(self) -> tuple[str, ...]:
        """The values in the form they are compared in (normalized when case-insensitive)."""
        if self.case_sensitive or self.kind is ConstraintKind.RANGE:
            return self.values
        return tuple(normalize(v) for v in self.values)

    def matches(self, value: str | None) -> bool:
        """Whether a resource whose tag holds ``value`` (``None``: the tag is absent) satisfies the constraint."""
        if value is None:
            return False
        values = self.compared()
        if self.kind is ConstraintKind.RANGE:
            return range_matches(values[0], values[1], value)
        probe = value if self.case_sensitive else normalize(value)
        if self.kind is ConstraintKind.WILDCARD:
            return wildcard_regex(values[0]).fullmatch(probe) is not None
        return probe in values


def range_matches(low: str, high: str, value: str) -> bool:
    """``low <= value <= high`` as strings, an empty bound being open (Orthanc's reading of range matching)."""
    return (not low or value >= low) and (not high or value <= high)


@functools.lru_cache(maxsize=1024)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """DICOM wildcards: ``*`` is any run of characters, ``?`` any single one; nothing else is special."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


class LabelsConstraint(enum.Enum):
    ALL = "All"
    ANY = "Any"
    NONE = "None"


@dataclass(frozen=True)
class OrderKey:
    """One key of a /tools/find ``OrderBy``: a main DICOM tag of the queried level or of an ancestor (``tag``, at
    ``level``), or a metadata of the resource itself (``metadata``, its numeric type).

    Values compare as text (code points), except ``numeric`` ones (tags of VR IS, DS...), which compare by their
    leading number (none: 0) so that SeriesNumber 10 comes after 9. A missing value comes first in ascending
    order, last in descending order. Ties keep Orthanc's order.
    """

    level: ResourceType
    tag: str = ""
    metadata: int | None = None
    descending: bool = False
    numeric: bool = False


@dataclass
class FindQuery:
    """A lookup the index answers alone: resources of ``level`` whose own, ancestors' or descendants' tags match.

    Answers come in Orthanc's order: instances in the order they were stored, other levels by public id, unless
    ``order_by`` names keys; ``since`` and ``limit`` page that order.
    """

    level: ResourceType
    constraints: list[TagConstraint] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    labels_constraint: LabelsConstraint = LabelsConstraint.ALL
    since: int = 0
    limit: int | None = None
    order_by: tuple[OrderKey, ...] = ()
