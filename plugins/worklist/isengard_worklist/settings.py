"""The "Worklists" configuration section, with the option names of Orthanc's worklists plugin (Orthanc Book,
plugins/worklists-plugin.rst): Enable, Database (the folder of .wl files; "Directory" is the name Orthanc 1.12.10
gave it, read too), FilterIssuerAet, LimitAnswers, SetStudyInstanceUidIfMissing. SaveInOrthancDatabase is
accepted and changes nothing: without a folder, worklists always live in the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isengard.config import Config, ConfigError

SECTION = "Worklists"
DEFAULTS: dict[str, Any] = {
    "Enable": False,
    "Database": "",
    "FilterIssuerAet": False,
    "LimitAnswers": 0,
    "SetStudyInstanceUidIfMissing": True,
    "SaveInOrthancDatabase": False,
}
APP_KEY = "ISENGARD_WORKLISTS"


@dataclass(frozen=True)
class WorklistSettings:
    enable: bool
    database: Path | None  # None: worklists live in the index only
    filter_issuer_aet: bool
    limit_answers: int  # 0: no limit
    set_study_instance_uid: bool  # worklists created over REST get one when their tags lack it

    @classmethod
    def from_config(cls, config: Config) -> WorklistSettings:
        section = config.get(SECTION) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"option {SECTION!r} must be a JSON object")
        values = {**DEFAULTS, **section}
        if not values["Database"] and isinstance(section.get("Directory"), str):
            values["Database"] = section["Directory"]
        for name, default in DEFAULTS.items():
            if type(values[name]) is not type(default):
                raise ConfigError(f"option {SECTION}.{name} must be of type {type(default).__name__}")
        if values["LimitAnswers"] < 0:
            raise ConfigError(f"option {SECTION}.LimitAnswers must not be negative")
        database = Path(values["Database"]).expanduser() if values["Database"] else None
        if database is not None and not database.is_absolute() and config.source:
            base = Path(config.source)  # relative to the configuration file's folder, as the kernel's paths
            database = (base if base.is_dir() else base.parent) / database
        return cls(
            enable=values["Enable"],
            database=database,
            filter_issuer_aet=values["FilterIssuerAet"],
            limit_answers=values["LimitAnswers"],
            set_study_instance_uid=values["SetStudyInstanceUidIfMissing"],
        )
