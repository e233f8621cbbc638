"""Modality Worklist server: answers Modality Worklist Information Model - FIND (PS3.4 K) from .wl files and
from worklists created over REST, as Orthanc's worklists plugin does (Orthanc Book, plugins/worklists-plugin.rst;
configuration section "Worklists").

Who may query is the kernel's business (AllowFindWorklist, DicomAlwaysAllowFindWorklist): this plugin is asked
only for permitted queries, and passes on every other information model.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityWorklistInformationFind
from quart import Quart

from isengard import hookimpl
from isengard.context import ServerContext
from isengard.dicom.scp import FindAnswers

from . import rest
from .find import find_worklists
from .settings import APP_KEY, DEFAULTS, SECTION, WorklistSettings
from .store import WorklistStore

#: One store per running server (it caches the parsed files), by the identity of the server's context.
_servers: dict[int, tuple[WorklistSettings, WorklistStore]] = {}


def _server(context: ServerContext) -> tuple[WorklistSettings, WorklistStore]:
    found = _servers.get(id(context))
    if found is None:
        settings = WorklistSettings.from_config(context.config)
        found = _servers[id(context)] = (settings, WorklistStore(context, settings))
    return found


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {SECTION: dict(DEFAULTS)}


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    settings, store = _server(context)
    if settings.enable:
        app.config[APP_KEY] = (settings, store)
        app.register_blueprint(rest.bp)


@hookimpl
def shutdown(context: ServerContext) -> None:
    _servers.pop(id(context), None)


@hookimpl
def handle_c_find(
    context: ServerContext, query: Dataset, model: str, requestor: dict[str, str]
) -> Awaitable[FindAnswers] | None:
    if model != ModalityWorklistInformationFind:
        return None
    settings, store = _server(context)
    if not settings.enable:
        return None  # as Orthanc without a worklist plugin: the query fails
    return find_worklists(context, store, settings, query, requestor)
