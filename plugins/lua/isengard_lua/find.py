"""C-FIND queries as the tables Orthanc's ``IncomingFindRequestFilter(query, origin)`` reads and returns.

A query is shown as a flat table of its elements, named by keyword ("PatientName") or, without one, as
"gggg,eeee" (Orthanc Book, users/lua.rst: the sample removes ``query['5555,0010']``). Sequences are not shown
and are kept as they are. The table the script returns is applied to a copy of the query: missing names are
removed, new or changed values written.
"""

from __future__ import annotations

import copy
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from isengard.dicom.tags import format_tag, parse_tag


def _name(tag: int, keyword: str) -> str:
    return keyword or format_tag(tag)


def query_table(query: Dataset) -> dict[str, str]:
    table: dict[str, str] = {}
    for elem in query:
        if elem.VR == "SQ":
            continue
        value = elem.value
        if value is None:
            text = ""
        elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        elif isinstance(value, bytes):
            text = value.decode("latin-1")
        else:
            text = str(value)
        table[_name(int(elem.tag), elem.keyword)] = text
    return table


def apply_table(query: Dataset, before: dict[str, str], after: Any) -> Dataset | None:
    """The query the script asked for, or ``None`` when it returned nothing usable or changed nothing."""
    if not isinstance(after, dict):
        return None
    after = {str(k): "" if v is None else str(v) for k, v in after.items()}
    if after == before:
        return None
    patched = copy.deepcopy(query)
    for name in before.keys() - after.keys():
        del patched[parse_tag(name)]
    for name, value in after.items():
        if before.get(name) == value:
            continue
        tag = parse_tag(name)
        if tag in patched:
            patched[tag].value = value
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "LO"  # a private or unknown element: text is all a query can carry
            patched.add_new(tag, vr, value)
    return patched
