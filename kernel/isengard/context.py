"""The running server's state, handed to plugins: configuration, index, storage, store, events, plugins.

Built once at start-up by :func:`create_context`; ``start``/``stop`` bracket the life of the index and storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .backends import IndexBackend, StorageArea
from .config import KERNEL_DEFAULTS, Config, ConfigError
from .dicom.network import DicomSettings
from .dicom.tags import MainTags
from .events import EventBus
from .jobs import JobEngine
from .plugins import PluginInfo, load_plugins, make_manager, resolve
from .store import Store

log = logging.getLogger("isengard")


class Lifecycle:
    """Stop and restart requests (/tools/shutdown, /tools/reset, signals), awaited by the server runner."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.restart = False

    def request_stop(self) -> None:
        self.stopping.set()

    def request_restart(self) -> None:
        self.restart = True
        self.stopping.set()


class MissingBackend(ConfigError):
    """No installed plugin provides the index or the storage."""


@dataclass
class ServerContext:
    config: Config
    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    index: IndexBackend
    storage: StorageArea
    main_tags: MainTags
    started_at: float = field(default_factory=time.time)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    store: Store = field(init=False)
    events: EventBus = field(init=False)
    jobs: JobEngine = field(init=False)
    dicom_settings: DicomSettings = field(init=False)

    def __post_init__(self) -> None:
        self.dicom_settings = DicomSettings.from_config(self.config)
        self.store = Store(self)
        self.events = EventBus(self.pm)
        self.jobs = JobEngine(self)

    async def start(self) -> None:
        await self.index.start()
        self.events.start()
        self.store.stability.start()
        for answer in self.pm.hook.startup(context=self):
            await resolve(answer)
        await self.jobs.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        for answer in self.pm.hook.shutdown(context=self):
            await resolve(answer)
        await self.store.stability.stop()
        await self.events.stop()
        await self.index.stop()


def collect_defaults(pm: pluggy.PluginManager) -> dict[str, Any]:
    defaults = dict(KERNEL_DEFAULTS)
    for contributed in pm.hook.config_defaults():
        for key, value in (contributed or {}).items():
            defaults.setdefault(key, value)
    return defaults


def create_context(
    config_path: str | None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> ServerContext:
    """Read the configuration, load plugins and pick the index and storage (not started yet)."""
    pm = make_manager()
    # A first pass reads DisabledPlugins/Plugins, which decide what else loads.
    bootstrap = Config.load(config_path, environ=environ, overrides=overrides, warn_unknown=False)
    plugins = load_plugins(pm, disabled=bootstrap.list("DisabledPlugins"), extra_modules=bootstrap.list("Plugins"))
    config = Config.load(config_path, defaults=collect_defaults(pm), environ=environ, overrides=overrides)
    index = pm.hook.index_backend(config=config)
    if index is None:
        raise MissingBackend("no index plugin is installed: install one, for instance `pip install isengard-sqlite`")
    storage = pm.hook.storage_area(config=config)
    if storage is None:
        raise MissingBackend(
            "no storage plugin is installed: install one, for instance `pip install isengard-filesystem`"
        )
    main_tags = MainTags(config.dict("ExtraMainDicomTags"))
    return ServerContext(config, pm, plugins, index, storage, main_tags)
