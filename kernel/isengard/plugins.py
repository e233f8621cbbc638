"""The plugin manager: kernel features first, then every distribution of the entry-point group ``isengard``.

As in datasette and pytest, the kernel's own REST families are plugins of the kernel (``DEFAULT_PLUGINS``), so
a third-party plugin sees the same hooks the built-in features use. ``DisabledPlugins`` in the configuration
removes installed plugins by name; ``Plugins`` adds modules by import name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger("isengard.plugins")

ENTRY_POINT_GROUP = "isengard"

#: Kernel modules that implement hooks, in the order they register.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "isengard.rest.system",
    "isengard.rest.resources",
    "isengard.rest.upload",
    "isengard.rest.instances",
    "isengard.rest.frames",
    "isengard.rest.attachments",
    "isengard.rest.tools",
    "isengard.rest.modules",
    "isengard.rest.changes",
    "isengard.rest.admin",
    "isengard.rest.modalities",
    "isengard.rest.commitment",
    "isengard.rest.peers",
    "isengard.rest.queries",
    "isengard.rest.jobs",
    "isengard.rest.archives",
    "isengard.rest.openapi",
    "isengard.dicom.cfind",
    "isengard.jobs.dicom_store",
    "isengard.jobs.dicom_move",
    "isengard.jobs.dicom_get",
    "isengard.rest.modify",
    "isengard.jobs.modify",
    "isengard.jobs.archive",
    "isengard.jobs.peer_store",
)


@dataclass(frozen=True)
class PluginInfo:
    """What /plugins reports: a name, the distribution that ships it and its version."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    description: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.name,
            "Version": self.version or "",
            "Description": self.description or "",
            "Module": self.module,
            "Distribution": self.distribution,
        }


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("isengard")
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(
    pm: pluggy.PluginManager,
    *,
    disabled: Iterable[str] = (),
    extra_modules: Iterable[str] = (),
) -> list[PluginInfo]:
    """Register the kernel's plugins, then installed and configured ones; return what third parties added."""
    for name in DEFAULT_PLUGINS:
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name=name)
    disabled = set(disabled)
    loaded: list[PluginInfo] = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disabled:
            log.info("plugin %s is disabled by the configuration", ep.name)
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        module = ep.load()
        pm.register(module, name=ep.name)
        dist = ep.dist
        loaded.append(_info(ep.name, module, dist.name if dist else None, dist.version if dist else None))
    for module_name in extra_modules:
        if pm.get_plugin(module_name) is None:
            module = importlib.import_module(module_name)
            pm.register(module, name=module_name)
            loaded.append(_info(module_name, module, None, getattr(module, "__version__", None)))
    return loaded


def _info(name: str, module: ModuleType, dist: str | None, version: str | None) -> PluginInfo:
    doc = inspect.getdoc(module) or ""
    return PluginInfo(name, module.__name__, dist, version, doc.split("\n\n")[0].replace("\n", " ") or None)


async def resolve(value: Any) -> Any:
    """Hooks may answer a value or an awaitable; callers need the value."""
    if inspect.isawaitable(value):
        return await value
    return value


async def first_replacement(answers: Iterable[Any]) -> Any:
    """The first answer that is not ``None`` among hook answers that replace a value (a query...), in call order.

    Every answer is resolved, so that no implementation's coroutine is left unawaited.
    """
    found = None
    for answer in answers:
        value = await resolve(answer)
        if found is None:
            found = value
    return found
