"""Modification and anonymization over REST (Orthanc Book, "Anonymization and modification"), and the split and
merge of studies.

``/instances/{id}/modify`` and ``/anonymize`` answer the modified file without storing it. The same routes on
patients, studies and series, ``/tools/bulk-modify``, ``/tools/bulk-anonymize``, ``/studies/{id}/merge`` and
``/studies/{id}/split`` store the modified copies and answer what Orthanc's job reports (its Content), or
``{"ID", "Path"}`` of the job with ``"Asynchronous": true``. Every body is checked before anything is stored:
a bad one answers Orthanc's 400 and changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydicom.uid import generate_uid
from quart import Blueprint, Quart, Response

from .. import hookimpl
from ..context import ServerContext
from ..dicom import modify
from ..errors import ErrorCode, OrthancError, unknown_resource
from ..jobs.modify import JOB_TYPES, anonymized_name, request_uids, rewrite, rules, run_now, uid_map
from ..model import ResourceType, hash_identifier
from .common import answer, context, get_resource
from .jobs import job_request, submitted
from .modalities import bool_field, level_field, raw_json
from .upload import rest_origin

bp = Blueprint("modify", __name__)

#: Stands for the "AnonymizedN" name while a body is checked (the number is only taken for a valid request).
_PLACEHOLDER_NAME = "Anonymized"


async def _body() -> dict[str, Any]:
    body = await raw_json(empty={})
    if not isinstance(body, dict):
        raise modify.bad_format()
    return body


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise modify.bad_format(f"List of strings expected in field: {name}")
    return [v.strip() for v in value]


async def _plan(
    ctx: ServerContext,
    kind: str,
    body: dict[str, Any],
    level: ResourceType,
    instances: list[str],
    *,
    keep_source: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """The parameters of a request (a job's, or a synchronous run's), its body checked first."""
    params: dict[str, Any] = {
        "Kind": kind,
        "Body": body,
        "Level": int(level),
        "Instances": instances,
        "Secret": modify.UidMap.new_secret(),
        "KeepSource": keep_source,
        "Permissive": bool_field(body, "Permissive", False),
        "Origin": rest_origin(),
        **extra,
    }
    if kind == "anonymize":
        params["PatientID"] = str(uuid.uuid4())  # as Orthanc: a random UUID (fits the 64 characters of LO)
        params["PatientName"] = _PLACEHOLDER_NAME
        mod = await rules(ctx, params)
        replaced = mod.replace.get(modify.PATIENT_NAME)
        if replaced is not None and replaced.value == _PLACEHOLDER_NAME:
            params["PatientName"] = await anonymized_name(ctx)
        params["Renewable"] = None
    else:
        await rules(ctx, params)
        params["Renewable"] = await request_uids(ctx, instances, level)
    return params


def _content(kind: str, body: dict[str, Any], count: int) -> dict[str, Any]:
    content: dict[str, Any] = {"Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": count}
    if kind in ("modify", "anonymize"):
        content["IsAnonymization"] = kind == "anonymize"
        if isinstance(body.get("Transcode"), str):
            content["Transcode"] = body["Transcode"].strip()
    return content


async def _start(kind: str, body: dict[str, Any], params: dict[str, Any], content: dict[str, Any]) -> Response:
    """Run now and answer the report, or submit the job and answer where to follow it."""
    ctx = context()
    synchronous, priority = job_request(body)
    if not synchronous:
        return submitted(await ctx.jobs.submit(JOB_TYPES[kind], params, content, priority=priority))
    return answer(await run_now(ctx, params, content))


# -- one instance, answered --------------------------------------------------------------------------------------
async def _instance(public_id: str, kind: str) -> Response:
    ctx = context()
    body = await _body()
    await get_resource(ResourceType.INSTANCE, public_id)
    level = ResourceType.PATIENT if kind == "anonymize" else modify.infer_level(body)
    params = await _plan(ctx, kind, body, level, [public_id])
    mod = await rules(ctx, params)
    data = await ctx.store.read_dicom(public_id)
    modified = await asyncio.to_thread(rewrite, data, mod, uid_map(params))
    return Response(
        modified,
        content_type="application/dicom",
        headers={"Content-Disposition": f'filename="{public_id}.dcm"'},
    )


@bp.post("/instances/<public_id>/modify")
async def modify_instance(public_id: str) -> Response:
    """The instance modified, as a DICOM file (not stored)."""
    return await _instance(public_id, "modify")


@bp.post("/instances/<public_id>/anonymize")
async def anonymize_instance(public_id: str) -> Response:
    """The instance anonymized, as a DICOM file (not stored)."""
    return await _instance(public_id, "anonymize")


# -- resources, stored ---------------------------------------------------------------------------------------------
def _resource_route(level: ResourceType, kind: str) -> Callable[[str], Awaitable[Response]]:
    async def view(public_id: str) -> Response:
        ctx = context()
        body = await _body()
        await get_resource(level, public_id)
        instances = await ctx.index.instances_of(level, public_id)
        keep = bool_field(body, "KeepSource", True)
        work_level = ResourceType.PATIENT if kind == "anonymize" else level
        params = await _plan(ctx, kind, body, work_level, instances, keep_source=keep, ResourceLevel=int(level))
        return await _start(kind, body, params, _content(kind, body, len(instances)))

    view.__doc__ = f"{kind.capitalize()} every instance of the {level.label.lower()}, storing the copies."
    return view


for _level in (ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES):
    for _kind in ("modify", "anonymize"):
        bp.add_url_rule(
            f"/{_level.plural}/<public_id>/{_kind}",
            f"{_kind}_{_level.plural}",
            _resource_route(_level, _kind),
            methods=["POST"],
        )


async def _bulk(kind: str) -> Response:
    ctx = context()
    body = await _body()
    instances: dict[str, None] = {}
    for public_id in _strings(body, "Resources"):
        level = await ctx.index.lookup(public_id)
        if level is None:
            raise unknown_resource(public_id)
        instances.update(dict.fromkeys(await ctx.index.instances_of(level, public_id)))
    if kind == "anonymize":
        level = ResourceType.PATIENT
    else:
        level = level_field(body) if "Level" in body else ResourceType.INSTANCE
    keep = bool_field(body, "KeepSource", True)
    params = await _plan(ctx, kind, body, level, list(instances), keep_source=keep, Bulk=True)
    return await _start(kind, body, params, _content(kind, body, len(instances)))


@bp.post("/tools/bulk-modify")
async def bulk_modify() -> Response:
    """Modify unrelated resources ("Resources", any levels) in one request; "Level" (default Instance) is the
    level the modification works at."""
    return await _bulk("modify")


@bp.post("/tools/bulk-anonymize")
async def bulk_anonymize() -> Response:
    """Anonymize unrelated resources in one request (one new patient for all of them)."""
    return await _bulk("anonymize")


# -- split and merge -------------------------------------------------------------------------------------------
async def _study_of(ctx: ServerContext, level: ResourceType, public_id: str) -> str | None:
    while level > ResourceType.STUDY:
        found = await ctx.index.get_resources(level, [public_id])
        if not found or found[0].parent is None:
            return None
        level, public_id = ResourceType(level - 1), found[0].parent
    return public_id


@bp.post("/studies/<public_id>/split")
async def split_study(public_id: str) -> Response:
    """Move series or instances of the study into a new study (new Study, Series and SOP Instance UIDs);
    "Replace" and "Remove" change the patient and study modules of the moved instances."""
    ctx = context()
    body = await _body()
    study = await get_resource(ResourceType.STUDY, public_id)
    if "Series" not in body and "Instances" not in body:
        raise OrthancError(ErrorCode.BAD_REQUEST, 'Both the "Series" and the "Instances" fields are missing')
    instances: dict[str, None] = {}
    for level, name in ((ResourceType.SERIES, "Series"), (ResourceType.INSTANCE, "Instances")):
        for child in _strings(body, name) if name in body else []:
            if await _study_of(ctx, level, child) != public_id:
                raise OrthancError(
                    ErrorCode.UNKNOWN_RESOURCE,
                    f"This {level.label.lower()} does not belong to the study to be split: {child}",
                )
            instances.update(dict.fromkeys(await ctx.index.instances_of(level, child)))
    study_uid = generate_uid()
    replace, removed = modify.module_changes(body, "splitting")
    patient_id = study.main_tags.get("PatientID", "")
    if modify.PATIENT_ID in replace:
        patient_id = str(replace[modify.PATIENT_ID].value)
    elif modify.PATIENT_ID in removed:
        patient_id = ""
    keep = bool_field(body, "KeepSource", False)
    params = await _plan(ctx, "split", body, ResourceType.SERIES, list(instances), keep_source=keep, StudyUID=study_uid)
    content = _content("split", body, len(instances))
    content.update(TargetStudy=hash_identifier(patient_id, study_uid), TargetStudyUID=study_uid)
    return await _start("split", body, params, content)


@bp.post("/studies/<public_id>/merge")
async def merge_study(public_id: str) -> Response:
    """Move studies, series or instances of other studies into this one (new Series and SOP Instance UIDs; the
    patient and study modules of the target)."""
    ctx = context()
    body = await _body()
    await get_resource(ResourceType.STUDY, public_id)
    instances: dict[str, None] = {}
    for source in _strings(body, "Resources"):
        level = await ctx.index.lookup(source)
        if level is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot find this resource: {source}")
        if level is ResourceType.PATIENT:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE,
                f"This resource is neither a study, nor a series, nor an instance: {source} is a Patient",
            )
        if level is ResourceType.STUDY and source == public_id:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge a study into the same study: {source}")
        if level is not ResourceType.STUDY and await _study_of(ctx, level, source) == public_id:
            name = level.label.lower()
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge {name} {source} into its parent study {public_id}"
            )
        instances.update(dict.fromkeys(await ctx.index.instances_of(level, source)))
    target = (await ctx.index.instances_of(ResourceType.STUDY, public_id))[0]
    keep = bool_field(body, "KeepSource", False)
    params = await _plan(
        ctx, "merge", body, ResourceType.SERIES, list(instances), keep_source=keep, TargetInstance=target
    )
    content = _content("merge", body, len(instances))
    content["TargetStudy"] = public_id
    return await _start("merge", body, params, content)


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
