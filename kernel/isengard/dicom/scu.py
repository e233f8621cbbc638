"""The DICOM client: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET towards a peer, as the REST API asks for them.

pynetdicom blocks, so every operation runs in a thread of this module's own pool: a C-MOVE towards this very
server waits for C-STOREs that the DICOM server hands to the event loop, and those need the loop's default
executor free (store.ingest parses in it); sharing that executor could deadlock under load.

Every wait on the peer (TCP connection, association, each DIMSE answer, network silence) is bounded by the
peer's timeout, so a request never hangs longer than that without progress. C-STORE associations stay open for
DicomAssociationCloseDelay seconds after use (see :mod:`.pool`), and their silence may last that much longer.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import decode, encode
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .network import UNCOMPRESSED, no_delay
from .pool import POOL
from .retrieve import MAX_CONTEXTS
from .tags import IDENTIFIER_TAGS
from .transcode import CodecMissing, fit

if TYPE_CHECKING:
    from ..config import Config
    from ..modalities import Modality

T = TypeVar("T")

#: Operations at once; more wait for a thread (each is short-lived, and bounded by its timeout).
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="isengard-scu")

#: The value of QueryRetrieveLevel for each level.
LEVEL_NAMES = {
    ResourceType.PATIENT: "PATIENT",
    ResourceType.STUDY: "STUDY",
    ResourceType.SERIES: "SERIES",
    ResourceType.INSTANCE: "IMAGE",
}
#: The keys a C-FIND may use at each level (PS3.4 C.6.1.1 tables, as Orthanc restricts normalized queries).
QUERY_KEYS: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.PATIENT: (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "OtherPatientIDs",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    ResourceType.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "StudyDescription",
        "NameOfPhysiciansReadingStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    ResourceType.SERIES: (
        "SeriesDate",
        "SeriesTime",
        "Modality",
        "SeriesDescription",
        "OperatorsName",
        "BodyPartExamined",
        "ProtocolName",
        "SeriesInstanceUID",
        "SeriesNumber",
        "Laterality",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepDescription",
    ),
    ResourceType.INSTANCE: (
        "InstanceCreationDate",
        "InstanceCreationTime",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
    ),
}
#: Keys always returned: the unique keys down to the level, and the accession number below the patient.
_ALWAYS = {
    ResourceType.PATIENT: ("PatientID",),
    ResourceType.STUDY: ("AccessionNumber", "PatientID", "StudyInstanceUID"),
    ResourceType.SERIES: ("AccessionNumber", "PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    ResourceType.INSTANCE: (
        "AccessionNumber",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ),
}
_NUMERIC = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}
_OK = (0x0000, 0xB000)  # success, and "sub-operations complete, one or more failures" (a warning)
_PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class Peer:
    """Where to connect, as whom, how long to wait for each answer, and to keep a C-STORE association idle."""

    aet: str
    host: str
    port: int
    local_aet: str
    timeout: float
    max_pdu: int
    close_delay: float = 0.0

    @classmethod
    def of(cls, config: Config, modality: Modality, *, local_aet: str = "", timeout: int = 0) -> Peer:
        """The modality's LocalAet wins over the request's; the request's Timeout over the modality's."""
        return cls(
            aet=modality.aet,
            host=modality.host,
            port=modality.port,
            local_aet=modality.local_aet or local_aet or config.str("DicomAet"),
            timeout=float(timeout or modality.timeout or config.int("DicomScuTimeout")),
            max_pdu=config.int("MaximumPduLength"),
            close_delay=float(config.int("DicomAssociationCloseDelay")),
        )


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking operation of this module in its thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))


def network_error(details: str, *, http_status: int = 500) -> OrthancError:
    return OrthancError(ErrorCode.NETWORK_PROTOCOL, details, http_status=http_status)


def _failed(operation: str, peer: Peer, status: Dataset | None) -> OrthancError:
    if not status or "Status" not in status:  # pynetdicom's sign of an abort or a DIMSE timeout
        return network_error(f'{operation} SCU to AET "{peer.aet}" got no answer (timeout or abort)')
    code = int(status.Status)
    if 0xC000 <= code <= 0xCFFF:  # "unable to process": the peer refused what was asked
        details = f'{operation} SCU to AET "{peer.aet}" has failed with DIMSE status 0x{code:04X} (unable to process)'
        return network_error(details, http_status=422)
    return network_error(f'{operation} SCU to AET "{peer.aet}" has failed with DIMSE status 0x{code:04X}')


def _connect(
    peer: Peer,
    contexts: list[PresentationContext],
    *,
    ext_neg: list[Any] | None = None,
    handlers: list[Any] | None = None,
    idle: float = 0.0,
) -> Association:
    """An established association (that may stay ``idle`` seconds between two requests without being aborted);
    Orthanc's NetworkProtocol error when it cannot be."""
    ae = AE(ae_title=peer.local_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = peer.timeout
    ae.network_timeout = peer.timeout + idle
    ae.maximum_pdu_size = peer.max_pdu
    connected: list[bool] = []
    events = [(evt.EVT_CONN_OPEN, lambda event: connected.append(True)), (evt.EVT_CONN_OPEN, no_delay)]
    events += handlers or []
    assoc = ae.associate(
        peer.host,
        peer.port,
        contexts,
        ae_title=peer.aet,
        max_pdu=peer.max_pdu,
        ext_neg=ext_neg,
        evt_handlers=events,
    )
    if not assoc.is_established:
        if not connected:
            reason = f"TCP Initialization Error: cannot connect to {peer.host}:{peer.port}"
        elif assoc.is_rejected:
            reason = "the association was rejected"
        elif getattr(assoc.acceptor.primitive, "result", None) == 0:  # accepted, but none of the contexts
            reason = "the remote AET supports none of the requested services"
        else:
            reason = "no answer to the association request (timeout or abort)"
        raise network_error(f'DicomAssociation - connecting to AET "{peer.aet}": {reason}')
    return assoc


@contextmanager
def _unsupported_as_errors(peer: Peer) -> Iterator[None]:
    try:
        yield
    except ValueError as e:
        if "presentation context" not in str(e):
            raise
        # pynetdicom: the peer accepted no presentation context for what was asked
        raise network_error(f'The remote AET "{peer.aet}" does not support this operation: {e}') from None


@contextmanager
def associate(
    peer: Peer,
    contexts: list[PresentationContext],
    *,
    ext_neg: list[Any] | None = None,
    handlers: list[Any] | None = None,
) -> Iterator[Association]:
    """An established association, released on exit; Orthanc's NetworkProtocol error when it cannot be."""
    assoc = _connect(peer, contexts, ext_neg=ext_neg, handlers=handlers)
    try:
        with _unsupported_as_errors(peer):
            yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


@contextmanager
def _store_association(peer: Peer, contexts: list[PresentationContext]) -> Iterator[Association]:
    """An association for C-STOREs: an idle one left by an earlier request with the same peer and contexts, or a
    new one; kept for the peer's close delay afterwards, unless the request failed (then released at once)."""
    if peer.close_delay <= 0:
        with associate(peer, contexts) as assoc:
            yield assoc
        return
    key = (peer, tuple((str(c.abstract_syntax), tuple(map(str, c.transfer_syntax))) for c in contexts))
    assoc = POOL.take(key) or _connect(peer, contexts, idle=peer.close_delay)
    try:
        with _unsupported_as_errors(peer):
            yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.release()
        raise
    POOL.give_back(key, assoc, peer.close_delay)


# -- identifiers -----------------------------------------------------------------------------------------------
def _element_value(keyword: str, vr: str, text: str) -> Any:
    if not text:
        return None
    cast = _NUMERIC.get(vr)
    if cast is None:
        return text
    try:
        values = [cast(v) for v in text.split("\\")]
    except ValueError:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Not a number in a {vr} element: {keyword}={text!r}") from None
    return values[0] if len(values) == 1 else values


def _set(ds: Dataset, keyword: str, text: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    vr = dictionary_VR(tag)
    ds.add_new(tag, vr, _element_value(keyword, vr, text))


def _fill(ds: Dataset, values: Mapping[str, Any]) -> Dataset:
    for keyword, value in values.items():
        if isinstance(value, list):  # a sequence: a list of items, each keywords to values
            tag = tag_for_keyword(keyword)
            assert tag is not None, keyword
            ds.add_new(tag, "SQ", [_fill(Dataset(), item) for item in value])
        else:
            _set(ds, keyword, value)
    return ds


def dataset_of(values: Mapping[str, Any]) -> Dataset:
    """Keywords and their text values (or lists of items, for sequences) as a UTF-8 dataset."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    return _fill(ds, values)


def find_identifier(level: ResourceType, query: dict[str, str], *, normalize: bool = True) -> Dataset:
    """A C-FIND identifier: the query (keywords to values), plus the keys every answer needs.

    ``normalize`` drops what a peer may not accept at this level: keys of lower levels, and non-key attributes.
    """
    allowed = {k for lv in ResourceType if lv <= level for k in QUERY_KEYS[lv]}
    ds = dataset_of({k: v for k, v in query.items() if not normalize or k in allowed})
    ds.QueryRetrieveLevel = LEVEL_NAMES[level]
    for keyword in _ALWAYS[level]:
        if keyword not in ds:
            _set(ds, keyword, "")
    return ds


def retrieve_keys(level: ResourceType) -> list[str]:
    """The unique keys a C-MOVE or C-GET identifier carries (no patient ID below the patient: study root)."""
    if level is ResourceType.PATIENT:
        return [IDENTIFIER_TAGS[ResourceType.PATIENT]]
    return [IDENTIFIER_TAGS[lv] for lv in ResourceType if ResourceType.STUDY <= lv <= level]


def retrieve_identifier(level: ResourceType, values: dict[str, str]) -> Dataset:
    ds = dataset_of({k: values.get(k, "") for k in retrieve_keys(level)})
    ds.QueryRetrieveLevel = LEVEL_NAMES[level]
    return ds


def pack(ds: Dataset) -> bytes:
    """A dataset as bytes to keep (explicit VR little endian), as the peer encoded its values."""
    return bytes(encode(ds, False, True))


def unpack(data: bytes) -> Dataset:
    return decode(io.BytesIO(data), False, True)


# -- operations (blocking: call them through run()) ------------------------------------------------------------
def echo(peer: Peer, *, check_find: bool = False) -> None:
    """C-ECHO; with ``check_find``, also a C-FIND that must not be refused (does the peer know us?)."""
    contexts = [build_context(Verification)]
    if check_find:
        contexts.append(build_context(StudyRootQueryRetrieveInformationModelFind))
    with associate(peer, contexts) as assoc:
        status = assoc.send_c_echo()
        if not status or status.get("Status") != 0:
            raise _failed("C-ECHO", peer, status)
        if check_find:
            probe = find_identifier(ResourceType.STUDY, {"StudyInstanceUID": "1.2.3.4.5.6.7.8.9"})
            _collect_find(assoc, peer, probe, StudyRootQueryRetrieveInformationModelFind)


def file_contexts(sop_class: str, transfer_syntax: str) -> list[PresentationContext]:
    """Send a file as it is: a context for its own syntax, one for the uncompressed ones pynetdicom converts to."""
    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    own = [] if transfer_syntax in uncompressed else [build_context(sop_class, [transfer_syntax])]
    return [*own, build_context(sop_class, uncompressed)]


def _send(assoc: Association, ds: Dataset, originator_aet: str | None, originator_id: int | None) -> Dataset:
    """C-STORE a file as it is; decompressed when the peer accepted none of its compressed syntax's contexts."""
    return assoc.send_c_store(fit(assoc, ds), originator_aet=originator_aet, originator_id=originator_id)


@dataclass
class StoreReport:
    sent: int = 0
    failed: int = 0


def store(
    peer: Peer,
    batches: Iterable[tuple[list[PresentationContext], list[str]]],
    load: Callable[[str], Dataset],
    *,
    originator: tuple[str, int] | None = None,
    permissive: bool = False,
    on_sent: Callable[[str, Dataset], None] | None = None,
) -> StoreReport:
    """C-STORE each batch of instances over one association proposing the batch's contexts.

    ``load`` reads an instance; a refused instance fails the whole request unless ``permissive``. Associations
    are reused from, and left to, the pool of idle ones when the peer has a close delay.
    """
    report = StoreReport()
    originator_aet, originator_id = originator or (None, None)
    for contexts, instance_ids in batches:
        with _store_association(peer, contexts) as assoc:
            for instance_id in instance_ids:
                ds = load(instance_id)
                try:
                    status = _send(assoc, ds, originator_aet, originator_id)
                except CodecMissing as e:
                    if not permissive:
                        details = f'C-STORE SCU to AET "{peer.aet}", instance {ds.get("SOPInstanceUID", "")}: {e}'
                        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, details) from None
                    report.failed += 1
                    continue
                except (ValueError, RuntimeError, NotImplementedError) as e:  # no way to send this file
                    if not permissive:
                        raise network_error(f'C-STORE SCU to AET "{peer.aet}": {e}') from None
                    report.failed += 1
                    continue
                if not status or "Status" not in status:
                    raise _failed("C-STORE", peer, status)
                if int(status.Status) not in (0x0000, 0xB000, 0xB006, 0xB007):
                    if not permissive:
                        raise _failed("C-STORE", peer, status)
                    report.failed += 1
                    continue
                report.sent += 1
                if on_sent is not None:
                    on_sent(instance_id, ds)
    return report


def _find_model(level: ResourceType) -> str:
    if level is ResourceType.PATIENT:
        return PatientRootQueryRetrieveInformationModelFind
    return StudyRootQueryRetrieveInformationModelFind


def _collect_find(assoc: Association, peer: Peer, identifier: Dataset, model: str) -> list[Dataset]:
    answers: list[Dataset] = []
    for status, answer in assoc.send_c_find(identifier, model):
        code = status.get("Status") if status else None
        if code in _PENDING and answer is not None:
            answers.append(answer)
        elif code != 0x0000:
            raise _failed("C-FIND", peer, status)
    return answers


def find(peer: Peer, level: ResourceType, identifier: Dataset) -> list[Dataset]:
    """C-FIND (patient root at the patient level, study root below): the answers, in the peer's order."""
    model = _find_model(level)
    with associate(peer, [build_context(model)]) as assoc:
        return _collect_find(assoc, peer, identifier, model)


def find_worklist(peer: Peer, identifier: Dataset) -> list[Dataset]:
    """C-FIND in the peer's modality worklist."""
    with associate(peer, [build_context(ModalityWorklistInformationFind)]) as assoc:
        return _collect_find(assoc, peer, identifier, ModalityWorklistInformationFind)


def _final_status(
    operation: str,
    peer: Peer,
    responses: Iterable[tuple[Dataset, Dataset | None]],
    on_pending: Callable[[Dataset], None] | None = None,
) -> Dataset:
    final = None
    for status, _ in responses:
        if not status or "Status" not in status:
            raise _failed(operation, peer, status)
        final = status
        if int(status.Status) not in _PENDING:
            break
        if on_pending is not None:
            on_pending(status)
    if final is None or int(final.Status) not in _OK:
        raise _failed(operation, peer, final)
    return final


def move(peer: Peer, level: ResourceType, identifiers: list[Dataset], target_aet: str) -> None:
    """C-MOVE each identifier to ``target_aet``, one after the other over one association."""
    patient = level is ResourceType.PATIENT
    model = PatientRootQueryRetrieveInformationModelMove if patient else StudyRootQueryRetrieveInformationModelMove
    with associate(peer, [build_context(model)]) as assoc:
        for identifier in identifiers:
            _final_status("C-MOVE", peer, assoc.send_c_move(identifier, target_aet, model))


def _classes_to_get(peer: Peer, level: ResourceType, identifiers: list[Dataset]) -> list[str]:
    """The SOP classes a C-GET will bring, asked beforehand with an instance-level C-FIND; [] if unknown."""
    classes: set[str] = set()
    try:
        for identifier in identifiers:
            probe = dataset_of({k: str(identifier.get(k, "")) for k in (*retrieve_keys(level), "SOPClassUID")})
            probe.QueryRetrieveLevel = LEVEL_NAMES[ResourceType.INSTANCE]
            model_level = ResourceType.PATIENT if level is ResourceType.PATIENT else ResourceType.INSTANCE
            classes |= {str(a.get("SOPClassUID", "")) for a in find(peer, model_level, probe)}
    except OrthancError:
        return []
    return [] if "" in classes else sorted(classes)


def _get_contexts(classes: list[str], transfer_syntaxes: list[str]) -> list[PresentationContext]:
    """One context per class for the uncompressed syntaxes, then one per compressed syntax while they fit.

    A context settles on one transfer syntax, and a peer sends a file as it is stored (or transcoded, if it
    can): known classes get a context for each syntax the file may come in, in this server's order.
    """
    budget = MAX_CONTEXTS - 1  # the C-GET model takes one
    uncompressed = [s for s in transfer_syntaxes if s in UNCOMPRESSED]
    compressed = [s for s in transfer_syntaxes if s not in UNCOMPRESSED]
    contexts = [build_context(c, uncompressed) for c in classes[:budget]]
    per_class = (budget - len(contexts)) // max(1, len(classes))
    for sop_class in classes:
        contexts += [build_context(sop_class, [s]) for s in compressed[:per_class]]
    return contexts


def get(
    peer: Peer,
    level: ResourceType,
    identifiers: list[Dataset],
    transfer_syntaxes: list[str],
    receive: Callable[[bytes], int],
    progress: Callable[[float], None] | None = None,
) -> None:
    """C-GET each identifier; ``receive`` gets each file the peer sends back and answers a C-STORE status;
    ``progress`` (0..1 of the whole) follows the peer's counts of sub-operations, as a job's progress does.

    The association proposes, with this side as their SCP, the storage classes a C-FIND says will come, in every
    transfer syntax this server accepts; when the peer does not tell, pynetdicom's common storage classes,
    uncompressed (what a peer that transcodes sends).
    """
    patient = level is ResourceType.PATIENT
    model = PatientRootQueryRetrieveInformationModelGet if patient else StudyRootQueryRetrieveInformationModelGet
    classes = _classes_to_get(peer, level, identifiers) or [c.abstract_syntax for c in StoragePresentationContexts]
    storage = _get_contexts(classes, transfer_syntaxes)
    roles = [build_role(c, scp_role=True) for c in classes]

    def on_store(event: evt.Event) -> int:
        return receive(bytes(event.encoded_dataset()))

    with associate(peer, [build_context(model), *storage], ext_neg=roles, handlers=[(evt.EVT_C_STORE, on_store)]) as a:
        for position, identifier in enumerate(identifiers):
            _final_status("C-GET", peer, a.send_c_get(identifier, model), _share(position, len(identifiers), progress))


def _share(position: int, count: int, progress: Callable[[float], None] | None) -> Callable[[Dataset], None] | None:
    """The ``on_pending`` of one of ``count`` retrievals: its sub-operations done, as a share of the whole."""
    if progress is None:
        return None
    report = progress

    def on_pending(status: Dataset) -> None:
        counts = [int(status.get(f"Number{k}Suboperations", 0) or 0) for k in ("OfCompleted", "OfFailed", "OfWarning")]
        remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
        done = sum(counts)
        report((position + (done / (done + remaining) if done + remaining else 0)) / count)

    return on_pending
