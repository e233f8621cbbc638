"""Storage commitment over REST: ask a modality whether it keeps instances, read its answer, and delete here what
it committed to (Orthanc's /modalities/{id}/storage-commitment and /storage-commitment/{id} routes)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Quart, Response

from .. import hookimpl
from ..context import ServerContext
from ..dicom import commitment
from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .common import answer, context
from .modalities import _instances_of, bad_body, peer_for, raw_json

bp = Blueprint("commitment", __name__)


def _dicom_instance(entry: Any) -> commitment.Reference:
    """One entry of DicomInstances: {"SOPClassUID": ..., "SOPInstanceUID": ...} or [class, instance]."""
    if isinstance(entry, dict):
        entry = [entry.get("SOPClassUID"), entry.get("SOPInstanceUID")]
    if not isinstance(entry, list) or len(entry) != 2 or not all(isinstance(v, str) for v in entry):
        raise bad_body(
            'Each entry of "DicomInstances" is {"SOPClassUID": ..., "SOPInstanceUID": ...} or [class, instance]'
        )
    return entry[0], entry[1]


@bp.post("/modalities/<name>/storage-commitment")
async def request_commitment(name: str) -> Response:
    """Ask the modality whether it stores the given resources or instances (storage commitment SCU)."""
    ctx = context()
    body = await raw_json()
    if not isinstance(body, dict):
        raise bad_body('Must provide a JSON object with "Resources" or "DicomInstances"')
    resources, instances = body.get("Resources"), body.get("DicomInstances")
    if resources is None and instances is None:
        raise bad_body('Empty storage commitment request: give "Resources" or "DicomInstances"')
    if not isinstance(resources or [], list) or not isinstance(instances or [], list):
        raise bad_body('"Resources" and "DicomInstances" must be lists')
    references = await commitment.references_of(ctx, await _instances_of(ctx, resources or []))
    references += [_dicom_instance(entry) for entry in instances or []]
    transaction_uid = await commitment.start(await peer_for(name, body), references)
    return answer({"ID": transaction_uid, "Path": f"/storage-commitment/{transaction_uid}"})


def _report(transaction_uid: str) -> commitment.Report:
    report = commitment.REPORTS.get(transaction_uid)
    if report is None:
        details = f"No storage commitment transaction with UID: {transaction_uid}"
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, details)
    return report


@bp.get("/storage-commitment/<transaction_uid>")
async def get_report(transaction_uid: str) -> Response:
    """The peer's answer to a storage commitment request of this server: Pending, Success or Failure."""
    return answer(_report(transaction_uid).to_json())


@bp.post("/storage-commitment/<transaction_uid>/remove")
async def remove_committed(transaction_uid: str) -> Response:
    """Delete here the instances a peer committed to, once its report is a Success."""
    ctx = context()
    report = _report(transaction_uid)
    if report.status != "Success":
        details = f"Cannot remove the instances of a storage commitment that did not succeed: {transaction_uid}"
        raise OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, details, http_status=500)
    for public_id in await commitment.instances_committed(ctx, report):
        await ctx.store.delete(ResourceType.INSTANCE, public_id)
    return answer({})


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
