"""Sending a file to a peer that does not take its transfer syntax: decompressed to explicit VR little endian.

Orthanc transcodes when the peer accepts none of a file's compressed syntax; so do the C-STORE SCU and the
C-MOVE / C-GET sub-operations of the DICOM server, through :func:`fit`. Decoding uses pydicom's pixel data
plugins (pylibjpeg: JPEG, JPEG-LS, JPEG 2000, RLE); a syntax none of them decodes (12-bit JPEG extended, JPIP,
MPEG...) raises :class:`CodecMissing`, so the instance fails with a reason instead of reaching the peer broken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

if TYPE_CHECKING:
    from pynetdicom.association import Association

#: The elements that hold encapsulated pixels; without any of them a file decompresses by relabelling.
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class CodecMissing(Exception):
    """No installed decoder handles the file's transfer syntax, and the peer takes no other: it cannot be sent."""


def accepted_syntaxes(assoc: Association, sop_class: str) -> list[UID]:
    """The transfer syntaxes the peer accepted for this SOP class, on contexts where this side sends (SCU role)."""
    return [
        UID(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class and cx.as_scu and cx.transfer_syntax
    ]


def fit(assoc: Association, ds: Dataset) -> Dataset:
    """The dataset ready to C-STORE on this association: as it is, or decompressed in place (same UIDs).

    As it is when a context takes its syntax, or when it is uncompressed (pynetdicom converts between uncompressed
    little endian syntaxes itself), or when nothing uncompressed was accepted either (pynetdicom then refuses it,
    naming the missing context). Decompressing keeps the SOP Instance UID, lossy or not, as Orthanc does.
    """
    syntax = UID(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    accepted = accepted_syntaxes(assoc, str(ds.get("SOPClassUID", "")))
    if syntax in accepted or not syntax.is_compressed:
        return ds
    if not any(not s.is_compressed and s.is_little_endian for s in accepted):
        return ds
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return ds
    try:
        ds.decompress(generate_instance_uid=False)
    except (RuntimeError, NotImplementedError, ValueError) as e:
        reason = str(e).strip().splitlines()
        raise CodecMissing(
            f"cannot decompress {syntax.name} ({syntax}), which the peer does not accept: "
            + (" ".join(line.strip() for line in reason) if reason else type(e).__name__)
        ) from None
    return ds
