"""DICOMweb server (PS3.18): QIDO-RS, WADO-RS, STOW-RS (and DELETE) under ``DicomWeb.Root``, WADO-URI under
``WadoRoot``.

Configured like Orthanc's DICOMweb plugin (the "DicomWeb" section, same option names); routes go through the
kernel's authentication and ``authorize`` hook like every REST route. The client side of Orthanc's plugin lives
under ``Root`` too: ``servers/...`` (client.py), with its STOW-RS and WADO-RS jobs (transfers.py).
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from isengard import hookimpl
from isengard.context import ServerContext
from isengard.jobs import JobType

from . import client, deletion, pictures, qido, stow, transfers, wado, wado_uri
from .settings import APP_KEY, DEFAULTS, SECTION, DicomWebSettings


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {SECTION: dict(DEFAULTS)}


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    current = DicomWebSettings.from_config(context.config)
    app.config[APP_KEY] = current
    if current.enable:
        prefix = current.root.rstrip("/")
        for module in (qido, wado, pictures, stow, client, deletion):
            app.register_blueprint(module.bp, url_prefix=prefix)
    if current.enable_wado:
        app.register_blueprint(wado_uri.bp, url_prefix=current.wado_root)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return dict(transfers.JOB_TYPES)
