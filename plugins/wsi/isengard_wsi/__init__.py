"""Whole-slide imaging: the pyramids of VL Whole Slide Microscopy series and their tiles, served on the routes
and with the answers of Orthanc's WSI plugin (orthanc-wsi, Orthanc Book plugins/wsi.rst).

The DICOMizer (tiled TIFF and plain images to DICOM, ``isengard-wsi-dicomizer``) is the dicomizer package.
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from isengard import hookimpl
from isengard.config import ConfigError
from isengard.context import ServerContext
from isengard.dicom.parse import ParsedInstance
from isengard.model import ResourceType

from . import iiif, rest, viewer
from .cache import PyramidCache
from .dicomize_job import register_dicomize_route, register_job_types  # noqa: F401 - hooks of this plugin

#: One cache per running server, by the identity of its context.
_caches: dict[int, PyramidCache] = {}


def _cache(context: ServerContext) -> PyramidCache:
    return _caches.setdefault(id(context), PyramidCache(context))


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {iiif.SECTION: dict(iiif.DEFAULTS)}


def _settings(context: ServerContext) -> dict[str, Any]:
    """The "WholeSlideImaging" section over its defaults, each option of its default's type."""
    section = context.config.get(iiif.SECTION) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"option {iiif.SECTION!r} must be a JSON object")
    values = {**iiif.DEFAULTS, **section}
    for name, default in iiif.DEFAULTS.items():
        if type(values[name]) is not type(default):
            raise ConfigError(f"option {iiif.SECTION}.{name} must be of type {type(default).__name__}")
    return values


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    settings = _settings(context)
    app.config[rest.APP_KEY] = _cache(context)
    app.config[iiif.SETTINGS_KEY] = settings
    app.register_blueprint(rest.bp)
    app.register_blueprint(viewer.bp)
    if settings["EnableIIIF"]:
        app.register_blueprint(iiif.bp)


@hookimpl
def shutdown(context: ServerContext) -> None:
    _caches.pop(id(context), None)


@hookimpl
def on_stored(context: ServerContext, instance_id: str, instance: ParsedInstance, origin: dict[str, str]) -> None:
    """A new instance can add a level or tiles to its series: rebuild that pyramid when next asked."""
    _cache(context).forget(instance.identifiers.public_id(ResourceType.SERIES))


@hookimpl
def on_deleted(context: ServerContext, level: ResourceType, public_id: str) -> None:
    """A deletion below a series names only the instance; above, the series are unknown: drop everything."""
    cache = _cache(context)
    if level is ResourceType.SERIES:
        cache.forget(public_id)
    elif level is ResourceType.INSTANCE:
        cache.forget_instance(public_id)
    else:
        cache.clear()
