"""Metadata and attachments of any resource: listing, reading, writing with revisions, checking, compressing."""

from __future__ import annotations

import hashlib
from typing import Any

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..backends import RevisionMismatch
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError, unknown_resource
from ..model import (
    ATTACHMENT_NAMES,
    METADATA_NAMES,
    USER_METADATA_RANGE,
    CompressionType,
    FileContentType,
    FileInfo,
    MetadataType,
)
from .common import answer, context, flag, get_resource, level_of_collection, text_answer

bp = Blueprint("attachments", __name__)

RESOURCE = "/<any(patients, studies, series, instances):collection>/<public_id>"


# -- names <-> numbers ---------------------------------------------------------------------------------------
def metadata_names(ctx: ServerContext) -> dict[int, str]:
    names = {int(k): v for k, v in METADATA_NAMES.items()}
    names.update({int(v): k for k, v in ctx.config.dict("UserMetadata").items()})
    return names


def metadata_kind(ctx: ServerContext, name: str) -> int:
    for kind, label in metadata_names(ctx).items():
        if label == name:
            return kind
    if name.isdigit() and int(name) in USER_METADATA_RANGE:
        return int(name)
    raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"unknown metadata {name!r} (declare it in UserMetadata)")


def attachment_names(ctx: ServerContext) -> dict[int, str]:
    names = {int(k): v for k, v in ATTACHMENT_NAMES.items()}
    for label, value in ctx.config.dict("UserContentType").items():
        names[int(value[0] if isinstance(value, list) else value)] = label
    return names


def attachment_kind(ctx: ServerContext, name: str) -> int:
    for kind, label in attachment_names(ctx).items():
        if label == name:
            return kind
    if name.isdigit() and int(name) >= 1024:
        return int(name)
    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"unknown attachment {name!r}")


def _revision_header() -> int | None:
    """``If-Match`` carries the revision a writer saw, as an ETag ("3" or "\"3\"")."""
    raw = request.headers.get("If-Match")
    if raw is None:
        if context().config.bool("CheckRevisions"):
            raise OrthancError(
                ErrorCode.REVISION, "CheckRevisions is on: send If-Match with the current revision", http_status=428
            )
        return None
    raw = raw.strip().strip('"')
    if not raw.isdigit():
        raise OrthancError(ErrorCode.BAD_REQUEST, "If-Match must be a revision number")
    return int(raw)


def _revision_error(e: RevisionMismatch) -> OrthancError:
    return OrthancError(ErrorCode.REVISION, str(e))


async def _check(collection: str, public_id: str) -> Any:
    level = level_of_collection(collection)
    await get_resource(level, public_id)
    return level


# -- metadata ------------------------------------------------------------------------------------------------
@bp.get(f"{RESOURCE}/metadata")
async def list_metadata(collection: str, public_id: str) -> Response:
    """Names of the metadata of a resource; ``?expand`` for names and values."""
    ctx = context()
    level = await _check(collection, public_id)
    values = await ctx.index.get_metadata(level, public_id)
    names = metadata_names(ctx)
    labelled = {names.get(k, str(k)): v for k, (v, _) in values.items()}
    if flag("expand"):
        return answer(dict(sorted(labelled.items())))
    return answer(sorted(labelled))


@bp.get(f"{RESOURCE}/metadata/<name>")
async def get_metadata(collection: str, public_id: str, name: str) -> Response:
    """One metadata value, with its revision as ETag."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = metadata_kind(ctx, name)
    found = (await ctx.index.get_metadata(level, public_id)).get(kind)
    if found is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no metadata {name}")
    response = text_answer(found[0])
    response.headers["ETag"] = f'"{found[1]}"'
    return response


@bp.put(f"{RESOURCE}/metadata/<name>")
async def set_metadata(collection: str, public_id: str, name: str) -> Response:
    """Set a metadata (the body is its value); ``If-Match`` guards against concurrent writers."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = metadata_kind(ctx, name)
    if kind < 1024 and kind != MetadataType.MODIFIED_FROM and kind != MetadataType.ANONYMIZED_FROM:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"metadata {name} is maintained by the server")
    value = await request.get_data(as_text=True)
    try:
        revision, change = await ctx.index.set_metadata(
            level, public_id, kind, value, expected_revision=_revision_header()
        )
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    ctx.events.publish("on_change", context=ctx, change=change)
    response = text_answer("")
    response.headers["ETag"] = f'"{revision}"'
    return response


@bp.delete(f"{RESOURCE}/metadata/<name>")
async def delete_metadata(collection: str, public_id: str, name: str) -> Response:
    """Remove a user metadata."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = metadata_kind(ctx, name)
    if kind < 1024:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"metadata {name} is maintained by the server")
    try:
        removed = await ctx.index.delete_metadata(level, public_id, kind, expected_revision=_revision_header())
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    if not removed:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no metadata {name}")
    return text_answer("")


# -- attachments ---------------------------------------------------------------------------------------------
async def _attachment(collection: str, public_id: str, name: str) -> tuple[Any, FileInfo]:
    ctx = context()
    level = level_of_collection(collection)
    kind = attachment_kind(ctx, name)
    try:
        found = (await ctx.index.get_attachments(level, public_id)).get(kind)
    except KeyError:
        raise unknown_resource(public_id) from None
    if found is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no attachment {name}")
    return level, found


@bp.get(f"{RESOURCE}/attachments")
async def list_attachments(collection: str, public_id: str) -> Response:
    """Names of the attachments of a resource (``?full`` for numbers)."""
    ctx = context()
    level = await _check(collection, public_id)
    found = await ctx.index.get_attachments(level, public_id)
    names = attachment_names(ctx)
    if flag("full"):
        return answer({names.get(k, str(k)): k for k in sorted(found)})
    return answer([names.get(k, str(k)) for k in sorted(found)])


def _info_json(info: FileInfo) -> dict[str, Any]:
    return {
        "CompressedMD5": info.stored_md5,
        "CompressedSize": info.stored_size,
        "ContentType": info.content_type,
        "Revision": info.revision,
        "UncompressedMD5": info.uncompressed_md5,
        "UncompressedSize": info.uncompressed_size,
        "Uuid": info.uuid,
    }


@bp.get(f"{RESOURCE}/attachments/<name>")
async def attachment_operations(collection: str, public_id: str, name: str) -> Response:
    """The operations available on an attachment."""
    await _attachment(collection, public_id, name)
    return answer(
        [
            "compress",
            "compressed-data",
            "compressed-md5",
            "compressed-size",
            "data",
            "info",
            "is-compressed",
            "md5",
            "size",
            "uncompress",
            "verify-md5",
        ]
    )


@bp.get(f"{RESOURCE}/attachments/<name>/info")
async def attachment_info(collection: str, public_id: str, name: str) -> Response:
    """Sizes, checksums, uuid and revision of an attachment."""
    _, info = await _attachment(collection, public_id, name)
    response = answer(_info_json(info))
    response.headers["ETag"] = f'"{info.revision}"'
    return response


@bp.get(f"{RESOURCE}/attachments/<name>/data")
async def attachment_data(collection: str, public_id: str, name: str) -> Response:
    """The content of an attachment, uncompressed."""
    _, info = await _attachment(collection, public_id, name)
    ctx = context()
    return Response(
        ctx.store.stream_attachment(info),
        content_type="application/octet-stream",
        headers={"Content-Length": str(info.uncompressed_size), "ETag": f'"{info.revision}"'},
    )


@bp.get(f"{RESOURCE}/attachments/<name>/compressed-data")
async def attachment_compressed_data(collection: str, public_id: str, name: str) -> Response:
    """The attachment as stored (compressed when it is)."""
    _, info = await _attachment(collection, public_id, name)
    data = await context().storage.read(info.uuid, info.content_type)
    return Response(data, content_type="application/octet-stream")


_SCALARS = {
    "size": lambda i: str(i.uncompressed_size),
    "compressed-size": lambda i: str(i.stored_size),
    "md5": lambda i: i.uncompressed_md5,
    "compressed-md5": lambda i: i.stored_md5,
    "is-compressed": lambda i: "1" if i.compression is not CompressionType.NONE else "0",
}


@bp.get(f"{RESOURCE}/attachments/<name>/<any(size, 'compressed-size', md5, 'compressed-md5', 'is-compressed'):what>")
async def attachment_scalar(collection: str, public_id: str, name: str, what: str) -> Response:
    """One property of an attachment, as text."""
    _, info = await _attachment(collection, public_id, name)
    return text_answer(_SCALARS[what](info))


@bp.post(f"{RESOURCE}/attachments/<name>/verify-md5")
async def verify_md5(collection: str, public_id: str, name: str) -> Response:
    """Check the stored file against its recorded MD5 (error 500 "Corrupted file" if they differ)."""
    _, info = await _attachment(collection, public_id, name)
    data = await context().store.read_attachment(info)
    if info.uncompressed_md5 and hashlib.md5(data).hexdigest() != info.uncompressed_md5:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, f"attachment {name} does not match its MD5")
    return answer({})


async def _rewrite(collection: str, public_id: str, name: str, compressed: bool) -> Response:
    ctx = context()
    level, info = await _attachment(collection, public_id, name)
    if (info.compression is not CompressionType.NONE) == compressed:
        return answer({})
    data = await ctx.store.read_attachment(info)
    new = await ctx.store.write_attachment(data, info.content_type, compressed=compressed)
    try:
        old, change = await ctx.index.set_attachment(level, public_id, new, expected_revision=info.revision)
    except BaseException:
        await ctx.store.remove_files([new])
        raise
    await ctx.store.remove_files([old] if old else [])
    ctx.events.publish("on_change", context=ctx, change=change)
    return answer({})


@bp.post(f"{RESOURCE}/attachments/<name>/compress")
async def compress_attachment(collection: str, public_id: str, name: str) -> Response:
    """Store the attachment zlib-compressed."""
    return await _rewrite(collection, public_id, name, True)


@bp.post(f"{RESOURCE}/attachments/<name>/uncompress")
async def uncompress_attachment(collection: str, public_id: str, name: str) -> Response:
    """Store the attachment uncompressed."""
    return await _rewrite(collection, public_id, name, False)


@bp.put(f"{RESOURCE}/attachments/<name>")
async def put_attachment(collection: str, public_id: str, name: str) -> Response:
    """Add or replace a user attachment (content types from 1024)."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = attachment_kind(ctx, name)
    if kind < 1024:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"attachment {name} is maintained by the server")
    data = await request.get_data()
    info = await ctx.store.write_attachment(data, kind)
    try:
        old, change = await ctx.index.set_attachment(level, public_id, info, expected_revision=_revision_header())
    except RevisionMismatch as e:
        await ctx.store.remove_files([info])
        raise _revision_error(e) from None
    except BaseException:
        await ctx.store.remove_files([info])
        raise
    await ctx.store.remove_files([old] if old else [])
    ctx.events.publish("on_change", context=ctx, change=change)
    return answer({"ID": public_id, "Path": f"/{collection}/{public_id}/attachments/{name}"})


@bp.delete(f"{RESOURCE}/attachments/<name>")
async def delete_attachment(collection: str, public_id: str, name: str) -> Response:
    """Remove a user attachment (the DICOM file of an instance cannot be removed this way)."""
    ctx = context()
    level, info = await _attachment(collection, public_id, name)
    if info.content_type == FileContentType.DICOM:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "delete the instance to remove its DICOM file")
    try:
        old = await ctx.index.delete_attachment(
            level, public_id, info.content_type, expected_revision=_revision_header()
        )
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    await ctx.store.remove_files([old] if old else [])
    return text_answer("")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
