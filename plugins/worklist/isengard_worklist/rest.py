"""/worklists: the REST API of Orthanc 1.12.10's worklists plugin, for a RIS bridge that has JSON, not files.

``POST /worklists/create`` takes ``{"Tags": {...}, "Force": false}`` with tags as /tools/create-dicom takes them
(keywords or "gggg,eeee", sequences as lists of objects) and answers ``{"ID", "Path"}``; ``GET /worklists`` lists
every worklist served (files of the folder included) as ``{"ID", "Tags"}`` (plus "CreationDate" for those kept in
the index), the tags in simplified JSON unless ``?format=`` says otherwise; ``GET``, ``PUT`` (same body as create)
and ``DELETE /worklists/{id}`` read, replace and remove one. Errors are Orthanc's (400 "Bad file format" for a
body it refuses, 404 for an unknown worklist).
"""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from quart import Blueprint, current_app, request

from isengard.dicom.create import CreationRequest, check_encoding, inject_tags
from isengard.dicom.json import JsonFormat, dataset_to_json
from isengard.errors import ErrorCode, OrthancError
from isengard.rest.common import answer

from .settings import APP_KEY, WorklistSettings
from .store import WorklistStore

bp = Blueprint("worklists", __name__)
#: What a worklist created over REST is written in, unless its Tags say otherwise.
DEFAULT_CHARACTER_SET = "ISO_IR 192"


def _server() -> tuple[WorklistSettings, WorklistStore]:
    return current_app.config[APP_KEY]


def _shown(worklist_id: str, ds: Dataset) -> dict[str, Any]:
    """A worklist as Orthanc's plugin shows it: its tags in the format asked (``?format=``, simplified JSON by
    default)."""
    return {"ID": worklist_id, "Tags": dataset_to_json(ds, JsonFormat.from_args(request.args, JsonFormat.SIMPLIFY))}


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


async def _worklist_from_body(settings: WorklistSettings) -> Dataset:
    """The worklist a body describes, checked as Orthanc checks it: a scheduled step with a Modality and a start
    date, unless "Force" is true."""
    try:
        body = json.loads(await request.get_data())
    except (ValueError, UnicodeDecodeError):
        raise _bad("A JSON payload was expected") from None
    tags = body.get("Tags") if isinstance(body, dict) else None
    if not isinstance(tags, dict):
        raise _bad("'Tags' field is missing or not a JSON object")
    charset = tags.get("SpecificCharacterSet", DEFAULT_CHARACTER_SET)
    if not isinstance(charset, str):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "SpecificCharacterSet must be a string")
    ds = Dataset()
    ds.SpecificCharacterSet = check_encoding(charset)
    inject_tags(ds, tags, CreationRequest(tags=tags, encoding=charset, force=True))
    if body.get("Force") is not True:
        bypass = "Use 'Force': true to bypass this check."
        steps = ds.get("ScheduledProcedureStepSequence")
        if steps is None:
            raise _bad(f"'Tags' is missing a 'ScheduledProcedureStepSequence'. {bypass}")
        for keyword in ("Modality", "ScheduledProcedureStepStartDate"):
            if not steps or keyword not in steps[0]:
                raise _bad(f"'ScheduledProcedureStepSequence' is missing a '{keyword}'. {bypass}")
    if settings.set_study_instance_uid and "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    return ds


@bp.post("/worklists/create")
async def create() -> Any:
    settings, store = _server()
    worklist_id = await store.put(await _worklist_from_body(settings))
    return answer({"ID": worklist_id, "Path": f"/worklists/{worklist_id}"})


@bp.get("/worklists")
async def list_worklists() -> Any:
    store = _server()[1]
    created = await store.creation_dates()
    shown = []
    for worklist_id, ds in (await store.all()).items():
        entry = _shown(worklist_id, ds)
        if worklist_id in created:
            entry["CreationDate"] = created[worklist_id]
        shown.append(entry)
    return answer(shown)


@bp.get("/worklists/<worklist_id>")
async def get_worklist(worklist_id: str) -> Any:
    return answer(_shown(worklist_id, await _server()[1].get(worklist_id)))


@bp.put("/worklists/<worklist_id>")
async def replace_worklist(worklist_id: str) -> Any:
    settings, store = _server()
    await store.get(worklist_id)  # 404 for an unknown one
    await store.put(await _worklist_from_body(settings), worklist_id)
    return answer({"ID": worklist_id, "Path": f"/worklists/{worklist_id}"})


@bp.delete("/worklists/<worklist_id>")
async def delete_worklist(worklist_id: str) -> Any:
    await _server()[1].delete(worklist_id)
    return answer({})
