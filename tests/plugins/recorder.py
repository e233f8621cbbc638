"""A test plugin: records every event it receives to a JSON-lines file, refuses what it is told to refuse.

Configured with {"Recorder": {"Path": "...", "DenyPath": "/forbidden", "RejectModality": "XA"}}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isengard import hookimpl
from isengard.model import ResourceType

_settings: dict[str, Any] = {}


def _write(record: dict[str, Any]) -> None:
    with open(_settings["Path"], "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {"Recorder": {"Path": "events.jsonl", "DenyPath": "", "RejectModality": ""}}


@hookimpl
def startup(context: Any) -> None:
    _settings.update(context.config.dict("Recorder"))
    Path(_settings["Path"]).touch()
    _write({"event": "startup"})


@hookimpl
def on_change(change: Any) -> None:
    _write({"event": "change", **change.to_json()})


@hookimpl
async def on_stored(instance_id: str, origin: dict[str, str]) -> None:
    _write({"event": "stored", "id": instance_id, "origin": origin.get("Origin")})


@hookimpl
def on_deleted(level: Any, public_id: str) -> None:
    _write({"event": "deleted", "level": level.label, "id": public_id})


@hookimpl
def on_stable(level: Any, public_id: str) -> None:
    _write({"event": "stable", "level": level.label, "id": public_id})


@hookimpl
def authorize(request: Any) -> bool | None:
    deny = _settings.get("DenyPath")
    return False if deny and request.path.startswith(deny) else None


@hookimpl
def accept_instance(instance: Any) -> bool | None:
    modality = _settings.get("RejectModality")
    return False if modality and instance.main_tags[ResourceType.SERIES].get("Modality") == modality else None
