"""Changing the transfer syntax of DICOM files: to send them to a peer, on ingest, on demand over REST.

Orthanc transcodes when a DICOM peer accepts none of a file's compressed syntax; so do the C-STORE SCU and the
C-MOVE / C-GET sub-operations of the DICOM server, through :func:`fit`, which only decompresses. :func:`transcode`
converts a whole file to any syntax an encoder exists for (``/modify`` with ``Transcode``, ``IngestTranscoding``,
``/file?transcode=``, peers): the uncompressed ones and deflate by pydicom itself, RLE, JPEG-LS and JPEG 2000 by
pydicom's encoders (pyjpegls, pylibjpeg-openjpeg), JPEG baseline by Pillow, JPEG lossless by GDCM. Decoding uses
pydicom's pixel data plugins; a syntax none of them decodes or encodes (12-bit JPEG extended, JPIP, MPEG...) is a
failure with a reason, never a file reaching a peer or the storage broken.

Lossless conversions keep every UID; a lossy one gets a new SOP Instance UID and the lossy compression attributes,
as Orthanc does.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.multival import MultiValue
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from ..config import Config, ConfigError
from ..errors import ErrorCode, OrthancError
from .imaging import open_dataset
from .network import UNCOMPRESSED
from .parse import bad_file

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger("isengard.transcode")

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


# -- transcoding a whole file ----------------------------------------------------------------------------------
#: Orthanc's default of DicomLossyTranscodingQuality (1-100), for JPEG; the other lossy encoders derive from it.
DEFAULT_QUALITY = 90
#: Targets pydicom writes by itself: the native pixel data only changes encoding (bytes swapped for big endian).
WRITTEN_AS_IS = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian}
)
#: Targets of pydicom's encoders (RLE natively, JPEG-LS through pyjpegls, JPEG 2000 through pylibjpeg-openjpeg).
PYDICOM_ENCODED = frozenset({RLELossless, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000})
#: Targets of GDCM's JPEG encoder (lossless process 14); JPEG baseline is Pillow's.
GDCM_ENCODED = {JPEGLossless: "JPEGLosslessProcess14", JPEGLosslessSV1: "JPEGLosslessProcess14_1"}
ENCODABLE = WRITTEN_AS_IS | PYDICOM_ENCODED | set(GDCM_ENCODED) | {JPEGBaseline8Bit}
#: The targets whose encoding loses information, with the method of LossyImageCompressionMethod (PS3.3 C.7.6.1.1.5).
LOSSY = {JPEGBaseline8Bit: "ISO_10918_1", JPEGLSNearLossless: "ISO_14495_1", JPEG2000: "ISO_15444_1"}


def parse_syntax(text: str) -> UID:
    """A transfer syntax a client named, checked against pydicom's dictionary as Orthanc checks against its own."""
    uid = UID(str(text).strip())
    if not uid.is_valid or not uid.is_transfer_syntax:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {text}")
    return uid


def cannot_transcode(target: str, reason: str = "") -> OrthancError:
    """Orthanc's answer when no codec makes the conversion: an internal error naming the target syntax."""
    details = f"Cannot transcode to transfer syntax: {target}"
    return OrthancError(ErrorCode.INTERNAL_ERROR, f"{details} ({reason})" if reason else details)


def transcode(data: bytes, target_syntax: str, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """The DICOM file ``data`` re-encoded in ``target_syntax``; the same bytes when it is already in it.

    Raises :class:`OrthancError`: ParameterOutOfRange for an unknown syntax, BadFileFormat for bytes that are
    not DICOM, InternalError "Cannot transcode..." where no codec decodes the source or encodes the target.
    ``quality`` (1-100, DicomLossyTranscodingQuality) drives the lossy targets only.
    """
    target = parse_syntax(target_syntax)
    ds = open_dataset(data)
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)")
    if ds.file_meta.TransferSyntaxUID == target:
        return data
    transcode_dataset(ds, target, quality=quality)
    try:
        return write(ds)
    except (ValueError, TypeError, AttributeError, OverflowError) as e:  # values pydicom cannot encode in target
        raise cannot_transcode(target, _first_line(e)) from None


def write(ds: Dataset) -> bytes:
    """The dataset as a DICOM file (preamble, meta header) in the syntax its meta header names.

    pydicom converts the header elements it has not parsed yet to the new encoding; binary values (OB/OW) it
    writes as they are, hence the pixel data swapped by :func:`transcode_dataset` beforehand.
    """
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)  # unlike save_as, converts between byte orders
    return out.getvalue()


def transcode_dataset(ds: Dataset, target: UID, *, quality: int = DEFAULT_QUALITY) -> Dataset:
    """Re-encode ``ds`` in place in ``target`` (see :func:`transcode`); returns it."""
    source = UID(ds.file_meta.TransferSyntaxUID)
    if source == target:
        return ds
    if target not in ENCODABLE:
        raise cannot_transcode(target, "no encoder for this syntax")
    if "PixelData" not in ds:
        if target.is_encapsulated and any(k in ds for k in _PIXEL_KEYWORDS):
            raise cannot_transcode(target, "float pixel data cannot be encapsulated")
        ds.file_meta.TransferSyntaxUID = target  # no pixels: only the encoding of the header changes
        return ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not source.is_little_endian:
            _swap_words(ds)  # big endian pixels as little endian words, which every encoder expects
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        elif source.is_compressed:
            try:
                ds.decompress(generate_instance_uid=False)
            except Exception as e:  # pydicom's plugins raise many types; all mean "not decodable here"
                raise cannot_transcode(target, f"cannot decode {source.name}: {_first_line(e)}") from None
        size = len(ds.PixelData)
        try:
            if target.is_encapsulated:
                _interleave(ds)
            _encode(ds, target, quality)
        except OrthancError:
            raise
        except Exception as e:  # encoders refuse what they do not handle (bit depth, photometric...) in many ways
            raise cannot_transcode(target, _first_line(e)) from None
    ds.file_meta.TransferSyntaxUID = target
    if target in LOSSY:
        _mark_lossy(ds, LOSSY[target], size / max(1, len(ds.PixelData)), quality)
    return ds


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(e).__name__


def _mark_lossy(ds: Dataset, method: str, ratio: float, quality: int) -> None:
    """A lossy image is a new image: a new SOP Instance UID, and the attributes that tell it (appended to)."""
    ratios, methods = _values(ds, "LossyImageCompressionRatio"), _values(ds, "LossyImageCompressionMethod")
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.4f}"[:16]]
    ds.LossyImageCompressionMethod = [*methods, method]
    ds.DerivationDescription = f"Lossy compression ({method}), quality {quality}, compression ratio {ratio:.4f}"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]


def _interleave(ds: Dataset) -> None:
    """Colour planes (PlanarConfiguration 1) as interleaved samples, the layout the encoders expect."""
    if ds.get("SamplesPerPixel", 1) > 1 and ds.get("PlanarConfiguration", 0) == 1:
        ds.PixelData = np.ascontiguousarray(ds.pixel_array).tobytes()
        ds.PlanarConfiguration = 0


def _encode(ds: Dataset, target: UID, quality: int) -> None:
    """Re-encode the native pixel data of ``ds`` for ``target`` (the meta header is the caller's)."""
    if target == ExplicitVRBigEndian:
        _swap_words(ds)
    elif target in WRITTEN_AS_IS:
        return
    elif target == JPEGBaseline8Bit:
        _jpeg_baseline(ds, quality)
    elif target in GDCM_ENCODED:
        _gdcm_jpeg_lossless(ds, target)
    elif target == JPEGLSNearLossless:
        ds.compress(target, generate_instance_uid=False, jls_error=max(1, round((100 - quality) / 5)))
    elif target == JPEG2000:
        ds.compress(target, generate_instance_uid=False, j2k_cr=[500 / max(1, min(quality, 100))])
    else:
        ds.compress(target, generate_instance_uid=False)


def _swap_words(ds: Dataset) -> None:
    """The words of native pixel data from one byte order to the other (pydicom writes OW bytes as they are)."""
    if ds.BitsAllocated > 8:
        ds.PixelData = np.frombuffer(ds.PixelData, dtype=f"u{ds.BitsAllocated // 8}").byteswap().tobytes()


def _jpeg_baseline(ds: Dataset, quality: int) -> None:
    """JPEG baseline by Pillow, frame by frame: 8-bit unsigned grey, or RGB stored as YCbCr 4:2:2 (YBR_FULL_422)."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    grey = photometric in ("MONOCHROME1", "MONOCHROME2")
    if ds.get("BitsAllocated") != 8 or ds.get("PixelRepresentation", 0) != 0 or not (grey or photometric == "RGB"):
        raise cannot_transcode(JPEGBaseline8Bit, "JPEG baseline takes 8-bit unsigned grey or RGB images only")
    frames = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        frames = frames[np.newaxis]
    encoded = []
    for frame in frames:
        out = io.BytesIO()
        if grey:
            Image.fromarray(frame, "L").save(out, format="JPEG", quality=quality)
        else:
            Image.fromarray(frame, "RGB").save(out, format="JPEG", quality=quality, subsampling="4:2:2")
        encoded.append(out.getvalue())
    _set_encapsulated(ds, encapsulate(encoded))
    if not grey:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0


def _gdcm_jpeg_lossless(ds: Dataset, target: UID) -> None:
    """JPEG lossless (process 14) by GDCM, which works on files: the dataset goes through a scratch folder."""
    import gdcm  # the JPEG lossless encoder only: imported when needed

    # GDCM aborts the whole process on headers it deems impossible: only give it what pydicom decoded and knows.
    ds.pixel_array  # noqa: B018  (decodes, so raises on pixel data that does not match its header)
    if ds.SamplesPerPixel not in (1, 3) or ds.BitsAllocated not in (8, 16) or ds.BitsStored > ds.BitsAllocated:
        raise cannot_transcode(target, "JPEG lossless takes 8- or 16-bit images of 1 or 3 samples")
    with tempfile.TemporaryDirectory(prefix="isengard-transcode-") as scratch:
        source, result = os.path.join(scratch, "in.dcm"), os.path.join(scratch, "out.dcm")
        native = ds.copy()
        native.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        with open(source, "wb") as f:
            f.write(write(native))
        reader = gdcm.ImageReader()
        reader.SetFileName(source)
        if not reader.Read():
            raise cannot_transcode(target, "GDCM cannot read the image")
        syntax = gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, GDCM_ENCODED[target]))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(syntax)
        codec = gdcm.JPEGCodec()
        codec.SetLossless(True)
        change.SetUserCodec(codec)
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise cannot_transcode(target, "GDCM cannot encode this image")
        # The plain writer: GDCM's image writer also checks the IOD, and refuses valid images it does not know.
        file = reader.GetFile()
        file.GetDataSet().Replace(change.GetOutput().GetDataElement())
        file.GetHeader().SetDataSetTransferSyntax(syntax)
        writer = gdcm.Writer()
        writer.SetFile(file)
        writer.SetFileName(result)
        if not writer.Write():
            raise cannot_transcode(target, "GDCM cannot write the image")
        encoded = pydicom.dcmread(result)
    _set_encapsulated(ds, encoded.PixelData)


def _set_encapsulated(ds: Dataset, value: bytes) -> None:
    ds.PixelData = value
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


# -- transcoding on ingest -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestTranscoding:
    """The IngestTranscoding options: every incoming file converted to one syntax before it is stored."""

    target: UID | None
    quality: int = DEFAULT_QUALITY
    of_uncompressed: bool = True
    of_compressed: bool = True

    @classmethod
    def from_config(cls, config: Config) -> IngestTranscoding:
        """Read the options; an unknown syntax stops the start-up, as it stops Orthanc's."""
        text = config.str("IngestTranscoding").strip()
        try:
            target = parse_syntax(text) if text else None
        except OrthancError:
            raise ConfigError(f"Unknown transfer syntax for ingest transcoding: {text}") from None
        return cls(
            target,
            lossy_quality(config),
            config.bool("IngestTranscodingOfUncompressed"),
            config.bool("IngestTranscodingOfCompressed"),
        )

    def apply(self, data: bytes) -> bytes:
        """The file to store: transcoded when the options ask for it, else (or when that fails) as received.

        Like Orthanc, a file that cannot be transcoded is stored as it came rather than refused; uncompressed
        means the three native syntaxes (deflate counts as compressed). A lossy target gives a new SOP Instance
        UID, hence a new instance.
        """
        if self.target is None:
            return data
        try:
            ds = open_dataset(data)
            source = UID(ds.file_meta.TransferSyntaxUID)
            native = source in UNCOMPRESSED
            if source == self.target or not (self.of_uncompressed if native else self.of_compressed):
                return data
            return write(transcode_dataset(ds, self.target, quality=self.quality))
        except OrthancError as e:
            log.warning("ingest transcoding to %s failed, storing the file as received: %s", self.target, e)
            return data


def lossy_quality(config: Config) -> int:
    """DicomLossyTranscodingQuality, checked: Orthanc takes 1 to 100."""
    quality = config.int("DicomLossyTranscodingQuality")
    if not 1 <= quality <= 100:
        raise ConfigError(f"DicomLossyTranscodingQuality must be between 1 and 100, not {quality}")
    return quality


def quality_of(value: object, default: int) -> int:
    """A lossy quality a client gave (``LossyQuality`` in a body, ``?lossy-quality=``): 1-100, else the default."""
    if value is None or value == "":
        return default
    try:
        quality = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        quality = -1
    if not 1 <= quality <= 100:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"The lossy quality must be between 1 and 100: {value}")
    return quality
