"""Where a frame of native (uncompressed) pixel data lies in a file, found from the bytes before the pixels.

A viewer asks the frames of a series one request each: parsing the whole file with pydicom for each (0.4 ms for a
CT slice, 0.2 of them for the header alone) and reading every frame of it to answer one was most of the work. The
layout needs five small elements of the header; they are found by walking the elements' headers, skipping the
values (sequences included), and the pixel data element itself is read in place.

The walk answers only what :func:`isengard.dicom.imaging.raw_frame` would answer for the same file: anything it
does not expect (a file without "DICM" or without a transfer syntax, another syntax than the three native ones,
an unknown VR, an element of undefined length that is no sequence, a walk that does not land on the pixel data at
the offset the index recorded, elements after the pixel data, a frame past its end) gives ``None``, and the
caller then reads and parses the whole file as before, errors included.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .parse import PIXEL_DATA

#: Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 7.1.2); the others take 2.
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL"}
    | {b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS = 0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100
_WANTED = frozenset({_SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS})
#: The native syntaxes: (implicit VR, byte order); frames stored big endian are answered with their samples swapped.
_NATIVE = {ImplicitVRLittleEndian: (True, "<"), ExplicitVRLittleEndian: (False, "<"), ExplicitVRBigEndian: (False, ">")}


class _Unexpected(Exception):
    """Something the walk does not handle: the caller falls back to pydicom."""


@dataclass(frozen=True)
class FrameSpan:
    """Frame bytes ``[start, end)`` of the file; ``swap``: the bits of samples stored big endian (else 0)."""

    start: int
    end: int
    swap: int


class _Walker:
    """Element headers in one encoding; reading past the bytes raises struct.error (the caller's fallback)."""

    def __init__(self, data: bytes, implicit: bool, order: str) -> None:
        self.data, self.implicit = data, implicit
        self.implicit_head = struct.Struct(order + "HHI")  # also the head of items and delimiters
        self.explicit_head = struct.Struct(order + "HH2sH")
        self.long_length = struct.Struct(order + "I")

    def element(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, where the value starts) of the element at ``pos``."""
        if self.implicit:
            group, element, length = self.implicit_head.unpack_from(self.data, pos)
            return group << 16 | element, None, length, pos + 8
        group, element, vr, length = self.explicit_head.unpack_from(self.data, pos)
        if vr in _LONG_VRS:
            return group << 16 | element, vr, self.long_length.unpack_from(self.data, pos + 8)[0], pos + 12
        if vr not in _SHORT_VRS:
            raise _Unexpected
        return group << 16 | element, vr, length, pos + 8

    def end(self, vr: bytes | None, length: int, value: int) -> int:
        """Where an element ends, a sequence of undefined length included."""
        if length != _UNDEFINED:
            return value + length
        if vr is None or vr == b"SQ":  # implicit VR: only a sequence has an undefined length outside pixel data
            return self._past_items(value)
        raise _Unexpected

    def _past_items(self, pos: int) -> int:
        """Past the items of a sequence of undefined length starting at ``pos``, and its delimiter."""
        while True:
            group, element, length = self.implicit_head.unpack_from(self.data, pos)
            tag, pos = group << 16 | element, pos + 8
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise _Unexpected
            pos = self._past_item(pos) if length == _UNDEFINED else pos + length

    def _past_item(self, pos: int) -> int:
        """Past the elements of an item of undefined length, and its delimiter."""
        while True:
            group, element, _ = self.implicit_head.unpack_from(self.data, pos)  # a delimiter has no VR
            if group << 16 | element == _ITEM_END:
                return pos + 8
            pos = self.end(*self.element(pos)[1:])


def _meta_syntax(data: bytes) -> tuple[str, int]:
    """The transfer syntax of the file meta information (explicit VR little endian) and where the dataset starts."""
    if data[128:132] != b"DICM":
        raise _Unexpected
    walker, pos, syntax = _Walker(data, False, "<"), 132, None
    while data[pos : pos + 2] == b"\x02\x00":
        tag, _, length, value = walker.element(pos)
        if length == _UNDEFINED:
            raise _Unexpected
        if tag == 0x00020010:
            syntax = data[value : value + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = value + length
    if syntax is None:
        raise _Unexpected
    return syntax, pos


def _number(raw: bytes, vr: bytes | None, order: str) -> int:
    """An US value (Rows, BitsAllocated...) as pydicom reads it; anything else is unexpected."""
    if vr not in (None, b"US") or len(raw) != 2:
        raise _Unexpected
    return struct.unpack(order + "H", raw)[0]


def _frame_count(raw: bytes | None) -> int:
    """NumberOfFrames as imaging.frame_count reads it (absent, empty or zero: one frame)."""
    if raw is None:
        return 1
    text = raw.strip(b"\0 ")
    if not text:
        return 1
    if not text.isdigit():  # a sign, several values: let pydicom say
        raise _Unexpected
    return int(text) or 1


def native_frame_span(head: bytes, offset: int, file_size: int, index: int) -> FrameSpan | None:
    """Where frame ``index`` (0-based) lies in a file of ``file_size`` bytes whose pixel data element starts at
    ``offset``; ``head`` holds the file's first bytes, at least to ``offset + 12``. ``None``: read the whole file."""
    try:
        syntax, pos = _meta_syntax(head)
        if syntax not in _NATIVE:
            return None
        implicit, order = _NATIVE[syntax]
        if implicit and head[pos + 4 : pos + 6] in _LONG_VRS | _SHORT_VRS:
            return None  # pydicom reads such a file as explicit VR, whatever its meta information says
        walker = _Walker(head, implicit, order)
        values: dict[int, tuple[bytes, bytes | None]] = {}
        while pos < offset:
            tag, vr, length, value = walker.element(pos)
            if tag in _WANTED and length != _UNDEFINED:
                values[tag] = (head[value : value + length], vr)
            pos = walker.end(vr, length, value)
        tag, vr, length, start = walker.element(pos)
        if pos != offset or tag != PIXEL_DATA or length == _UNDEFINED or start + length != file_size:
            return None
        if not implicit and vr not in (b"OB", b"OW"):
            return None
        bits = _number(*values[_BITS], order)
        samples = _number(*values[_SAMPLES], order) if _SAMPLES in values else 1
        rows, columns = _number(*values[_ROWS], order), _number(*values[_COLUMNS], order)
        if _FRAMES in values and values[_FRAMES][1] not in (None, b"IS"):
            return None
        count = _frame_count(values[_FRAMES][0]) if _FRAMES in values else 1
    except (_Unexpected, KeyError, struct.error):
        return None
    size = (rows * columns * (samples or 1) * bits + 7) // 8
    if index >= count or (index + 1) * size > length:
        return None
    swap = bits if order == ">" and bits in (16, 32) else 0
    return FrameSpan(start + index * size, start + (index + 1) * size, swap)
