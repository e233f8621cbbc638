"""Modified copies of stored instances, stored back: the "ResourceModification", "MergeStudy" and "SplitStudy"
jobs, and the synchronous requests, which run the same code within the request.

One instance at a time: its file is read, modified in a worker thread (:func:`isengard.dicom.modify.apply`) and
ingested, so a study of any size never sits in memory. The parameters say what to do (the request's body, the
instances in order, the secret of the UID map, the new patient identity of an anonymization); the checkpoint
says how far the work went, so a paused or interrupted job goes on with the next instance. As in Orthanc, the new
resources get ModifiedFrom or AnonymizedFrom metadata naming the originals, and ``KeepSource: false`` deletes
the originals once all of them are copied.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import hookimpl
from ..dicom import modify
from ..dicom.imaging import open_dataset
from ..dicom.transcode import lossy_quality, write
from ..errors import ErrorCode, OrthancError
from ..model import ChangeType, MetadataType, ResourceType
from .run import JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

MODIFICATION, MERGE, SPLIT = "ResourceModification", "MergeStudy", "SplitStudy"
JOB_TYPES = {"modify": MODIFICATION, "anonymize": MODIFICATION, "merge": MERGE, "split": SPLIT}
#: The change logged on the new resource of a single-resource request (Orthanc's ModifiedStudy, ...).
_CHANGES = {
    (False, ResourceType.PATIENT): ChangeType.MODIFIED_PATIENT,
    (False, ResourceType.STUDY): ChangeType.MODIFIED_STUDY,
    (False, ResourceType.SERIES): ChangeType.MODIFIED_SERIES,
    (True, ResourceType.PATIENT): ChangeType.ANONYMIZED_PATIENT,
    (True, ResourceType.STUDY): ChangeType.ANONYMIZED_STUDY,
    (True, ResourceType.SERIES): ChangeType.ANONYMIZED_SERIES,
}
#: Index property holding the last number given to an "AnonymizedN" patient name.
ANONYMIZATION_SEQUENCE = "AnonymizationSequence"
_sequence_lock = asyncio.Lock()

Step = Callable[[float], Awaitable[None]]


async def anonymized_name(ctx: ServerContext) -> str:
    """Orthanc's name for an anonymized patient: "Anonymized" and a number that grows with each request."""
    async with _sequence_lock:
        number = int(await ctx.index.get_property(ANONYMIZATION_SEQUENCE) or 0) + 1
        await ctx.index.set_property(ANONYMIZATION_SEQUENCE, str(number))
    return f"Anonymized{number}"


async def rules(ctx: ServerContext, params: dict[str, Any]) -> modify.Modification:
    """The :class:`Modification` of a request, from its parameters (raises Orthanc's errors for a bad body)."""
    kind, body = params["Kind"], params["Body"]
    quality = lossy_quality(ctx.config)
    if kind == "modify":
        return modify.parse_modification(body, ResourceType(params["Level"]), default_quality=quality)
    if kind == "anonymize":
        return modify.parse_anonymization(
            body, patient_id=params["PatientID"], patient_name=params["PatientName"], default_quality=quality
        )
    mod = modify.Modification(ResourceType.SERIES)
    if kind == "split":
        replace, remove = modify.module_changes(body, "splitting")
        for tag in remove:
            mod.do_remove(tag)
        for tag, elem in replace.items():
            mod.do_replace(tag, elem)
        mod.do_replace(modify.STUDY_UID, modify.make_element(modify.STUDY_UID, params["StudyUID"]))
        return mod
    # merge: the patient and study modules become the target study's, including what it lacks
    target, _ = await ctx.store.read_header(params["TargetInstance"])
    for tag in sorted(modify.PATIENT_STUDY_MODULES):
        if tag in target:
            mod.do_replace(tag, copy.deepcopy(target[tag]))
        elif tag not in modify.IDENTIFIERS.values():
            mod.do_remove(tag)
    return mod


def uid_map(params: dict[str, Any]) -> modify.UidMap:
    """The request's UID map: its secret, and the UIDs its references may be renewed to (None: all)."""
    renewable = params.get("Renewable")
    return modify.UidMap(params["Secret"], None if renewable is None else frozenset(renewable))


def rewrite(data: bytes, mod: modify.Modification, uids: modify.UidMap) -> bytes:
    """One file modified (in a worker thread: parsing, writing and transcoding are CPU work)."""
    ds = open_dataset(data)
    modify.apply(ds, mod, uids)
    try:
        return write(ds)
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Cannot write the modified DICOM file: {e}") from None


async def request_uids(ctx: ServerContext, instances: list[str], level: ResourceType) -> list[str]:
    """The identifiers a modification at ``level`` renews, read from the index: references to them (in
    sequences) are renewed too, other references are left alone."""
    found = await ctx.index.get_resources(ResourceType.INSTANCE, instances)
    uids = {r.main_tags.get("SOPInstanceUID", "") for r in found}
    parents = {r.parent for r in found if r.parent}
    for parent_level in (ResourceType.SERIES, ResourceType.STUDY):
        resources = await ctx.index.get_resources(parent_level, sorted(parents))
        if parent_level >= level:
            key = "SeriesInstanceUID" if parent_level is ResourceType.SERIES else "StudyInstanceUID"
            uids |= {r.main_tags.get(key, "") for r in resources}
        parents = {r.parent for r in resources if r.parent}
    return sorted(u for u in uids if u)


class Modifier:
    """The run of one request: what the job and the synchronous route both execute."""

    def __init__(self, ctx: ServerContext, params: dict[str, Any], checkpoint: dict[str, Any], content: dict[str, Any]):
        self.ctx, self.params, self.checkpoint, self.content = ctx, params, checkpoint, content
        self.metadata = MetadataType.ANONYMIZED_FROM if params["Kind"] == "anonymize" else MetadataType.MODIFIED_FROM
        self._parents: dict[str, str | None] = {}
        self._marked: set[str] = set()

    async def run(self, step: Step) -> dict[str, Any]:
        ctx, params, checkpoint = self.ctx, self.params, self.checkpoint
        mod = await rules(ctx, params)
        uids = uid_map(params)
        instances: list[str] = params["Instances"]
        failed: list[str] = checkpoint.setdefault("Failed", [])
        unchanged: list[str] = checkpoint.setdefault("Unchanged", [])
        for position in range(checkpoint.get("Position", 0), len(instances)):
            await step(position / max(1, len(instances)))
            original = instances[position]
            try:
                new = await self._copy(original, mod, uids)
            except OrthancError:
                if not params.get("Permissive", False):
                    raise
                failed.append(original)
            else:
                if new[ResourceType.INSTANCE] == original:
                    unchanged.append(original)
                await self._record(original, new)
            checkpoint["Position"] = position + 1
            self.content["FailedInstancesCount"] = len(failed)
        if not params["KeepSource"]:
            await self._delete_sources(set(failed) | set(unchanged))
        await self._finish()
        return self.content

    async def _copy(self, original: str, mod: modify.Modification, uids: modify.UidMap) -> dict[ResourceType, str]:
        data = await self.ctx.store.read_dicom(original)
        modified = await asyncio.to_thread(rewrite, data, mod, uids)
        result = await self.ctx.store.ingest(modified, self.params["Origin"])
        return result.instance.identifiers.public_ids()

    async def _original_ids(self, instance: str) -> dict[ResourceType, str | None]:
        """The original's id at each level (parents cached: the instances of a request share them)."""
        ids: dict[ResourceType, str | None] = {ResourceType.INSTANCE: instance}
        current: str | None = instance
        for level in (ResourceType.INSTANCE, ResourceType.SERIES, ResourceType.STUDY):
            if current is not None and current not in self._parents:
                found = await self.ctx.index.get_resources(level, [current])
                self._parents[current] = found[0].parent if found else None
            current = self._parents.get(current) if current is not None else None
            ids[ResourceType(level - 1)] = current
        return ids

    async def _record(self, original: str, new: dict[ResourceType, str]) -> None:
        """ModifiedFrom/AnonymizedFrom on the copy and its new parents; the answer's resources."""
        ctx = self.ctx
        originals = await self._original_ids(original)
        for level, public_id in new.items():
            source = originals.get(level)
            if source is None or source == public_id or public_id in self._marked:
                continue
            if level is not ResourceType.INSTANCE:
                self._marked.add(public_id)
            _, change = await ctx.index.set_metadata(level, public_id, self.metadata, source, expected_revision=None)
            ctx.events.publish("on_change", context=ctx, change=change)
        level = self.params.get("ResourceLevel")
        if level is not None and "ID" not in self.content:
            self.checkpoint["Result"] = [new[ResourceType(level)], new[ResourceType.PATIENT]]
        if self.params.get("Bulk"):
            created = self.checkpoint.setdefault("Created", {})
            for lv, public_id in new.items():
                known = created.setdefault(lv.label, [])
                if public_id not in known:
                    known.append(public_id)

    async def _delete_sources(self, kept: set[str]) -> None:
        for original in self.params["Instances"]:
            if original in kept:
                continue
            try:
                await self.ctx.store.delete(ResourceType.INSTANCE, original)
            except OrthancError as e:  # deleted by an earlier run of this job, or meanwhile
                if e.code is not ErrorCode.UNKNOWN_RESOURCE:
                    raise

    async def _finish(self) -> None:
        """The answer's fields that are only known at the end."""
        ctx, content = self.ctx, self.content
        result = self.checkpoint.get("Result")
        level = self.params.get("ResourceLevel")
        if result is not None and level is not None:
            level = ResourceType(level)
            content.update(ID=result[0], Path=f"/{level.plural}/{result[0]}", PatientID=result[1], Type=level.label)
            change = _CHANGES.get((self.params["Kind"] == "anonymize", level))
            if change is not None:
                logged = await ctx.index.log_change(change, level, result[0])
                ctx.events.publish("on_change", context=ctx, change=logged)
        if self.params.get("Bulk"):
            created = self.checkpoint.get("Created", {})
            content["Resources"] = [
                {"ID": public_id, "Path": f"/{lv.plural}/{public_id}", "Type": lv.label}
                for lv in reversed(ResourceType)
                for public_id in sorted(created.get(lv.label, []))
            ]
        ordered = sorted(content.items())  # Orthanc's (alphabetical) order
        content.clear()
        content.update(ordered)


async def run_job(job: JobRun) -> None:
    async def step(progress: float) -> None:
        await job.step(progress)

    await Modifier(job.context, job.parameters, job.checkpoint, job.content).run(step)


async def run_now(ctx: ServerContext, params: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """A synchronous request: the job's work within the request, answering the job's Content."""

    async def step(_: float) -> None:
        return None

    return await Modifier(ctx, params, {}, content).run(step)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {name: JobType(run_job) for name in (MODIFICATION, MERGE, SPLIT)}
