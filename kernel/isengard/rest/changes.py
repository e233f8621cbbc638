"""/changes and /exports: the logs clients poll to follow what happens in the store."""

from __future__ import annotations

from quart import Blueprint, Quart, Response

from .. import hookimpl
from ..context import ServerContext
from .common import answer, context, flag, int_arg, text_answer

bp = Blueprint("changes", __name__)

MAX_LIMIT = 10000


@bp.get("/changes")
async def changes() -> Response:
    """Changes after ``since`` (at most ``limit``, 100 by default); ``?last`` for the latest only."""
    index = context().index
    if flag("last"):
        last = await index.last_change()
        return answer({"Changes": [last.to_json()] if last else [], "Done": True, "Last": last.seq if last else 0})
    since = int_arg("since", 0) or 0
    limit = min(int_arg("limit", 100) or 0, MAX_LIMIT)
    items, done, last_seq = await index.get_changes(since, limit)
    last = items[-1].seq if items else last_seq
    return answer({"Changes": [c.to_json() for c in items], "Done": done, "Last": last})


@bp.delete("/changes")
async def clear_changes() -> Response:
    """Empty the change log."""
    await context().index.clear_changes()
    return text_answer("")


@bp.get("/exports")
async def exports() -> Response:
    """Resources sent to modalities or peers, when LogExportedResources is on."""
    index = context().index
    since = int_arg("since", 0) or 0
    limit = min(int_arg("limit", 100) or 0, MAX_LIMIT)
    items, done, last_seq = await index.get_exports(since, limit)
    body = [
        {
            "Date": e.date,
            "ID": e.public_id,
            "Path": f"/{e.level.plural}/{e.public_id}",
            "PatientID": e.patient_id,
            "RemoteModality": e.remote_modality,
            "ResourceType": e.level.label,
            "Seq": e.seq,
            **({"StudyInstanceUID": e.study_uid} if e.study_uid else {}),
            **({"SeriesInstanceUID": e.series_uid} if e.series_uid else {}),
            **({"SOPInstanceUID": e.sop_uid} if e.sop_uid else {}),
        }
        for e in items
    ]
    return answer({"Done": done, "Exports": body, "Last": items[-1].seq if items else last_seq})


@bp.delete("/exports")
async def clear_exports() -> Response:
    """Empty the export log."""
    await context().index.clear_exports()
    return text_answer("")


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
