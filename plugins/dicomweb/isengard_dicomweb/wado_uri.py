"""WADO-URI (PS3.18 9, formerly "WADO"): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=&contentType=``.

``contentType`` is image/jpeg by default (PS3.18 9.1.2.1.5), image/png, or application/dicom for the file itself
(in ``transferSyntax`` when given, as stored otherwise). Pictures are the kernel's rendering with ``frameNumber``
(from 1), ``rows``/``columns``, ``windowCenter``/``windowWidth`` and ``imageQuality``. The UIDs given must all
match: an objectUID of another study than studyUID is a 404.
"""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, request

from isengard.dicom.imaging import Extraction, ImageFormat, Rendering, render
from isengard.dicom.transcode import lossy_quality, parse_syntax, transcode
from isengard.errors import ErrorCode, OrthancError
from isengard.rest.common import context

from .resources import resolve

bp = Blueprint("dicomweb_wado_uri", __name__)

_PICTURES = {"image/jpeg": ImageFormat.JPEG, "image/png": ImageFormat.PNG}


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def _number(name: str, default: float | None = None) -> float | None:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise _bad(f"WADO-URI parameter {name!r} must be a number, not {raw!r}") from None


@bp.get("")
async def wado() -> Response:
    """WADO-URI: an instance as a picture or a DICOM file, named by its UIDs."""
    ctx = context()
    args = request.args
    if args.get("requestType") != "WADO":
        raise _bad("WADO-URI expects requestType=WADO")
    if not args.get("objectUID"):
        raise _bad("WADO-URI expects an objectUID")
    kind = (args.get("contentType") or "image/jpeg").split(";")[0].strip().lower()
    if kind != "application/dicom" and kind not in _PICTURES:
        raise _bad(f"WADO-URI cannot answer contentType {kind}")
    _, resources = await resolve(ctx, args.get("studyUID"), args.get("seriesUID"), args.get("objectUID"))
    data = await ctx.store.read_dicom(resources[0].public_id)
    if kind == "application/dicom":
        if args.get("transferSyntax"):
            syntax = parse_syntax(args["transferSyntax"])
            data = await asyncio.to_thread(transcode, data, syntax, quality=lossy_quality(ctx.config))
        return Response(data, content_type="application/dicom")
    frame = int(_number("frameNumber", 1) or 1)
    if frame < 1:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Frame numbers start at 1: {frame}")
    quality = int(_number("imageQuality", 90) or 90)
    if not 1 <= quality <= 100:
        raise _bad(f"Bad imageQuality (1-100): {quality}")
    rendering = Rendering(
        window_center=_number("windowCenter"),
        window_width=_number("windowWidth"),
        width=int(_number("columns", 0) or 0),
        height=int(_number("rows", 0) or 0),
    )
    fmt = _PICTURES[kind]
    body = await asyncio.to_thread(render, data, frame - 1, Extraction.RENDERED, rendering, fmt, quality)
    return Response(body, content_type=fmt.value)
