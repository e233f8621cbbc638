"""Storage commitment, Push Model (PS3.4 Annex J): does a peer take responsibility for instances it was sent?

Both directions are asynchronous, as Orthanc and most implementations are: the requestor's N-ACTION is answered
at once, and the verdict comes later in an N-EVENT-REPORT that the SCP sends on an association of its own to
the requestor's DICOM server (so each side must know the other as a modality). This module holds the datasets,
the verdict from the index, the reports of the requests this server made, and the two blocking network calls
(run them through :func:`.scu.run`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import build_context, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

from ..model import MetadataType, ResourceType
from ..query import ConstraintKind, FindQuery, TagConstraint
from .scu import Peer, associate, network_error, run

if TYPE_CHECKING:
    from ..context import ServerContext

#: A reference to an instance: (SOP Class UID, SOP Instance UID).
Reference = tuple[str, str]

#: Failure Reasons (PS3.3 C.14.1.1) and their meaning.
NO_SUCH_OBJECT = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
FAILURE_REASONS = {
    0x0110: "A general failure in processing the operation was encountered",
    NO_SUCH_OBJECT: "One or more of the elements in the Referenced SOP Instance Sequence was not available",
    CLASS_INSTANCE_CONFLICT: (
        "The SOP Class of an element in the Referenced SOP Instance Sequence did not correspond to the SOP class "
        "registered for this SOP Instance at the SCP"
    ),
    0x0122: "Storage Commitment has been requested for a SOP Instance with a SOP Class that is not supported",
    0x0131: "The Transaction UID of the Storage Commitment Request is already in use",
    0x0213: "The SCP does not currently have enough resources to store the requested SOP Instance(s)",
}
#: N-ACTION Action Type ID and N-EVENT-REPORT Event Type IDs of the Push Model.
REQUEST_ACTION = 1
ALL_COMMITTED, SOME_FAILED = 1, 2


@dataclass
class Report:
    """What a peer answered to one of this server's requests: Pending until its N-EVENT-REPORT comes."""

    remote_aet: str
    status: str = "Pending"
    success: list[Reference] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        failures = [
            {
                "Description": FAILURE_REASONS.get(reason, "Unknown failure reason"),
                "FailureReason": reason,
                "SOPClassUID": sop_class,
                "SOPInstanceUID": sop_instance,
            }
            for sop_class, sop_instance, reason in self.failures
        ]
        success = [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in self.success]
        return {"Failures": failures, "RemoteAET": self.remote_aet, "Status": self.status, "Success": success}


class Reports:
    """The latest reports by Transaction UID, in memory (as Orthanc: they do not survive a restart)."""

    def __init__(self, capacity: int = 100) -> None:
        self._lock = threading.Lock()
        self._reports: OrderedDict[str, Report] = OrderedDict()
        self._capacity = capacity

    def add(self, transaction_uid: str, report: Report) -> None:
        with self._lock:
            self._reports[transaction_uid] = report
            while len(self._reports) > self._capacity:
                self._reports.popitem(last=False)

    def get(self, transaction_uid: str) -> Report | None:
        with self._lock:
            return self._reports.get(transaction_uid)

    def discard(self, transaction_uid: str) -> None:
        with self._lock:
            self._reports.pop(transaction_uid, None)

    def complete(self, transaction_uid: str, success: list[Reference], failures: list[tuple[str, str, int]]) -> bool:
        """Record a peer's verdict; False for a transaction this server did not ask about (or forgot)."""
        with self._lock:
            report = self._reports.get(transaction_uid)
            if report is None:
                return False
            report.success, report.failures = success, failures
            report.status = "Failure" if failures else "Success"
            return True


REPORTS = Reports()


# -- datasets --------------------------------------------------------------------------------------------------
def _item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def request_dataset(transaction_uid: str, references: list[Reference]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = [_item(*ref) for ref in references]
    return ds


def report_dataset(transaction_uid: str, success: list[Reference], failures: list[tuple[str, str, int]]) -> Dataset:
    ds = request_dataset(transaction_uid, success)
    if failures:
        ds.FailedSOPSequence = [_item(c, i) for c, i, _ in failures]
        for item, (_, _, reason) in zip(ds.FailedSOPSequence, failures, strict=True):
            item.FailureReason = reason
    return ds


def references_in(ds: Dataset | None) -> list[Reference]:
    """The (class, instance) pairs of a request's or report's Referenced SOP Sequence."""
    items = ds.get("ReferencedSOPSequence", []) if ds is not None else []
    return [(str(i.get("ReferencedSOPClassUID", "")), str(i.get("ReferencedSOPInstanceUID", ""))) for i in items]


def failures_in(ds: Dataset | None) -> list[tuple[str, str, int]]:
    items = ds.get("FailedSOPSequence", []) if ds is not None else []
    return [
        (
            str(i.get("ReferencedSOPClassUID", "")),
            str(i.get("ReferencedSOPInstanceUID", "")),
            int(i.get("FailureReason", 0x0110)),
        )
        for i in items
    ]


# -- the SCP's verdict -----------------------------------------------------------------------------------------
async def verdict(
    ctx: ServerContext, references: list[Reference]
) -> tuple[list[Reference], list[tuple[str, str, int]]]:
    """Which referenced instances this server stores, with the SOP class it was asked about; the others failed."""
    uids = tuple(sorted({instance for _, instance in references if instance}))
    stored: dict[str, str] = {}
    if uids:
        constraint = TagConstraint("SOPInstanceUID", ResourceType.INSTANCE, ConstraintKind.LIST, uids)
        ids = await ctx.index.find(FindQuery(ResourceType.INSTANCE, [constraint]))
        for resource in await ctx.index.get_resources(ResourceType.INSTANCE, ids):
            stored[resource.main_tags.get("SOPInstanceUID", "")] = resource.metadata.get(MetadataType.SOP_CLASS_UID, "")
    success: list[Reference] = []
    failures: list[tuple[str, str, int]] = []
    for sop_class, sop_instance in references:
        if sop_instance not in stored:
            failures.append((sop_class, sop_instance, NO_SUCH_OBJECT))
        elif stored[sop_instance] != sop_class:
            failures.append((sop_class, sop_instance, CLASS_INSTANCE_CONFLICT))
        else:
            success.append((sop_class, sop_instance))
    return success, failures


async def references_of(ctx: ServerContext, instance_ids: list[str]) -> list[Reference]:
    """The (class, instance) UIDs of stored instances, in the order given."""
    found = {r.public_id: r for r in await ctx.index.get_resources(ResourceType.INSTANCE, instance_ids)}
    return [
        (found[i].metadata.get(MetadataType.SOP_CLASS_UID, ""), found[i].main_tags.get("SOPInstanceUID", ""))
        for i in instance_ids
        if i in found
    ]


async def instances_committed(ctx: ServerContext, report: Report) -> list[str]:
    """The public IDs of the instances a successful report names (what /storage-commitment/{id}/remove deletes)."""
    uids = tuple(sorted({instance for _, instance in report.success}))
    if not uids:
        return []
    constraint = TagConstraint("SOPInstanceUID", ResourceType.INSTANCE, ConstraintKind.LIST, uids)
    return await ctx.index.find(FindQuery(ResourceType.INSTANCE, [constraint]))


# -- network (blocking) ----------------------------------------------------------------------------------------
def request(peer: Peer, transaction_uid: str, references: list[Reference]) -> None:
    """N-ACTION "Request Storage Commitment"; the verdict comes later (see :data:`REPORTS`).

    A peer may send its N-EVENT-REPORT on this very association before it is released: it is taken too.
    """

    def on_report(event: evt.Event) -> tuple[int, None]:
        return record(event.event_information), None

    with associate(
        peer, [build_context(StorageCommitmentPushModel)], handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    ) as assoc:
        status, _ = assoc.send_n_action(
            request_dataset(transaction_uid, references),
            REQUEST_ACTION,
            StorageCommitmentPushModel,
            StorageCommitmentPushModelInstance,
        )
    code = int(status.get("Status", -1)) if status else -1
    if code != 0x0000:
        details = "no answer (timeout or abort)" if code < 0 else f"DIMSE status 0x{code:04X}"
        raise network_error(f'Storage commitment SCU to AET "{peer.aet}" has failed: {details}')


def send_report(
    peer: Peer, transaction_uid: str, success: list[Reference], failures: list[tuple[str, str, int]]
) -> None:
    """N-EVENT-REPORT of a verdict to the requestor, on a new association where this side is the SCP."""
    context = build_context(StorageCommitmentPushModel)
    role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    with associate(peer, [context], ext_neg=[role]) as assoc:
        status, _ = assoc.send_n_event_report(
            report_dataset(transaction_uid, success, failures),
            SOME_FAILED if failures else ALL_COMMITTED,
            StorageCommitmentPushModel,
            StorageCommitmentPushModelInstance,
        )
    code = int(status.get("Status", -1)) if status else -1
    if code != 0x0000:
        details = "no answer (timeout or abort)" if code < 0 else f"DIMSE status 0x{code:04X}"
        raise network_error(f'Storage commitment report to AET "{peer.aet}" has failed: {details}')


async def start(peer: Peer, references: list[Reference]) -> str:
    """Send a storage commitment request; its Transaction UID, under which the peer's verdict will be kept."""
    transaction_uid = generate_uid(prefix=None)  # "2.25." and a random number
    REPORTS.add(transaction_uid, Report(peer.aet))  # before asking: the verdict may come before the answer
    try:
        await run(request, peer, transaction_uid, references)
    except Exception:
        REPORTS.discard(transaction_uid)
        raise
    return transaction_uid


def record(report: Dataset | None) -> int:
    """Take a peer's N-EVENT-REPORT dataset into :data:`REPORTS`; the DIMSE status to answer it with."""
    uid = str(report.get("TransactionUID", "")) if report is not None else ""
    REPORTS.complete(uid, references_in(report), failures_in(report))
    return 0x0000  # a report about a transaction this server forgot is no error of the peer's
