"""The "DicomWeb" section of the configuration, with the option names and defaults of Orthanc's DICOMweb plugin.

The Orthanc Book ("DICOMweb plugin", server-related options) lists them. A configuration file that sets only
part of the section keeps the defaults of the rest, as Orthanc does: the section is merged option by option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quart import current_app, request

from isengard.config import Config, ConfigError

SECTION = "DicomWeb"
#: Where the settings live on the Quart application, for the views.
APP_KEY = "ISENGARD_DICOMWEB"

DEFAULTS: dict[str, Any] = {
    "Enable": True,
    "Root": "/dicom-web/",
    "EnableWado": True,
    "WadoRoot": "/wado",
    "Ssl": False,
    "QidoCaseSensitive": True,
    "Host": "",
    "StudiesMetadata": "Full",
    "SeriesMetadata": "Full",
    "EnableMetadataCache": True,  # Orthanc's plugin 1.15: full metadata of series kept as attachments
    "Servers": {},  # the client's remote servers: read by servers.py, type-checked here at start-up
}
#: How /metadata of a study or series is made: every file read ("Full"), or the index alone ("MainDicomTags").
#: Orthanc's "Extrapolate" (a few files read) is read as "Full", which is exact and no slower here.
METADATA_MODES = ("Full", "MainDicomTags", "Extrapolate")


@dataclass(frozen=True)
class DicomWebSettings:
    enable: bool
    root: str  # always "/.../" (leading and trailing slash)
    enable_wado: bool
    wado_root: str
    ssl: bool
    qido_case_sensitive: bool
    host: str
    studies_metadata: str
    series_metadata: str
    enable_metadata_cache: bool

    @classmethod
    def from_config(cls, config: Config) -> DicomWebSettings:
        section = config.get(SECTION) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"option {SECTION!r} must be a JSON object")
        values = {**DEFAULTS, **section}
        for name, default in DEFAULTS.items():
            if type(values[name]) is not type(default):
                raise ConfigError(f"option {SECTION}.{name} must be of type {type(default).__name__}")
        for name in ("StudiesMetadata", "SeriesMetadata"):
            if values[name] not in METADATA_MODES:
                raise ConfigError(f"option {SECTION}.{name} must be one of {', '.join(METADATA_MODES)}")
        root = "/" + values["Root"].strip("/") + "/" if values["Root"].strip("/") else "/"
        return cls(
            enable=values["Enable"],
            root=root,
            enable_wado=values["EnableWado"],
            wado_root="/" + values["WadoRoot"].strip("/"),
            ssl=values["Ssl"],
            qido_case_sensitive=values["QidoCaseSensitive"],
            host=values["Host"],
            studies_metadata=values["StudiesMetadata"],
            series_metadata=values["SeriesMetadata"],
            enable_metadata_cache=values["EnableMetadataCache"],
        )


def settings() -> DicomWebSettings:
    return current_app.config[APP_KEY]


def public_root() -> str:
    """The absolute URL of Root as the client reached it: RetrieveURL and BulkDataURI values start with it.

    Orthanc's rule: the ``Host`` option when set (with ``Ssl`` for the scheme), else the ``Forwarded`` header a
    reverse proxy adds (RFC 7239 ``host=`` and ``proto=``), else the request's own Host header.
    """
    current = settings()
    if current.host:
        return f"{'https' if current.ssl else 'http'}://{current.host}{current.root}"
    host, scheme = request.host, ("https" if current.ssl else request.scheme)
    forwarded = request.headers.get("Forwarded", "")
    for pair in forwarded.split(",")[0].split(";"):
        name, _, value = pair.strip().partition("=")
        if name.lower() == "host" and value:
            host = value.strip('"')
        elif name.lower() == "proto" and value:
            scheme = value.strip('"')
    return f"{scheme}://{host}{current.root}"
