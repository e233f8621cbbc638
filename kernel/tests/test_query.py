"""The DICOM matching rules of isengard.query, as Orthanc applies them (checked against Orthanc 1.10 answers)."""

from __future__ import annotations

import pytest

from isengard.errors import ErrorCode, OrthancError
from isengard.model import ResourceType
from isengard.query import ConstraintKind, TagConstraint, normalize, range_matches, wildcard_regex

STUDY = ResourceType.STUDY


def parse(value: str, vr: str = "LO", *, sensitive: bool = True, universal_star: bool = False) -> TagConstraint | None:
    return TagConstraint.parse(
        "StudyDescription", STUDY, value, vr=vr, case_sensitive=sensitive, universal_star=universal_star
    )


def test_an_empty_value_constrains_nothing():
    assert parse("") is None
    assert parse("", "DA") is None


def test_a_lone_star_is_universal_only_when_asked():
    assert parse("*", universal_star=True) is None
    star = parse("*")
    assert star is not None and star.kind is ConstraintKind.WILDCARD
    assert star.matches("") and star.matches("anything")
    assert not star.matches(None)  # the tag must be there


@pytest.mark.parametrize(
    ("value", "vr", "kind", "values"),
    [
        ("KNIX", "PN", ConstraintKind.EQUAL, ("KNIX",)),
        ("KN*", "PN", ConstraintKind.WILDCARD, ("KN*",)),
        ("K?IX", "CS", ConstraintKind.WILDCARD, ("K?IX",)),
        ("A\\B", "CS", ConstraintKind.LIST, ("A", "B")),
        ("A*\\B", "CS", ConstraintKind.LIST, ("A*", "B")),
        ("20040101-20041231", "DA", ConstraintKind.RANGE, ("20040101", "20041231")),
        ("-2004", "DA", ConstraintKind.RANGE, ("", "2004")),
        ("2004-", "DA", ConstraintKind.RANGE, ("2004", "")),
        ("2004-\\2006", "DA", ConstraintKind.RANGE, ("2004", "\\2006")),  # the range wins, as in Orthanc
        ("12-13", "TM", ConstraintKind.RANGE, ("12", "13")),
        ("A-B", "LO", ConstraintKind.EQUAL, ("A-B",)),  # no ranges outside dates and times
        (" KNIX ", "PN", ConstraintKind.EQUAL, (" KNIX ",)),  # values are not trimmed
    ],
)
def test_query_values_are_read_as_dicom_defines_them(value, vr, kind, values):
    constraint = parse(value, vr)
    assert constraint is not None
    assert (constraint.kind, constraint.values) == (kind, values)


@pytest.mark.parametrize("vr", ["DA", "TM", "DT", "UI", "IS", "DS", "US"])
def test_wildcards_are_refused_outside_textual_vrs(vr):
    with pytest.raises(OrthancError) as e:
        parse("1*", vr)
    assert e.value.code is ErrorCode.PARAMETER_OUT_OF_RANGE
    assert e.value.details == "Wildcards are not allowed on tag 0008,1030"


@pytest.mark.parametrize("vr", ["AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"])
def test_wildcards_are_accepted_on_textual_vrs(vr):
    constraint = parse("a*", vr)
    assert constraint is not None and constraint.kind is ConstraintKind.WILDCARD


def test_list_items_are_exact_values():
    constraint = parse("KNI*\\BRAINIX", "PN")
    assert constraint is not None
    assert constraint.matches("BRAINIX") and constraint.matches("KNI*")
    assert not constraint.matches("KNIX")


def test_wildcards_match_whole_values_and_nothing_else_is_special():
    constraint = parse("a.c*[x]?", "LO")
    assert constraint is not None
    assert constraint.matches("a.cZZZ[x]!")
    assert not constraint.matches("abcZZZ[x]!")  # "." is literal
    assert not constraint.matches("a.c[x]")  # "?" needs one character
    assert wildcard_regex("?").fullmatch("\n") is not None
    assert wildcard_regex("Test-?").fullmatch("Test-ص") is not None  # one character, not one byte


@pytest.mark.parametrize(
    ("low", "high", "value", "expected"),
    [
        ("20040101", "20061231", "20061201", True),
        ("20040101", "20061231", "20070101", False),
        ("", "20000329", "", True),  # an empty value is below every upper bound
        ("2000", "", "", False),
        ("", "2000", "1994.06.13", True),  # plain string comparison, whatever the format
        ("", "2000", "20000329", False),  # ... so a longer value is above a shorter bound
        ("2000", "", "20000329", True),
        ("12", "13", "120000.000000", True),
        ("", "120000", "120000.000000", False),
        ("", "", "anything", True),
    ],
)
def test_ranges_compare_strings(low, high, value, expected):
    assert range_matches(low, high, value) is expected
    constraint = TagConstraint("StudyDate", STUDY, ConstraintKind.RANGE, (low, high))
    assert constraint.matches(value) is expected


def test_a_missing_tag_never_matches():
    for value in ("KNIX", "K*", "A\\B"):
        constraint = parse(value, "PN")
        assert constraint is not None and not constraint.matches(None)
    assert not TagConstraint("StudyDate", STUDY, ConstraintKind.RANGE, ("", "2000")).matches(None)


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("knix", "KNIX"),
        ("buc^jérôme", "Buc^Jérôme"),
        ("TEST-ÉÜÄÖ", "Test-éüäö"),
        ("ΔΙΟΝΥΣΙΟΣ", "Διονυσιος"),  # final sigma folds to sigma
        ("люкceмбypг", "Люкceмбypг"),  # noqa: RUF001 - the sample mixes Cyrillic and Latin letters
        ("HONG^GILDONG=洪^吉洞=홍^길동", "Hong^Gildong=洪^吉洞=홍^길동"),
    ],
)
def test_case_insensitive_matching_folds_every_alphabet(query, value):
    insensitive = parse(query, "PN", sensitive=False)
    sensitive = parse(query, "PN", sensitive=True)
    assert insensitive is not None and insensitive.matches(value)
    assert sensitive is not None and not sensitive.matches(value)
    wildcard = parse(query[:-1] + "*", "PN", sensitive=False)
    assert wildcard is not None and wildcard.matches(value)


@pytest.mark.parametrize(
    ("query", "value"), [("BUC^JEROME", "Buc^Jérôme"), ("TEST-EUAO", "Test-éüäö"), ("ANEAS*", "Äneas")]
)
def test_case_insensitive_matching_keeps_accents(query, value):
    constraint = parse(query, "PN", sensitive=False)
    assert constraint is not None and not constraint.matches(value)


def test_normalize_is_what_backends_index():
    assert normalize("Buc^Jérôme") == "BUC^JÉRÔME"
    assert normalize("ΔιονυσιοΣ") == normalize("διονυσιος")
    constraint = parse("a\\B", "CS", sensitive=False)
    assert constraint is not None and constraint.compared() == ("A", "B")
    ranged = TagConstraint("StudyDate", STUDY, ConstraintKind.RANGE, ("a", "b"), case_sensitive=False)
    assert ranged.compared() == ("a", "b")  # ranges are never folded
