"""C-FIND queries as the tables Orthanc's Lua filters read and return (Orthanc Book, users/lua.rst).

``IncomingFindRequestFilter(query, origin)`` and ``OutgoingFindRequestFilter(query, modality)`` see a flat table
of the query's elements named "gggg,eeee" with text values (binary ones empty), as Orthanc builds it from a
``DicomMap``: sequences are not shown and stay as they are. ``IncomingWorklistRequestFilter(query, origin)``
sees Orthanc's "Short" JSON of the whole query, sequences included (the Book's sample reads
``query['0040,0100'][1]['0040,0001']``), and its answer is the whole new query. Names may be keywords too.
"""

from __future__ import annotations

import copy
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from isengard.dicom.create import CreationRequest, new_element, resolve_tag
from isengard.dicom.json import JsonFormat, dataset_to_json
from isengard.dicom.parse import BINARY_VRS
from isengard.dicom.tags import format_tag, parse_tag

_SPECIFIC_CHARACTER_SET = 0x00080005


def query_table(query: Dataset, *, worklist: bool = False) -> dict[str, Any]:
    if worklist:
        return dataset_to_json(query, JsonFormat.SHORT)
    table: dict[str, Any] = {}
    for elem in query:
        if elem.VR == "SQ":
            continue
        value = elem.value
        if value is None or elem.VR in BINARY_VRS:
            text = ""
        elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        elif isinstance(value, bytes):
            text = value.decode("latin-1")
        else:
            text = str(value)
        table[format_tag(int(elem.tag))] = text
    return table


def apply_table(query: Dataset, before: dict[str, Any], after: Any, *, worklist: bool = False) -> Dataset | None:
    """The query the script asked for, or ``None`` when it returned nothing usable or changed nothing."""
    if not isinstance(after, dict):
        return None
    after = _texts(after)
    if after == before:
        return None
    if worklist:
        return _rebuilt(query, after)
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


def _texts(value: Any) -> Any:
    """The script's values as JSON text: numbers it wrote become strings, tables stay tables. An empty table in
    a list is an empty sequence item (Lua cannot tell {} from [], and an item is never a list)."""
    if isinstance(value, dict):
        return {str(k): _texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [{} if v == [] else _texts(v) for v in value]
    return "" if value is None else value if isinstance(value, str) else str(value)


def _rebuilt(query: Dataset, table: dict[str, Any]) -> Dataset:
    """A whole query from a Short JSON table, in the character set of the query it replaces."""
    ds = Dataset()
    if _SPECIFIC_CHARACTER_SET in query:
        ds[_SPECIFIC_CHARACTER_SET] = copy.deepcopy(query[_SPECIFIC_CHARACTER_SET])
    request = CreationRequest({}, "", interpret_binary=False)
    for name, value in table.items():
        tag = resolve_tag(name)
        if tag != _SPECIFIC_CHARACTER_SET:
            ds[tag] = new_element(tag, value, request)
    return ds
