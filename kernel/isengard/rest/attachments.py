"""Metadata and attachments of any resource: listing, reading, writing with revisions, checking, compressing."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..backends import RevisionMismatch
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError, unknown_resource
from ..model import (
    ATTACHMENT_NAMES,
    METADATA_NAMES,
    USER_CONTENT_TYPE_RANGE,
    USER_METADATA_RANGE,
    CompressionType,
    FileInfo,
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
    """A metadata by name or number; only user metadata (UserMetadata, 1024-65535) can be written."""
    for kind, label in metadata_names(ctx).items():
        if label == name:
            return kind
    if name.isdigit():
        return int(name)
    raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"unknown metadata {name!r} (declare it in UserMetadata)")


def _writable_metadata(ctx: ServerContext, name: str) -> int:
    kind = metadata_kind(ctx, name)
    if kind not in USER_METADATA_RANGE:
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, f"metadata {name} is maintained by the server")
    return kind


def attachment_names(ctx: ServerContext) -> dict[int, str]:
    names = {int(k): v for k, v in ATTACHMENT_NAMES.items()}
    for label, value in ctx.config.dict("UserContentType").items():
        names[int(value[0] if isinstance(value, list) else value)] = label
    return names


def attachment_kind(ctx: ServerContext, name: str) -> int:
    for kind, label in attachment_names(ctx).items():
        if label == name:
            return kind
    if name.isdigit():
        return int(name)
    raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"unknown attachment {name!r} (declare it in UserContentType)")


def _writable_attachment(ctx: ServerContext, name: str) -> int:
    kind = attachment_kind(ctx, name)
    if kind not in USER_CONTENT_TYPE_RANGE:
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, f"attachment {name} is maintained by the server")
    return kind


def _mime_type(ctx: ServerContext, kind: int) -> str:
    """The MIME type declared with a user content type (``"notes": [1031, "text/plain"]``)."""
    for value in ctx.config.dict("UserContentType").values():
        if isinstance(value, list) and len(value) > 1 and int(value[0]) == kind:
            return str(value[1])
    return "application/octet-stream"


def etag(revision: int, md5: str) -> str:
    """Orthanc's ETag of a metadata or an attachment: the revision and the MD5 of the content."""
    return f'"{revision}-{md5}"'


_IF_MATCH = re.compile(r"(\d+)(?:-([0-9a-f]{32}))?")


def _if_match() -> tuple[int, str | None] | None:
    """(revision, MD5) from ``If-Match``: Orthanc's ETag ("3-<md5>"), or the bare revision ("3") also accepted."""
    raw = request.headers.get("If-Match")
    if raw is None:
        if context().config.bool("CheckRevisions"):
            raise OrthancError(
                ErrorCode.REVISION, "CheckRevisions is on: send If-Match with the current ETag", http_status=428
            )
        return None
    match = _IF_MATCH.fullmatch(raw.strip().strip('"'))
    if match is None:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"If-Match must hold an ETag (revision, dash, MD5), not {raw}"
        )
    return int(match.group(1)), match.group(2)


def _expected_revision(current_md5: str | None) -> int | None:
    """The revision a writer saw; 409 now if the content it saw (the MD5 of its ETag) is not the current one."""
    expected = _if_match()
    if expected is None:
        return None
    revision, md5 = expected
    if md5 is not None and current_md5 is not None and md5 != current_md5:
        raise OrthancError(ErrorCode.REVISION, "the content changed since this ETag was read")
    return revision


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
    labelled = {names.get(k, str(k)): v for k, (v, _) in sorted(values.items())}  # by number, as Orthanc
    if flag("expand"):
        return answer(labelled)
    return answer(list(labelled))


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
    response.headers["ETag"] = etag(found[1], _md5(found[0]))
    return response


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


@bp.put(f"{RESOURCE}/metadata/<name>")
async def set_metadata(collection: str, public_id: str, name: str) -> Response:
    """Set a metadata (the body is its value); ``If-Match`` guards against concurrent writers."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = _writable_metadata(ctx, name)
    value = await request.get_data(as_text=True)
    current = (await ctx.index.get_metadata(level, public_id)).get(kind)
    expected = _expected_revision(_md5(current[0]) if current else None)
    try:
        revision, change = await ctx.index.set_metadata(level, public_id, kind, value, expected_revision=expected)
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    ctx.events.publish("on_change", context=ctx, change=change)
    response = text_answer("")
    response.headers["ETag"] = etag(revision, _md5(value))
    return response


@bp.delete(f"{RESOURCE}/metadata/<name>")
async def delete_metadata(collection: str, public_id: str, name: str) -> Response:
    """Remove a user metadata (absent already: fine, unless ``If-Match`` named a revision of it)."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = _writable_metadata(ctx, name)
    current = (await ctx.index.get_metadata(level, public_id)).get(kind)
    expected = _expected_revision(_md5(current[0]) if current else None)
    try:
        removed = await ctx.index.delete_metadata(level, public_id, kind, expected_revision=expected)
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    if not removed and expected is not None:
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
            "uuid",  # listed by Orthanc too, though no route answers it
        ]
    )


@bp.get(f"{RESOURCE}/attachments/<name>/info")
async def attachment_info(collection: str, public_id: str, name: str) -> Response:
    """Sizes, checksums, uuid and revision of an attachment."""
    _, info = await _attachment(collection, public_id, name)
    return answer(_info_json(info), headers={"ETag": etag(info.revision, info.uncompressed_md5)})


@bp.get(f"{RESOURCE}/attachments/<name>/data")
async def attachment_data(collection: str, public_id: str, name: str) -> Response:
    """The content of an attachment, uncompressed."""
    _, info = await _attachment(collection, public_id, name)
    ctx = context()
    return Response(
        await ctx.store.attachment_body(info),
        content_type=_mime_type(ctx, info.content_type),
        headers={"Content-Length": str(info.uncompressed_size), "ETag": etag(info.revision, info.uncompressed_md5)},
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
    response = text_answer(_SCALARS[what](info))
    response.headers["ETag"] = etag(info.revision, info.uncompressed_md5)
    return response


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
    """Add or replace a user attachment (content types from 1024); ``If-Match`` guards against concurrent writers."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = _writable_attachment(ctx, name)
    current = (await ctx.index.get_attachments(level, public_id)).get(kind)
    expected = _expected_revision(current.uncompressed_md5 if current else None)
    data = await request.get_data()
    info = await ctx.store.write_attachment(data, kind)
    try:
        old, change = await ctx.index.set_attachment(level, public_id, info, expected_revision=expected)
    except RevisionMismatch as e:
        await ctx.store.remove_files([info])
        raise _revision_error(e) from None
    except BaseException:
        await ctx.store.remove_files([info])
        raise
    await ctx.store.remove_files([old] if old else [])
    ctx.events.publish("on_change", context=ctx, change=change)
    revision = 0 if old is None else old.revision + 1
    return answer({}, headers={"ETag": etag(revision, info.uncompressed_md5)})


@bp.delete(f"{RESOURCE}/attachments/<name>")
async def delete_attachment(collection: str, public_id: str, name: str) -> Response:
    """Remove a user attachment (absent already: fine, unless ``If-Match`` named a revision of it)."""
    ctx = context()
    level = await _check(collection, public_id)
    kind = _writable_attachment(ctx, name)
    current = (await ctx.index.get_attachments(level, public_id)).get(kind)
    expected = _expected_revision(current.uncompressed_md5 if current else None)
    try:
        old = await ctx.index.delete_attachment(level, public_id, kind, expected_revision=expected)
    except RevisionMismatch as e:
        raise _revision_error(e) from None
    if old is None and expected is not None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"no attachment {name}")
    await ctx.store.remove_files([old] if old else [])
    return text_answer("")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
