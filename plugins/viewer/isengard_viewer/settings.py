"""The "Viewer" configuration section; the "WebViewer" section of Orthanc's Web viewer plugin is read too.

Orthanc's Web viewer (Orthanc Book, plugins/webviewer.rst) has CachePath, CacheSize (MB) and Threads. Volumes are
cached in memory here, so CachePath is accepted and has no use; CacheSize bounds the memory cache; Threads is how
many files are decoded at once while a volume loads. A key of "Viewer" wins over the same key of "WebViewer".
ProgressiveSize (MB, "Viewer" only) is the volume size from which a series is shown before its volume is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isengard.config import Config, ConfigError

SECTION = "Viewer"
ORTHANC_SECTION = "WebViewer"
DEFAULTS: dict[str, Any] = {"CacheSize": 1024, "Threads": 2}  # a 512x512x300 CT is 300 MB of float32
#: Options of "Viewer" alone (Orthanc's Web viewer has no such option): a 512x512x64 CT is 64 MB.
OWN_DEFAULTS: dict[str, Any] = {"ProgressiveSize": 64}
APP_KEY = "ISENGARD_VIEWER"


@dataclass(frozen=True)
class ViewerSettings:
    cache_bytes: int
    threads: int
    progressive_bytes: int  # from this volume size on, /volume answers from the headers

    @classmethod
    def from_config(cls, config: Config) -> ViewerSettings:
        orthanc, own = config.dict(ORTHANC_SECTION), config.dict(SECTION)
        values = {**DEFAULTS, **OWN_DEFAULTS, **{k: v for k, v in orthanc.items() if k in DEFAULTS}, **own}
        for name in (*DEFAULTS, *OWN_DEFAULTS):
            value, minimum = values[name], 1 if name == "Threads" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"option {SECTION}.{name} must be an integer of at least {minimum}")
        megabyte = 1024 * 1024
        return cls(
            cache_bytes=values["CacheSize"] * megabyte,
            threads=values["Threads"],
            progressive_bytes=values["ProgressiveSize"] * megabyte,
        )
