"""WADO-RS retrieval of DICOM files and metadata (PS3.18 10.4): studies, series and instances.

- Instances come as multipart/related; type="application/dicom", streamed one instance at a time. Without a
  ``transfer-syntax`` in the Accept header they are converted to Explicit VR Little Endian, the default of
  PS3.18 8.7.3.5.2 (as Orthanc's plugin does); ``transfer-syntax=*`` sends the files as stored. A file no codec
  can convert goes as stored, its part's Content-Type telling its syntax.
- ``/metadata`` is the DICOM JSON of the headers (never the pixel data): binary elements are BulkDataURIs that
  ``/bulk`` (pictures.py) answers. ``StudiesMetadata``/``SeriesMetadata`` "MainDicomTags" answer from the index
  alone, the study's, series' and instance's main tags of each instance.
- Asked for application/dicom+xml, metadata is the same model as multipart/related parts of NativeDicomModel
  XML, one per instance (dicom_xml.py); Orthanc's plugin 1.7 answers XML to
  ``multipart/related; type="application/dicom+xml"`` only, and 400 to a bare application/dicom+xml.
- The Accept header is matched as PS3.18 8.7.7 says: nothing acceptable is a 406 (Orthanc's plugin says 400).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from quart import Blueprint, Response, request

from isengard.context import ServerContext
from isengard.dicom.parse import PIXEL_DATA
from isengard.dicom.tags import IDENTIFIER_TAGS, parse_tag, vr_of
from isengard.dicom.transcode import lossy_quality, parse_syntax, transcode
from isengard.errors import OrthancError
from isengard.lookup import FILE_CHECKS_AT_ONCE
from isengard.model import MetadataType, Resource, ResourceType
from isengard.rest.common import context

from . import metadata_cache
from .dicom_json import MEDIA_TYPE, answer_model, dataset_json, tag_key, text_element
from .dicom_xml import MEDIA_TYPE as XML_MEDIA_TYPE
from .dicom_xml import xml_answer
from .multipart import accepted_part, content_type, new_boundary, not_acceptable, stream_parts
from .resources import at_every_level, instances_of, resolve, resource_path
from .settings import public_root, settings

log = logging.getLogger("isengard.dicomweb")
bp = Blueprint("dicomweb_wado", __name__)

DICOM = "application/dicom"


def requested_syntax(accept: str | None) -> str | None:
    """The transfer syntax an Accept header asks application/dicom parts in (``None``: as stored)."""
    media = accepted_part(accept, DICOM)
    syntax = media.params.get("transfer-syntax", ExplicitVRLittleEndian) if media else ExplicitVRLittleEndian
    if syntax == "*":
        return None
    try:
        return parse_syntax(syntax)
    except OrthancError:
        raise not_acceptable(accept, f'multipart/related; type="{DICOM}"') from None


async def _dicom_part(ctx: ServerContext, instance: str, syntax: str | None) -> tuple[bytes, dict[str, str]]:
    data = await ctx.store.read_dicom(instance)
    stored = (await ctx.index.get_metadata(ResourceType.INSTANCE, instance)).get(MetadataType.TRANSFER_SYNTAX)
    actual = stored[0] if stored else None
    if syntax is not None and syntax != actual:
        try:
            data = await asyncio.to_thread(transcode, data, syntax, quality=lossy_quality(ctx.config))
            actual = syntax
        except OrthancError as error:
            log.warning("instance %s sent as stored: %s", instance, error.details or error.code.message)
    headers = {"Content-Type": f"{DICOM}; transfer-syntax={actual}" if actual else DICOM}
    return data, headers


async def _dicom_parts(
    ctx: ServerContext, instances: list[str], syntax: str | None
) -> AsyncIterator[tuple[bytes, dict[str, str]]]:
    for instance in instances:
        yield await _dicom_part(ctx, instance, syntax)


@at_every_level(bp, "")
async def retrieve(study: str, series: str | None = None, instance: str | None = None) -> Response:
    """WADO-RS: the instances of a study, a series or one instance, as multipart/related application/dicom."""
    ctx = context()
    syntax = requested_syntax(request.headers.get("Accept"))
    level, resources = await resolve(ctx, study, series, instance)
    instances = await instances_of(ctx, level, resources)
    boundary = new_boundary()
    body = stream_parts(_dicom_parts(ctx, instances, syntax), boundary)
    return Response(body, content_type=content_type(boundary, DICOM))


# -- metadata ---------------------------------------------------------------------------------------------------


def _instance_json(instance: Resource, ds: Dataset, has_pixels: bool, root: str) -> dict[str, Any]:
    """The header of one instance in the DICOM JSON model, pixel data as a BulkDataURI."""
    uids = {lvl: str(ds.get(IDENTIFIER_TAGS[lvl], "")) for lvl in ResourceType if lvl >= ResourceType.STUDY}
    base = f"{root}{resource_path(uids, ResourceType.INSTANCE)}/bulk/"
    out = dataset_json(ds, lambda path: base + path.lower())
    if has_pixels:
        vr = instance.metadata.get(MetadataType.PIXEL_DATA_VR) or "OW"
        out[tag_key(PIXEL_DATA)] = {"vr": vr, "BulkDataURI": f"{base}{PIXEL_DATA:08x}"}
    return out


async def _full_metadata(ctx: ServerContext, batch: list[Resource], root: str) -> list[dict[str, Any]]:
    """The headers of a few instances read from their files (the index's view of each spares two queries),
    then converted in one trip to a worker thread: the conversion is CPU work kept off the event loop, and one
    hop per batch rather than per instance saves the threads' handovers."""
    headers = await asyncio.gather(*(ctx.store.read_header(i.public_id, i) for i in batch))
    return await asyncio.to_thread(
        lambda: [_instance_json(i, ds, has_pixels, root) for i, (ds, has_pixels) in zip(batch, headers, strict=True)]
    )


async def _main_tags_metadata(ctx: ServerContext, instance: Resource) -> dict[str, Any]:
    """The index's view of an instance: the main tags of the instance, its series and its study."""
    tags: dict[str, str] = {}
    current: Resource | None = instance
    while current is not None and current.level >= ResourceType.STUDY:
        tags = {**current.main_tags, **tags}
        parent_level = current.level.parent
        parents = (
            await ctx.index.get_resources(parent_level, [current.parent]) if parent_level and current.parent else []
        )
        current = parents[0] if parents else None
    out = {}
    for keyword, text in tags.items():
        tag = parse_tag(keyword)
        out[tag_key(tag)] = text_element(tag, vr_of(keyword).split(" or ")[0], text)
    return dict(sorted(out.items()))


async def _metadata_batches(
    ctx: ServerContext, instances: list[Resource], full: bool, root: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """The metadata of the instances in the DICOM JSON model, a few at a time (a file each when ``full``)."""
    for start in range(0, len(instances), FILE_CHECKS_AT_ONCE):
        batch = instances[start : start + FILE_CHECKS_AT_ONCE]
        if full:
            yield await _full_metadata(ctx, batch, root)
        else:
            yield await asyncio.gather(*(_main_tags_metadata(ctx, i) for i in batch))


async def _json_array(batches: AsyncIterable[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    yield b"["
    separator = b""
    async for items in batches:
        if items:
            yield separator + _joined(items)
            separator = b","
    yield b"]"


def _joined(batch: list[dict[str, Any]]) -> bytes:
    return ",".join(json.dumps(item, ensure_ascii=False) for item in batch).encode("utf-8")


async def _cached_json_array(ctx: ServerContext, series_ids: list[str], root: str) -> AsyncIterator[bytes]:
    """The full metadata of whole series as a JSON array: each series' items from its cache when it is current,
    else made from the files (streamed as they come) and cached for the next time (metadata_cache.py)."""
    yield b"["
    separator = b""
    for series in series_ids:
        ids = await ctx.index.instances_of(ResourceType.SERIES, series)
        instances = await ctx.index.get_resources(ResourceType.INSTANCE, ids)
        items = await metadata_cache.read(ctx, series, instances)
        if items is None:
            made: list[bytes] = []
            async for batch in _metadata_batches(ctx, instances, True, metadata_cache.ROOT_PLACEHOLDER):
                if batch:
                    made.append(_joined(batch))
                    yield separator + metadata_cache.with_root(made[-1], root)
                    separator = b","
            items = b",".join(made)
            await metadata_cache.write(ctx, series, instances, items)
        elif items:
            yield separator + metadata_cache.with_root(items, root)
            separator = b","
    yield b"]"


@at_every_level(bp, "/metadata")
async def metadata(study: str, series: str | None = None, instance: str | None = None) -> Response:
    """WADO-RS: the DICOM JSON (or XML) metadata of every instance of a study, a series or of one instance."""
    ctx = context()
    model = answer_model()
    level, resources = await resolve(ctx, study, series, instance)
    current = settings()
    mode = {ResourceType.STUDY: current.studies_metadata, ResourceType.SERIES: current.series_metadata}.get(level)
    full = mode != "MainDicomTags"
    if model == MEDIA_TYPE and full and level is not ResourceType.INSTANCE and current.enable_metadata_cache:
        series_ids = [r.public_id for r in resources] if level is ResourceType.SERIES else []
        if level is ResourceType.STUDY:
            series_ids = [child for r in resources for child in r.children]
        return Response(_cached_json_array(ctx, series_ids, public_root()), content_type=MEDIA_TYPE)
    ids = await instances_of(ctx, level, resources)
    instances = await ctx.index.get_resources(ResourceType.INSTANCE, ids)
    batches = _metadata_batches(ctx, instances, full, public_root())
    if model == XML_MEDIA_TYPE:
        return xml_answer(batches)
    return Response(_json_array(batches), content_type=MEDIA_TYPE)
