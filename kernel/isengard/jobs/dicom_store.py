"""C-STORE of stored instances to a modality: the "DicomModalityStore" job, and the sending both it and the
synchronous /modalities/{id}/store use.

The job's parameters hold the peer and the instances in sending order (grouped by SOP class, as the associations
group them); its checkpoint, how many of them are done and how many failed, so a paused or interrupted job goes
on with the next instance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom.presentation import PresentationContext

from .. import hookimpl
from ..dicom import scu
from ..dicom.retrieve import storage_contexts
from ..errors import unknown_resource
from ..model import ExportedResource, MetadataType, ResourceType, now_iso
from .run import JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

JOB_TYPE = "DicomModalityStore"


async def _groups(ctx: ServerContext, instances: list[str]) -> tuple[list[list[str]], list[str]]:
    """Instances grouped by SOP class into associations of at most 128 presentation contexts each, and the
    instances the index no longer knows."""
    by_class: dict[str, list[str]] = {}
    syntaxes: dict[str, set[str]] = {}
    found = await ctx.index.get_resources(ResourceType.INSTANCE, instances)
    for resource in found:
        sop_class = resource.metadata.get(MetadataType.SOP_CLASS_UID, "")
        by_class.setdefault(sop_class, []).append(resource.public_id)
        syntaxes.setdefault(sop_class, set()).add(resource.metadata.get(MetadataType.TRANSFER_SYNTAX, ""))
    groups: list[list[str]] = [[]]
    used = 0
    for sop_class, ids in sorted(by_class.items()):
        needed = 1 + len(syntaxes[sop_class])  # an upper bound: one context per syntax, one uncompressed
        if groups[-1] and used + needed > 128:
            groups.append([])
            used = 0
        groups[-1] += ids
        used += needed
    known = {r.public_id for r in found}
    return [g for g in groups if g], [i for i in instances if i not in known]


async def sending_order(ctx: ServerContext, instances: list[str]) -> list[str]:
    """The order in which the instances are sent (any suffix of it is sent in the same order)."""
    groups, _ = await _groups(ctx, instances)
    return [instance for group in groups for instance in group]


def _exporter(ctx: ServerContext, name: str, loop: asyncio.AbstractEventLoop) -> Callable[[str, Dataset], None]:
    """Records each sent instance in /exports (LogExportedResources), from the sending thread."""

    def log(instance_id: str, ds: Dataset) -> None:
        record = ExportedResource(
            seq=0,
            level=ResourceType.INSTANCE,
            public_id=instance_id,
            remote_modality=name,
            date=now_iso(),
            patient_id=str(ds.get("PatientID", "")),
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_uid=str(ds.get("SOPInstanceUID", "")),
        )
        asyncio.run_coroutine_threadsafe(ctx.index.log_export(record), loop).result()

    return log


async def send(
    ctx: ServerContext,
    peer: scu.Peer,
    modality: str,
    instances: list[str],
    *,
    originator: tuple[str, int] | None = None,
    permissive: bool = False,
    before_each: Callable[[str], None] | None = None,
    after_each: Callable[[str], None] | None = None,
) -> scu.StoreReport:
    """C-STORE the instances (known to the index) to ``modality``, each file as it is stored.

    ``before_each`` and ``after_each`` are called from the sending thread, before an instance is read and after
    it was accepted; ``before_each`` may raise to stop (the association is then released).
    """
    loop = asyncio.get_running_loop()
    export = _exporter(ctx, modality, loop) if ctx.config.bool("LogExportedResources") else None

    def load(instance_id: str) -> Dataset:
        if before_each is not None:
            before_each(instance_id)
        data = asyncio.run_coroutine_threadsafe(ctx.store.read_dicom(instance_id), loop).result()
        return pydicom.dcmread(io.BytesIO(data), force=True)

    def sent(instance_id: str, ds: Dataset) -> None:
        if export is not None:
            export(instance_id, ds)
        if after_each is not None:
            after_each(instance_id)

    groups, _ = await _groups(ctx, instances)
    batches: list[tuple[list[PresentationContext], list[str]]] = [
        (await storage_contexts(ctx, group), group) for group in groups
    ]
    return await scu.run(scu.store, peer, batches, load, originator=originator, permissive=permissive, on_sent=sent)


def store_content(
    peer: scu.Peer, resources: list[str], count: int, originator: tuple[str, int] | None
) -> dict[str, Any]:
    """Orthanc's report of a C-STORE request (the synchronous answer, and the job's Content)."""
    out: dict[str, Any] = {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": count,
        "LocalAet": peer.local_aet,
        "RemoteAet": peer.aet,
    }
    if resources:
        out["ParentResources"] = resources
    if originator is not None:
        out["MoveOriginatorAET"], out["MoveOriginatorID"] = originator
    return dict(sorted(out.items()))


def job_parameters(
    peer: scu.Peer, modality: str, ordered: list[str], originator: tuple[str, int] | None, permissive: bool
) -> dict[str, Any]:
    return {
        "Peer": dataclasses.asdict(peer),
        "Modality": modality,
        "Instances": ordered,
        "Originator": list(originator) if originator else None,
        "Permissive": permissive,
    }


async def run_job(job: JobRun) -> None:
    params = job.parameters
    ctx = job.context
    ordered: list[str] = params["Instances"]
    position = {instance: i for i, instance in enumerate(ordered)}
    start = job.checkpoint.get("Position", 0)
    failed_before = job.checkpoint.get("Failed", 0)
    remaining = ordered[start:]
    permissive = params["Permissive"]
    _, missing = await _groups(ctx, remaining)
    if missing and not permissive:
        raise unknown_resource(missing[0])
    sent = 0

    def account(done: int) -> None:
        """``done`` instances of the whole job are behind us: sent, refused or gone."""
        failed = failed_before + (done - start) - sent
        job.checkpoint.update(Position=done, Failed=failed)
        job.content["FailedInstancesCount"] = failed

    account(start)

    def before_each(instance_id: str) -> None:
        done = position[instance_id]
        account(done)
        job.step_from_thread(done / len(ordered))

    def after_each(_: str) -> None:
        nonlocal sent
        sent += 1

    originator = params["Originator"]
    await send(
        ctx,
        scu.Peer(**params["Peer"]),
        params["Modality"],
        remaining,
        originator=(originator[0], originator[1]) if originator else None,
        permissive=permissive,
        before_each=before_each,
        after_each=after_each,
    )
    account(len(ordered))


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {JOB_TYPE: JobType(run_job)}
