"""Modality Worklist matching (PS3.4 K.6) of one C-FIND identifier against worklist items.

The identifier is read once into a :class:`Matcher`; each key with a value becomes a ``TagConstraint`` of the
kernel's ``query.py``, so single values, ``*``/``?`` wildcards, ``A-B`` date and time ranges, UID lists and
universal matching follow the same rules as the query/retrieve C-FIND (PS3.4 C.2.2.2). What worklists add:

- sequence matching (C.2.2.2.6): a key sequence holds at most one item, whose keys are matched against each item
  of the worklist's sequence; the worklist matches when one of them does, and only the items that match are
  returned (so a ScheduledProcedureStepSequence query for Modality "CT" answers the CT steps of an order). A key
  sequence with no item, or with one empty item, asks for the whole sequence;
- a multi-valued attribute of a worklist (ScheduledStationAETitle "AA32\\AA33") matches when one of its values
  does, or the whole value does;
- text is compared as decoded text: the identifier in its SpecificCharacterSet, each worklist in its own, and
  the answer keeps the worklist's character set, so nothing is transcoded on the way back;
- the answer holds the keys the identifier asked for, and only those, in the worklist's values; a requested key
  the worklist lacks is returned empty (C.2.2.1.3: zero length when the SCP has no value).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from isengard.dicom.parse import dataset_text
from isengard.dicom.tags import format_tag
from isengard.errors import ErrorCode, OrthancError
from isengard.model import ResourceType
from isengard.query import TagConstraint

SPECIFIC_CHARACTER_SET = 0x00080005
SCHEDULED_PROCEDURE_STEP_SEQUENCE = 0x00400100
SCHEDULED_STATION_AE_TITLE = 0x00400001


def _is_key(elem: DataElement) -> bool:
    """Whether an element of an identifier asks for something (not the character set, not a group length)."""
    tag = int(elem.tag)
    return tag != SPECIFIC_CHARACTER_SET and elem.tag.element != 0 and elem.tag.group not in (0x0000, 0x0002)


@dataclass
class Matcher:
    """The keys of one identifier (or of the item of one of its key sequences)."""

    constraints: list[tuple[int, TagConstraint]] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)  # tag -> VR, every non-sequence key
    sequences: dict[int, Matcher | None] = field(default_factory=dict)  # None: the whole sequence

    @classmethod
    def parse(cls, query: Dataset, *, case_sensitive_pn: bool) -> Matcher:
        """Read an identifier; raises ``OrthancError`` for keys it cannot hold (two items in a key sequence,
        wildcards in a date or a UID)."""
        out = cls()
        for elem in query:
            if not _is_key(elem):
                continue
            tag, vr = int(elem.tag), elem.VR.split(" or ")[0]
            if vr == "SQ":
                items = list(elem.value or [])
                if len(items) > 1:
                    details = f"Sequence {format_tag(tag)} of a worklist query holds more than one item"
                    raise OrthancError(ErrorCode.BAD_REQUEST, details)
                useful = [e for e in items[0] if _is_key(e)] if items else []
                out.sequences[tag] = cls.parse(items[0], case_sensitive_pn=case_sensitive_pn) if useful else None
                continue
            out.keys[tag] = vr
            text = dataset_text(query, tag)
            if not text:
                continue
            sensitive = vr != "PN" or case_sensitive_pn
            constraint = TagConstraint.parse(
                elem.keyword or format_tag(tag), ResourceType.INSTANCE, text, vr=vr, case_sensitive=sensitive
            )
            if constraint is not None:
                out.constraints.append((tag, constraint))
        return out

    def constrains(self) -> bool:
        """Whether some key, here or in a key sequence, restricts the answers."""
        return bool(self.constraints) or any(m is not None and m.constrains() for m in self.sequences.values())

    def matches(self, item: Dataset) -> bool:
        for tag, constraint in self.constraints:
            if tag not in item:
                return False
            if not value_matches(constraint, dataset_text(item, tag)):
                return False
        for tag, matcher in self.sequences.items():
            if matcher is None or not matcher.constrains():
                continue
            children = item[tag].value if tag in item and item[tag].VR == "SQ" else None
            if not children or not any(matcher.matches(child) for child in children):
                return False
        return True

    def extract(self, item: Dataset) -> Dataset:
        """The answer: the requested keys, with the worklist's values (empty when it has none)."""
        out = Dataset()
        for tag, vr in self.keys.items():
            out[tag] = copy.deepcopy(item[tag]) if tag in item else DataElement(tag, vr, None)
        for tag, matcher in self.sequences.items():
            children = item[tag].value if tag in item and item[tag].VR == "SQ" else None
            answered: list[Dataset] = []
            for child in children or []:
                if matcher is None:
                    answered.append(copy.deepcopy(child))
                elif matcher.matches(child):
                    answered.append(matcher.extract(child))
            out[tag] = DataElement(tag, "SQ", Sequence(answered))
        return out


def value_matches(constraint: TagConstraint, text: str | None) -> bool:
    """A constraint against a worklist value: the whole value, or any one of several values."""
    if constraint.matches(text):
        return True
    return text is not None and "\\" in text and any(constraint.matches(v) for v in text.split("\\"))


def issuer_filter(matcher: Matcher, issuer: str) -> Matcher:
    """Orthanc's FilterIssuerAet: unless the query constrains ScheduledStationAETitle, its scheduled step
    constraints plus ScheduledStationAETitle = the calling AET, all on the same step; used to select worklists only
    (the answers hold what the query asked for)."""
    steps = matcher.sequences.get(SCHEDULED_PROCEDURE_STEP_SEQUENCE) or Matcher()
    station = TagConstraint.parse(
        "ScheduledStationAETitle", ResourceType.INSTANCE, issuer, vr="AE", case_sensitive=True
    )
    if station is None or any(tag == SCHEDULED_STATION_AE_TITLE for tag, _ in steps.constraints):
        return matcher  # the query names its station (or the caller has no AET): nothing to add
    filtered = Matcher([*steps.constraints, (SCHEDULED_STATION_AE_TITLE, station)], steps.keys, steps.sequences)
    return Matcher(
        matcher.constraints, matcher.keys, {**matcher.sequences, SCHEDULED_PROCEDURE_STEP_SEQUENCE: filtered}
    )


def answer(matcher: Matcher, item: Dataset) -> Dataset:
    """The answer for a matching worklist, in the worklist's character set."""
    out = matcher.extract(item)
    if SPECIFIC_CHARACTER_SET in item:
        out[SPECIFIC_CHARACTER_SET] = copy.deepcopy(item[SPECIFIC_CHARACTER_SET])
    return out
