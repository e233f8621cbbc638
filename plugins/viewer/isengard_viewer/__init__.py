"""An image viewer whose rendering is an API: a series as a volume in patient coordinates, resliced along any plane.

The rendering routes are under /viewer/api, the browser viewer (stack, MPR) at /viewer/ (docs/viewer.md).
Configuration: section "Viewer", Orthanc's "WebViewer" section read too (see ``settings``).
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from isengard import hookimpl
from isengard.context import ServerContext

from . import rest, ui
from .settings import ORTHANC_SECTION, SECTION, ViewerSettings


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {SECTION: {}, ORTHANC_SECTION: {}}  # empty: a "WebViewer" key must not lose to a default


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    rest.install(app, ViewerSettings.from_config(context.config))
    app.register_blueprint(ui.bp)
