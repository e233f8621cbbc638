"""The "Viewer" configuration section; the "WebViewer" section of Orthanc's Web viewer plugin is read too.

Orthanc's Web viewer (Orthanc Book, plugins/webviewer.rst) has CachePath, CacheSize (MB) and Threads. Volumes are
cached in memory here, so CachePath is accepted and has no use; CacheSize bounds the memory cache; Threads is how
many files are decoded at once while a volume loads. A key of "Viewer" wins over the same key of "WebViewer".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isengard.config import Config, ConfigError

SECTION = "Viewer"
ORTHANC_SECTION = "WebViewer"
DEFAULTS: dict[str, Any] = {"CacheSize": 1024, "Threads": 2}  # a 512x512x300 CT is 300 MB of float32
APP_KEY = "ISENGARD_VIEWER"


@dataclass(frozen=True)
class ViewerSettings:
    cache_bytes: int
    threads: int

    @classmethod
    def from_config(cls, config: Config) -> ViewerSettings:
        orthanc, own = config.dict(ORTHANC_SECTION), config.dict(SECTION)
        values = {**DEFAULTS, **{k: v for k, v in orthanc.items() if k in DEFAULTS}, **own}
        for name in DEFAULTS:
            value, minimum = values[name], 0 if name == "CacheSize" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"option {SECTION}.{name} must be an integer of at least {minimum}")
        return cls(cache_bytes=values["CacheSize"] * 1024 * 1024, threads=values["Threads"])
