"""Pictures of an instance's frames: /frames, /preview, /image-uint8|uint16|int16, /rendered, /raw, /numpy, /matlab.

Decoding runs in a worker thread; only the requested frame is decoded. The picture format follows the Accept
header the way Orthanc negotiates it (see ``negotiate``).
"""

from __future__ import annotations

import asyncio
import math

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.imaging import (
    Extraction,
    ImageFormat,
    Rendering,
    frame_count,
    matlab_answer,
    numpy_answer,
    raw_frame,
    render,
    unsupported_picture,
)
from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .common import answer, context, flag, get_resource, int_arg

bp = Blueprint("frames", __name__)

#: What /instances/{id}/frames/{n} lists, as Orthanc does.
_FRAME_CHILDREN = sorted([*(mode.value for mode in Extraction), "matlab", "numpy", "raw", "raw.gz"])


def negotiate(accept: str | None) -> ImageFormat:
    """Orthanc's choice: the most specific matching range wins, then the highest q, then the first listed.

    Nothing matching is a 406; an absent or empty header means PNG.
    """
    if not accept or not accept.strip():
        return ImageFormat.PNG
    best: tuple[int, float] | None = None
    chosen: ImageFormat | None = None
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad quality in the Accept header: {entry}") from None
        kind, _, subtype = media.lower().partition("/")
        for fmt in ImageFormat:
            fmt_kind, fmt_subtype = fmt.value.split("/")
            if (kind, subtype) == (fmt_kind, fmt_subtype):
                specificity = 2
            elif (kind, subtype) == (fmt_kind, "*"):
                specificity = 1
            elif (kind, subtype) == ("*", "*"):
                specificity = 0
            else:
                continue
            if best is None or (specificity, quality) > best:
                best, chosen = (specificity, quality), fmt
    if chosen is None:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"No picture format matches the Accept header: {accept}")
    return chosen


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"argument {name!r} must be a number")
    return value


def _quality() -> int:
    quality = int_arg("quality", 90)
    if quality is None or not 1 <= quality <= 100:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "argument 'quality' must be between 1 and 100")
    return quality


@bp.get("/instances/<public_id>/frames")
async def frames(public_id: str) -> Response:
    """The frame numbers of the instance, from NumberOfFrames (one frame when absent)."""
    instance = await get_resource(ResourceType.INSTANCE, public_id)
    return answer(list(range(frame_count(instance.main_tags.get("NumberOfFrames")))))


@bp.get("/instances/<public_id>/frames/<int:frame>")
async def frame_children(public_id: str, frame: int) -> Response:
    """What can be asked of one frame."""
    await get_resource(ResourceType.INSTANCE, public_id)
    return answer(_FRAME_CHILDREN)


async def picture(public_id: str, frame: int, mode: str) -> Response:
    """A frame as PNG, JPEG or PAM (Accept, ?quality, ?returnUnsupportedImage); rendered: window, size, ?smooth."""
    fmt = negotiate(request.headers.get("Accept"))
    quality = _quality()
    extraction = Extraction(mode)
    rendering = Rendering()
    if extraction is Extraction.RENDERED:
        rendering = Rendering(
            window_center=_float_arg("window-center"),
            window_width=_float_arg("window-width"),
            width=int_arg("width", 0) or 0,
            height=int_arg("height", 0) or 0,
            smooth=flag("smooth"),
        )
    data = await context().store.read_dicom(public_id)
    try:
        body = await asyncio.to_thread(render, data, frame, extraction, rendering, fmt, quality)
    except OrthancError as error:
        if error.http_status != 415 or not flag("returnUnsupportedImage"):
            raise
        return Response(unsupported_picture(), content_type=ImageFormat.PNG.value)
    return Response(body, content_type=fmt.value)


# The dashes in "image-uint8" rule out an <any(...)> converter. The instance-level rules have their own endpoints:
# within one endpoint, werkzeug would redirect /frames/0/preview to /preview, whose defaults say frame 0.
for _mode in Extraction:
    bp.add_url_rule(
        f"/instances/<public_id>/{_mode.value}",
        f"instance_{_mode.value}",
        view_func=picture,
        defaults={"frame": 0, "mode": _mode.value},
    )
    bp.add_url_rule(
        f"/instances/<public_id>/frames/<int:frame>/{_mode.value}",
        f"frame_{_mode.value}",
        view_func=picture,
        defaults={"mode": _mode.value},
    )


@bp.get("/instances/<public_id>/frames/<int:frame>/raw", defaults={"kind": "raw"})
@bp.get("/instances/<public_id>/frames/<int:frame>/raw.gz", defaults={"kind": "raw.gz"})
async def raw(public_id: str, frame: int, kind: str) -> Response:
    """The frame's bytes as stored: uncompressed samples, or the compressed fragment(s); raw.gz gzips them."""
    data = await context().store.read_dicom(public_id)
    body, content_type = await asyncio.to_thread(raw_frame, data, frame, compress=kind == "raw.gz")
    return Response(body, content_type=content_type)


@bp.get("/instances/<public_id>/numpy", defaults={"frame": None})
@bp.get("/instances/<public_id>/frames/<int:frame>/numpy")
async def numpy(public_id: str, frame: int | None) -> Response:
    """A NumPy array (.npy; .npz with ?compress) of one frame or all, rescaled to float32 unless ?rescale=0."""
    rescale = "rescale" not in request.args or flag("rescale")
    data = await context().store.read_dicom(public_id)
    body = await asyncio.to_thread(numpy_answer, data, frame, rescale=rescale, compress=flag("compress"))
    return Response(body, content_type="application/octet-stream")


@bp.get("/instances/<public_id>/matlab", defaults={"frame": 0}, endpoint="instance_matlab")
@bp.get("/instances/<public_id>/frames/<int:frame>/matlab")
async def matlab(public_id: str, frame: int) -> Response:
    """The stored values of a frame as a Matlab/Octave expression."""
    data = await context().store.read_dicom(public_id)
    return Response(await asyncio.to_thread(matlab_answer, data, frame), content_type="text/plain")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
