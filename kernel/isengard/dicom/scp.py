"""The DICOM server: pynetdicom events in, kernel services and hooks out.

pynetdicom runs each association in its own thread; handlers hand the work to the server's event loop
(``run_coroutine_threadsafe``) and wait for it, so the store, the index and the hooks are the same ones the REST
API uses, and a busy association never blocks HTTP requests.

Who may do what follows Orthanc: when no DicomAlwaysAllow* option is on, only known modalities (DicomModalities,
or added over REST; from their Host with DicomCheckModalityHost) may associate at all; then each request needs
the modality's Allow* flag, or for an unknown AET the DicomAlwaysAllow* option, and the ``authorize`` hook's
consent (protocol "dicom"). A refused request is answered with a failure status (0x0124 "Refused: Not
Authorized"; see :class:`RetrieveFailed` for C-MOVE and C-GET) where Orthanc aborts the association, so the peer
learns why. Statuses otherwise are Orthanc's: 0xA700 for any failed C-STORE, success for an instance a filter
(``accept_instance``) discards, 0xC000 for a failed C-FIND. No failure of a request, expected or not, ends the
server or the association: each is logged and answered with a failure status. Storage commitment requests
(N-ACTION) and reports (N-EVENT-REPORT) are taken from known modalities only (see :mod:`.commitment`).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
from collections.abc import Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..auth import AccessRequest, is_authorized
from ..errors import InstanceDiscarded, OrthancError
from ..modalities import Modalities, Modality
from ..model import ResourceType
from ..plugins import first_replacement, resolve
from . import commitment, scu
from .network import STORAGE_SOP_CLASSES, no_delay, storage_context, unknown_storage_contexts
from .retrieve import instances_for_query, storage_contexts
from .transcode import CodecMissing, fit

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext
    from pynetdicom.transport import ThreadedAssociationServer

    from ..context import ServerContext

log = logging.getLogger("isengard.dicom")
T = TypeVar("T")

FIND_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    ModalityWorklistInformationFind,
)
MOVE_MODELS = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
GET_MODELS = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)

# DIMSE statuses (PS3.4 and PS3.7)
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700  # Orthanc's answer to every failed C-STORE
PROCESSING_FAILURE = 0x0110
UNABLE_TO_PROCESS = 0xC000

# A-ASSOCIATE-RJ: rejected permanent (1), by the service user (1), for this reason (PS3.8 9.3.4)
NO_REASON_GIVEN = 0x01
CALLING_AET_NOT_RECOGNIZED = 0x03
CALLED_AET_NOT_RECOGNIZED = 0x07

ALWAYS_ALLOW = (
    "DicomAlwaysAllowEcho",
    "DicomAlwaysAllowStore",
    "DicomAlwaysAllowFind",
    "DicomAlwaysAllowFindWorklist",
    "DicomAlwaysAllowGet",
    "DicomAlwaysAllowMove",
)


class FindAnswers(list[Dataset]):
    """C-FIND answers; ``complete`` is False when a limit left matches out (LimitFindResults).

    A ``handle_c_find`` implementation may return one; the last response then has status 0xFE00 ("matching
    terminated"), as Orthanc's, rather than success. A plain list is complete.
    """

    def __init__(self, answers: Iterable[Dataset] = (), *, complete: bool = True) -> None:
        super().__init__(answers)
        self.complete = complete


class RetrieveFailed(Exception):
    """A C-MOVE or C-GET that fails before any sub-operation: refused, or naming no stored instance.

    pynetdicom takes a C-MOVE's destination before any status, so the one way to fail first is an exception in
    the handler, which it answers with 0xC511 (C-MOVE) or 0xC411 (C-GET), "unable to process", without the
    identifier a failure status would otherwise carry. Orthanc aborts the association when refused, and answers
    0xC000 otherwise.
    """


class _NoTracebackForRetrieveFailed(logging.Filter):
    """pynetdicom logs the traceback of every exception raised by a handler; a refused retrieve is no bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], RetrieveFailed):
            record.exc_info = None
        return True


logging.getLogger("pynetdicom.service_class").addFilter(_NoTracebackForRetrieveFailed())


class DicomServer:
    def __init__(self, ctx: ServerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self.modalities = Modalities(ctx)
        config = ctx.config
        self.aet = config.str("DicomAet")
        self.check_called_aet = config.bool("DicomCheckCalledAet")
        #: As Orthanc: when no service is open to unknown AETs, only known modalities may even associate.
        self.known_peers_only = not any(config.get(option, False) for option in ALWAYS_ALLOW)
        self.settings = ctx.dicom_settings
        self._contexts: tuple[tuple[str, ...], list[PresentationContext]] | None = None
        self.ae = AE(ae_title=self.aet)
        self.ae.maximum_pdu_size = config.int("MaximumPduLength")
        # The AE's own timeouts serve the associations it requests: the C-MOVE sub-associations, which call out
        # as an SCU does. Incoming associations get DicomScpTimeout as they open (_on_connection).
        self.scp_timeout = float(config.int("DicomScpTimeout"))
        scu_timeout = float(config.int("DicomScuTimeout"))
        self.ae.network_timeout = self.ae.acse_timeout = self.ae.dimse_timeout = scu_timeout
        self.ae.connection_timeout = scu_timeout
        self.ae.maximum_associations = 64
        self.ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            # both roles: C-GET sends the instances back to the requestor on these contexts
            self.ae.add_supported_context(sop_class, self.settings.syntaxes, scu_role=True, scp_role=True)
        for model in (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS):
            self.ae.add_supported_context(model)
        # either role: a peer asks here (N-ACTION), or reports here as the SCP of an earlier request (N-EVENT-REPORT)
        self.ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        self._server: ThreadedAssociationServer | None = None

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self, host: str = "0.0.0.0") -> None:
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_N_ACTION, self._on_n_action),
            (evt.EVT_N_EVENT_REPORT, self._on_n_event_report),
        ]
        self._server = self.ae.start_server(
            (host, self.ctx.config.int("DicomPort")), block=False, evt_handlers=handlers
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- bridging to the event loop --------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @staticmethod
    def _requestor(assoc: Association) -> dict[str, str]:
        """Who is asking: the calling AET, the AET they called (not necessarily ours) and their address."""
        request = assoc.requestor.primitive
        return {
            "RemoteAET": str(assoc.requestor.ae_title).strip(),
            "CalledAET": str(request.called_ae_title if request is not None else assoc.acceptor.ae_title).strip(),
            "RemoteIP": str(assoc.requestor.address),
        }

    async def _allowed(self, requestor: dict[str, str], service: str, permission: str, always: str) -> bool:
        """Orthanc's rule: a known modality needs its Allow* flag; an unknown AET needs DicomAlwaysAllow*."""
        known = await self.modalities.by_aet(requestor["RemoteAET"], requestor["RemoteIP"])
        allowed = any(m.allows(permission) for m in known) if known else bool(self.ctx.config.get(always, False))
        if not allowed:
            log.warning("refused %s from AET %s (%s)", service, requestor["RemoteAET"], requestor["RemoteIP"])
            return False
        access = AccessRequest(
            protocol="dicom",
            method=service,
            path=requestor["CalledAET"],
            user=requestor["RemoteAET"],
            remote_ip=requestor["RemoteIP"],
        )
        if not await is_authorized(self.ctx.pm, access):
            log.warning("%s from AET %s refused by a plugin", service, requestor["RemoteAET"])
            return False
        return True

    def _check(self, event: evt.Event, service: str, permission: str, always: str) -> dict[str, str] | None:
        requestor = self._requestor(event.assoc)
        return requestor if self._run(self._allowed(requestor, service, permission, always)) else None

    # -- association negotiation -----------------------------------------------------------------------------
    def _on_connection(self, event: evt.Event) -> None:
        """An incoming association, before it reads anything: the server's timeouts, not the AE's; no Nagle."""
        assoc = event.assoc
        assoc.network_timeout = assoc.acse_timeout = assoc.dimse_timeout = self.scp_timeout
        no_delay(event)

    def _on_requested(self, event: evt.Event) -> None:
        """Before pynetdicom negotiates: Orthanc's association checks, and the contexts of unknown SOP classes."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling, called = str(request.calling_ae_title).strip(), str(request.called_ae_title).strip()
        try:
            if self.check_called_aet and not self.modalities.same_aet(called, self.aet):
                log.warning("association from %s rejected: called AET %r is not %r", calling, called, self.aet)
                self._reject(assoc, CALLED_AET_NOT_RECOGNIZED)
                return
            if self.known_peers_only and not self._run(self.modalities.by_aet(calling, assoc.requestor.address)):
                log.warning("association from unknown AET %s (%s) rejected", calling, assoc.requestor.address)
                self._reject(assoc, CALLING_AET_NOT_RECOGNIZED)
                return
            syntaxes = list(self.settings.syntaxes)
            supported = self._supported(syntaxes)
            if self.settings.unknown_sop_class_accepted:
                proposed = request.presentation_context_definition_list
                supported = [*supported, *unknown_storage_contexts(proposed, supported, syntaxes)]
            assoc.acceptor.supported_contexts = supported
        except Exception:
            log.exception("association from %s rejected: error while checking it", calling)
            self._reject(assoc, NO_REASON_GIVEN)

    def _supported(self, syntaxes: list[str]) -> list[PresentationContext]:
        """The AE's contexts, with the storage ones accepting the transfer syntaxes accepted right now."""
        key = tuple(syntaxes)
        if self._contexts is None or self._contexts[0] != key:
            storage = set(STORAGE_SOP_CLASSES)
            contexts = [
                storage_context(str(c.abstract_syntax), syntaxes) if str(c.abstract_syntax) in storage else c
                for c in self.ae.supported_contexts
            ]
            self._contexts = (key, contexts)
        return list(self._contexts[1])

    @staticmethod
    def _reject(assoc: Association, reason: int) -> None:
        assoc.acse.send_reject(0x01, 0x01, reason)
        assoc.kill()

    # -- services --------------------------------------------------------------------------------------------
    def _on_echo(self, event: evt.Event) -> int:
        try:
            allowed = self._check(event, "C-ECHO", "AllowEcho", "DicomAlwaysAllowEcho")
        except Exception:
            log.exception("C-ECHO failed")
            return UNABLE_TO_PROCESS
        return SUCCESS if allowed else NOT_AUTHORIZED

    def _on_store(self, event: evt.Event) -> int:
        try:
            requestor = self._check(event, "C-STORE", "AllowStore", "DicomAlwaysAllowStore")
            if requestor is None:
                return NOT_AUTHORIZED
            origin = {"Origin": "DicomProtocol", **requestor}
            self._run(self.ctx.store.ingest(event.encoded_dataset(), origin))
        except InstanceDiscarded as e:  # accept_instance said no: quietly (success), or with a status it chose
            log.info("C-STORE from %s discarded by a filter", event.assoc.requestor.ae_title)
            return e.dimse_status
        except OrthancError as e:
            log.warning("C-STORE from %s failed: %s", event.assoc.requestor.ae_title, e.details or e.code.message)
            return OUT_OF_RESOURCES
        except Exception:
            log.exception("C-STORE from %s failed", event.assoc.requestor.ae_title)
            return OUT_OF_RESOURCES
        return SUCCESS

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        worklist = model == ModalityWorklistInformationFind
        permission, always = (
            ("AllowFindWorklist", "DicomAlwaysAllowFindWorklist") if worklist else ("AllowFind", "DicomAlwaysAllowFind")
        )
        try:
            requestor = self._check(event, "C-FIND", permission, always)
            if requestor is None:
                yield NOT_AUTHORIZED, None
                return
            answers = self._run(self._find(event.identifier, model, requestor))
        except OrthancError as e:
            log.warning("C-FIND refused: %s", e.details or e.code.message)
            answers = None
        except Exception:
            log.exception("C-FIND failed")
            answers = None
        if answers is None:
            yield UNABLE_TO_PROCESS, None
            return
        for answer in answers:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer
        if not getattr(answers, "complete", True):
            yield CANCEL, None

    async def _find(self, query: Dataset, model: str, requestor: dict[str, str]) -> list[Dataset] | None:
        filters = self.ctx.pm.hook.filter_find_query(context=self.ctx, query=query, model=model, requestor=requestor)
        replacement = await first_replacement(filters)
        query = query if replacement is None else replacement  # (an empty Dataset is false, yet a query)
        result = self.ctx.pm.hook.handle_c_find(context=self.ctx, query=query, model=model, requestor=requestor)
        return await resolve(result)

    def _dataset(self, instance_id: str) -> Dataset:
        data = self._run(self.ctx.store.read_dicom(instance_id))
        return pydicom.dcmread(io.BytesIO(data))

    def _sub_operations(
        self, event: evt.Event, instances: list[str], sending: list[Association]
    ) -> Iterator[tuple[int, Dataset | None]]:
        """(status, dataset) for each instance to send, until the peer cancels; decompressed when the association
        they go out on (``sending``, once open) accepted no context for the stored syntax."""
        for instance_id in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                dataset = self._dataset(instance_id)
                if sending:
                    dataset = fit(sending[0], dataset)
            except CodecMissing as e:
                log.warning("instance %s cannot be sent by a %s: %s", instance_id, event.event.name, e)
                dataset = self._unsendable(instance_id)
            except Exception:
                log.exception("instance %s could not be read for a %s", instance_id, event.event.name)
                dataset = self._unsendable(instance_id)
            yield PENDING, dataset

    def _unsendable(self, instance_id: str) -> Dataset:
        """A stand-in for an instance that cannot be read: pynetdicom fails to send it (it has no SOP class), so
        the instance counts as a failed sub-operation and is named in the Failed SOP Instance UID List."""
        resources = self._run(self.ctx.index.get_resources(ResourceType.INSTANCE, [instance_id]))
        ds = Dataset()
        ds.SOPInstanceUID = resources[0].main_tags.get("SOPInstanceUID", "") if resources else ""
        return ds

    def _retrieving(self, event: evt.Event, service: str, permission: str, always: str) -> None:
        """Raise RetrieveFailed unless the requestor may C-MOVE or C-GET."""
        try:
            allowed = self._check(event, service, permission, always) is not None
        except Exception as e:
            log.exception("%s: checking the requestor failed", service)
            raise RetrieveFailed(f"{service} failed: {e}") from e
        if not allowed:
            raise RetrieveFailed(f"{service} not allowed for AET {event.assoc.requestor.ae_title}")

    def _retrieved(self, event: evt.Event, service: str) -> list[str]:
        """The instances a C-MOVE or C-GET names; raises RetrieveFailed when none is stored (as Orthanc fails)."""
        try:
            instances = self._run(instances_for_query(self.ctx, event.identifier))
        except OrthancError as e:
            raise RetrieveFailed(f"{service} failed: {e.details or e.code.message}") from None
        if not instances:
            raise RetrieveFailed(f"{service} failed: no stored instance matches the identifier")
        return instances

    def _on_move(self, event: evt.Event) -> Iterator[Any]:
        """C-MOVE: the destination, the number of sub-operations, then one (status, dataset) per instance."""
        self._retrieving(event, "C-MOVE", "AllowMove", "DicomAlwaysAllowMove")
        destination = self._run(self.modalities.by_aet(str(event.move_destination).strip()))
        if not destination:
            log.warning("C-MOVE to unknown AET %r", event.move_destination)
            return iter([(None, None)])  # pynetdicom answers 0xA801, "move destination unknown"
        instances = self._retrieved(event, "C-MOVE")
        target = destination[0]
        contexts = self._run(storage_contexts(self.ctx, instances))
        log.info("C-MOVE of %d instances to %s (%s:%d)", len(instances), target.aet, target.host, target.port)
        sending: list[Association] = []  # the sub-association, which pynetdicom opens after the first two yields
        on_established = (evt.EVT_ESTABLISHED, lambda e: sending.append(e.assoc))
        handlers = [(evt.EVT_CONN_OPEN, no_delay), on_established]
        kwargs = {"ae_title": target.aet, "contexts": contexts, "evt_handlers": handlers}
        address = (target.host, target.port, kwargs)
        return itertools.chain([address, len(instances)], self._sub_operations(event, instances, sending))

    def _on_get(self, event: evt.Event) -> Iterator[Any]:
        """C-GET: the number of sub-operations, then one (status, dataset) per instance, sent back on the
        association through the storage contexts the requestor proposed with the SCP role."""
        self._retrieving(event, "C-GET", "AllowGet", "DicomAlwaysAllowGet")
        instances = self._retrieved(event, "C-GET")
        return itertools.chain([len(instances)], self._sub_operations(event, instances, [event.assoc]))

    # -- storage commitment ------------------------------------------------------------------------------------
    async def _commitment_peer(self, requestor: dict[str, str], service: str, permission: str) -> Modality | None:
        """Storage commitment goes both ways, so known modalities only (no DicomAlwaysAllow* option applies)."""
        known = await self.modalities.by_aet(requestor["RemoteAET"], requestor["RemoteIP"])
        if not known or not await self._allowed(requestor, service, permission, always=""):
            log.warning("%s refused from AET %s", service, requestor["RemoteAET"])
            return None
        return known[0]

    def _on_n_action(self, event: evt.Event) -> tuple[int, None]:
        """A storage commitment request: answered at once; the verdict follows on an association of its own."""
        try:
            requestor = self._requestor(event.assoc)
            modality = self._run(self._commitment_peer(requestor, "N-ACTION", "AllowNAction"))
            if modality is None:
                return NOT_AUTHORIZED, None
            request = event.action_information
            uid = str(request.get("TransactionUID", ""))
            references = commitment.references_in(request)
            asyncio.run_coroutine_threadsafe(self._commit(modality, uid, references), self.loop)
        except Exception:
            log.exception("storage commitment request failed")
            return PROCESSING_FAILURE, None
        return SUCCESS, None

    async def _commit(self, modality: Modality, transaction_uid: str, references: list[commitment.Reference]) -> None:
        """Check the instances and report to the requestor (in the background: failures are only logged)."""
        try:
            success, failures = await commitment.verdict(self.ctx, references)
            log.info("storage commitment %s: %d committed, %d failed", transaction_uid, len(success), len(failures))
            peer = scu.Peer.of(self.ctx.config, modality)
            await scu.run(commitment.send_report, peer, transaction_uid, success, failures)
        except Exception as e:
            details = e.details if isinstance(e, OrthancError) else repr(e)
            log.error("storage commitment %s: the report to %s failed: %s", transaction_uid, modality.aet, details)

    def _on_n_event_report(self, event: evt.Event) -> tuple[int, None]:
        """A peer's verdict on a storage commitment request of this server's."""
        try:
            requestor = self._requestor(event.assoc)
            if self._run(self._commitment_peer(requestor, "N-EVENT-REPORT", "AllowEventReport")) is None:
                return NOT_AUTHORIZED, None
            return commitment.record(event.event_information), None
        except Exception:
            log.exception("storage commitment report failed")
            return PROCESSING_FAILURE, None
