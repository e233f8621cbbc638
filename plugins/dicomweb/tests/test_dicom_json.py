"""The fast path of dataset_json (values straight from the bytes pydicom read) against pydicom's own conversion
of every element: the same DICOM JSON, to the byte, for every sample file and for values chosen to be awkward."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from isengard.dicom.parse import read_header
from isengard.testing import sample
from isengard_dicomweb.dicom_json import dataset_json

SAMPLES = sample()


def _is_dicom(path: Path) -> bool:
    """A DICOM file: "DICM" after the preamble, or one of the samples written without it (a .dcm of the transfer
    syntaxes set); the samples' JSON, dumps, pictures and TIFFs are left out at collection, not skipped."""
    with path.open("rb") as f:
        return f.read(132)[128:] == b"DICM" or path.suffix == ".dcm"


FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and _is_dicom(p))


def bulk(path: str) -> str:
    return f"http://example.org/bulk/{path}"


def both(parse: Any, **kwargs: Any) -> tuple[str, str]:
    """The JSON text of the fast path and of pydicom's path, each on a dataset parsed afresh (pydicom's path
    replaces the raw elements it converts)."""
    fast = dataset_json(parse(), **kwargs)
    slow = dataset_json(parse(), fast=False, **kwargs)
    return json.dumps(fast, ensure_ascii=False), json.dumps(slow, ensure_ascii=False)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SAMPLES)) for p in FILES])
def test_fast_path_equals_pydicom_on_sample_file(path: Path) -> None:
    data = path.read_bytes()
    ds, _ = read_header(data)
    some = {int(tag) for tag in list(ds.keys())[::3]}
    for kwargs in ({"bulk_uri": bulk}, {}, {"bulk_uri": bulk, "only": some}):
        fast, slow = both(lambda: read_header(data)[0], **kwargs)
        assert fast == slow, kwargs


# -- awkward values, in every encoding ---------------------------------------------------------------------------

#: (VR, encoded value): padding, empty values among several, person name groups, numbers pydicom reads its own
#: way, bytes invalid in the character set, an escape sequence, lengths that do not fit the VR.
VALUES: list[tuple[str, bytes]] = [
    *(("LO", v) for v in (b"ABC  ", b"A\\B \\ ", b"\\", b" ", b"A\0", b"caf\xe9", b"caf\xc3\xa9", b"\x1b$BF|")),
    *(("SH", v) for v in (b" lead", b"x\\\\y")),
    *(("LT", v) for v in (b"a\\b  ", b"line\r\nnext\0", b"caf\xc3\xa9 ")),
    ("ST", b"  "),
    ("UT", b"a\\b\\"),
    ("UC", b"A\\B"),
    *(("CS", v) for v in (b"A \\ B ", b"ORIGINAL\\PRIMARY\\\\", b"\\", b" X")),
    *(("DA", v) for v in (b"20200101", b"20200101\\ ")),
    ("TM", b"101010.5 "),
    ("DT", b"20200101101010\\"),
    ("AS", b"030Y"),
    *(("PN", v) for v in (b"Doe^John=Ideo=Phon", b"A^B\\C^D ", b"=X", b"A==P ", b"  ", b"Ren\xc3\xa9e", b"A=B=C=D")),
    *(("IS", v) for v in (b" 12\\-3 ", b"1.0", b"12\\", b"  ", b"+007", b"1\0")),
    *(("DS", v) for v in (b"1.5\\ -2e3 ", b"nan", b"1\\\\2", b".5 ", b"1.50000", b"5.\0")),
    *(("UI", v) for v in (b"1.2.3\0", b"1.2\\3.4 ", b" 1.2")),
    ("AE", b" AET \\ X"),
    ("UR", b"http://x/y  "),
    *(("US", v) for v in (b"\x01\x00\x02\x00", b"\x01")),
    ("SS", b"\xff\xff"),
    ("UL", b"\x01\x00\x00\x00"),
    ("SL", b"\xfe\xff\xff\xff\x01\x00\x00\x00"),
    ("FL", b"\x00\x00\xc0\x3f"),
    ("FD", b"\x00\x00\x00\x00\x00\x00\xf8\x3f"),
    ("UV", b"\x01" * 8),
    ("SV", b"\xff" * 8),
    *(("AT", v) for v in (b"\x10\x00\x10\x00", b"\x10\x00\x10\x00\x08\x00\x20\x00", b"\x10\x00\x10\x00\x08\x00")),
    *(("OB", v) for v in (b"\x01\x02", b"")),
    ("OW", b"\x01\x02\x03\x04"),
    ("OF", b"\x00\x00\x80\x3f"),
]
LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
CHARACTER_SETS = [None, b"ISO_IR 100", b"ISO_IR 192", b"\\ISO 2022 IR 87"]


def tags_by_vr() -> dict[str, list[int]]:
    """Public tags of each VR (the dictionary's, as an implicit VR file needs), to hold the values above."""
    found: dict[str, list[int]] = {}
    for tag, entry in sorted(DicomDictionary.items()):
        if 0x0020 <= tag >> 16 < 0x7FE0 and tag & 0xFFFF and not entry[3]:  # clear of the fixed tags, not retired
            found.setdefault(entry[0], []).append(tag)
    return found


def encode(elements: list[tuple[int, str, bytes]], implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    out = b""
    for tag, vr, value in sorted(elements, key=lambda e: e[0]):
        head = struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF)
        if implicit:
            out += head + struct.pack(f"{order}L", len(value))
        elif vr in LONG_LENGTH_VRS:
            out += head + vr.encode() + b"\0\0" + struct.pack(f"{order}L", len(value))
        else:
            out += head + vr.encode() + struct.pack(f"{order}H", len(value))
        out += value
    return out


def awkward(implicit: bool, little: bool, charset: bytes | None) -> list[tuple[int, str, bytes]]:
    tags = tags_by_vr()
    used = {vr: 0 for vr in tags}
    elements = []
    for vr, value in VALUES:
        elements.append((tags[vr][used[vr]], vr, value))
        used[vr] += 1
    if charset is not None:
        elements.append((0x00080005, "CS", charset))
    elements += [
        (0x00283002, "US", b"\x00\x00\x00\x08\x10\x00"),  # LUT Descriptor: pydicom adjusts the first value
        (0x00100010, "UN", b"Doe^Jane"),  # a public tag sent as UN: pydicom reads it as its VR
        (0x00090010, "LO", b"CREATOR"),
        (0x00091010, "LO", b"private\\value "),
        (0x00091011, "UN", b"\x01\x02"),
        (0x00091012, "DS", b"1.5"),
    ]
    item = encode([(0x00081150, "UI", b"1.2.3\0"), (0x00100010, "PN", b"Item^Name=Ideo")], implicit, little)
    item_head = struct.pack(f"{'<' if little else '>'}HHL", 0xFFFE, 0xE000, len(item))
    elements.append((0x00081115, "SQ", item_head + item + item_head + item))  # ReferencedSeriesSequence, 2 items
    return elements


@pytest.mark.parametrize("charset", CHARACTER_SETS, ids=lambda c: (c or b"default").decode())
@pytest.mark.parametrize(
    ("implicit", "little"), [(False, True), (False, False), (True, True)], ids=["explicit", "big", "implicit"]
)
def test_fast_path_equals_pydicom_on_awkward_values(implicit: bool, little: bool, charset: bytes | None) -> None:
    data = encode(awkward(implicit, little, charset), implicit, little)

    def parse() -> Dataset:
        return read_dataset(io.BytesIO(data), implicit, little, len(data))

    for kwargs in ({"bulk_uri": bulk}, {}, {"only": {0x00100010, 0x00283002, 0x00091010}}):
        fast, slow = both(parse, **kwargs)
        assert fast == slow, kwargs

    # the fast path did read the plain values itself, except under ISO 2022 (left to pydicom as a whole)
    ds = parse()
    dataset_json(ds, bulk)
    plain = tags_by_vr()["LO"][0]  # b"ABC  "
    assert isinstance(ds._dict[plain], RawDataElement) == (charset != CHARACTER_SETS[-1])
