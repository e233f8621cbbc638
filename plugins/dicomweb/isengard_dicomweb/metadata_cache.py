"""A series' WADO-RS /metadata kept as an attachment of the series, as Orthanc's DICOMweb plugin does since 1.15.

"Full" metadata reads and parses every file of the series: about 1 ms an instance here, so a 500-instance series
takes half a second, and a viewer asks it again at every opening. The answer's items (the DICOM JSON of each
instance) are therefore written once, compressed, as attachment 4301 of the series, and later answers are that
one read. The attachment starts with a fingerprint of the series' instances (their ids and the identifiers of
their DICOM files, which change when an instance is overwritten): an instance added, deleted or replaced makes
it stale, and the next answer is made from the files again and replaces it. BulkDataURIs begin with a
placeholder, as the public root depends on the request (Host, Forwarded).

The option ``"EnableMetadataCache"`` of the ``DicomWeb`` section (default true, Orthanc's name) turns it off.
"""

from __future__ import annotations

import hashlib
import logging

from isengard.context import ServerContext
from isengard.errors import OrthancError
from isengard.model import Resource, ResourceType

log = logging.getLogger(__name__)

#: The attachment's content type: a number of the range Orthanc's plugins use for their own attachments.
CONTENT_TYPE = 4301
#: What stands for the public root in cached items: no DICOM value can hold it, since JSON escapes control
#: characters (a value with U+0001 is written "\u0001", not this byte).
ROOT_PLACEHOLDER = "\x01"
_ESCAPED_PLACEHOLDER = b"\\u0001"


def fingerprint(instances: list[Resource]) -> bytes:
    """Changes when an instance of the series is added, deleted or overwritten (a new file)."""
    digest = hashlib.sha256()
    for instance in instances:
        uuid = instance.attachment.uuid if instance.attachment else ""
        digest.update(f"{instance.public_id}:{uuid};".encode())
    return digest.hexdigest().encode()


def with_root(items: bytes, root: str) -> bytes:
    """Cached items with the request's public root in their BulkDataURIs."""
    return items.replace(_ESCAPED_PLACEHOLDER, root.encode())


async def read(ctx: ServerContext, series: str, instances: list[Resource]) -> bytes | None:
    """The cached items of the series (JSON objects joined by commas), or None when absent or stale."""
    info = (await ctx.index.get_attachments(ResourceType.SERIES, series)).get(CONTENT_TYPE)
    if info is None:
        return None
    try:
        data = await ctx.store.read_attachment(info)
    except OrthancError:  # the file is gone: made again below
        return None
    head, _, items = data.partition(b"\n")
    return items if head == fingerprint(instances) else None


async def write(ctx: ServerContext, series: str, instances: list[Resource], items: bytes) -> None:
    """Keep the items for the next answers; a failure (the series deleted meanwhile) only costs the cache."""
    info = await ctx.store.write_attachment(fingerprint(instances) + b"\n" + items, CONTENT_TYPE, compressed=True)
    try:
        old, _ = await ctx.index.set_attachment(ResourceType.SERIES, series, info, expected_revision=None)
    except Exception as e:
        await ctx.store.remove_files([info])
        log.info("metadata of series %s not cached: %s", series, e)
        return
    if old is not None:
        await ctx.store.remove_files([old])
