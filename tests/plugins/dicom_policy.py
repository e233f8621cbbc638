"""A test plugin for the DICOM server: records the DIMSE requests ``authorize`` is asked about, refuses C-STORE
from one AET, and fails on purpose (exceptions) when a request names the patient "RAISE".

Configured with {"DicomPolicy": {"Path": "requests.jsonl", "RefuseStoreFrom": "BLOCKED"}}.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from isengard import hookimpl
from isengard.model import ResourceType

_settings: dict[str, Any] = {}
FAILING_PATIENT = "RAISE"


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {"DicomPolicy": {"Path": "requests.jsonl", "RefuseStoreFrom": ""}}


@hookimpl
def startup(context: Any) -> None:
    _settings.update(context.config.dict("DicomPolicy"))


@hookimpl
def authorize(request: Any) -> bool | None:
    if request.protocol != "dicom":
        return None
    with open(_settings["Path"], "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(request)) + "\n")
    if request.user == FAILING_PATIENT:
        raise RuntimeError("authorize failed on purpose")
    refused = _settings.get("RefuseStoreFrom")
    return False if request.method == "C-STORE" and request.user == refused else None


@hookimpl
def accept_instance(instance: Any) -> bool | None:
    if instance.main_tags[ResourceType.PATIENT].get("PatientID") == FAILING_PATIENT:
        raise RuntimeError("accept_instance failed on purpose")
    return None


@hookimpl(tryfirst=True)
def handle_c_find(query: Any) -> list[Any] | None:
    if str(query.get("PatientID", "")) == FAILING_PATIENT:
        raise RuntimeError("handle_c_find failed on purpose")
    return None
