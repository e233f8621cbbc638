"""What the DICOM server and client negotiate: transfer syntaxes (Orthanc's switches) and storage SOP classes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    UID_dictionary,
)
from pynetdicom import AllStoragePresentationContexts, evt, register_uid
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from ..config import Config
from ..query import wildcard_regex

#: In order of preference when a peer proposes several in one context (the acceptor's order decides), as DCMTK
#: and Orthanc: explicit VR first, implicit last.
UNCOMPRESSED = [ExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian]

#: Orthanc's switches and the transfer syntaxes each one admits.
SWITCHES: dict[str, list[str]] = {
    "DeflatedTransferSyntaxAccepted": [DeflatedExplicitVRLittleEndian],
    "JpegTransferSyntaxAccepted": [JPEGBaseline8Bit, JPEGExtended12Bit],
    "JpegLosslessTransferSyntaxAccepted": [JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless],
    "Jpeg2000TransferSyntaxAccepted": [JPEG2000Lossless, JPEG2000],
    "RleTransferSyntaxAccepted": [RLELossless],
    "JpipTransferSyntaxAccepted": ["1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"],
    "Mpeg2TransferSyntaxAccepted": ["1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"],
    "Mpeg4TransferSyntaxAccepted": [
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
    ],
    "H265TransferSyntaxAccepted": ["1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"],
}


#: Every transfer syntax this server can name: pydicom's list, and the switches' (JPIP...).
KNOWN_TRANSFER_SYNTAXES: list[str] = sorted(
    {str(u) for u in AllTransferSyntaxes}
    | {str(u) for uids in SWITCHES.values() for u in uids}
    | {str(u) for u in UNCOMPRESSED}
)


def matching_syntaxes(patterns: Iterable[str]) -> list[str]:
    """The known transfer syntaxes matching Orthanc-style patterns ("1.2.840.10008.1.2.4.*"), in order of
    preference: the uncompressed ones first, as :data:`UNCOMPRESSED`, then by UID."""
    wanted = [wildcard_regex(p.strip()) for p in patterns]
    found = {uid for uid in KNOWN_TRANSFER_SYNTAXES if any(w.fullmatch(uid) for w in wanted)}
    return [str(u) for u in UNCOMPRESSED if str(u) in found] + sorted(found - {str(u) for u in UNCOMPRESSED})


def accepted_transfer_syntaxes(config: Config) -> list[str]:
    """AcceptedTransferSyntaxes (every DICOM syntax by default), less the families a switch turns off."""
    patterns = config.get("AcceptedTransferSyntaxes") or ["1.2.840.10008.1.*"]
    refused = {str(u) for switch, uids in SWITCHES.items() if not config.get(switch, True) for u in uids}
    return [uid for uid in matching_syntaxes(patterns) if uid not in refused]


@dataclass
class DicomSettings:
    """What the DICOM server accepts, changeable at run time (/tools/accepted-transfer-syntaxes,
    /tools/unknown-sop-class-accepted) and read at each new association; per process, as in Orthanc."""

    syntaxes: list[str]
    unknown_sop_class_accepted: bool

    @classmethod
    def from_config(cls, config: Config) -> DicomSettings:
        return cls(accepted_transfer_syntaxes(config), bool(config.get("UnknownSopClassAccepted", False)))


def no_delay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: TCP_NODELAY on the association's socket, client or server side.

    With Nagle's algorithm on, the last small segment of a PDU waits for the peer's delayed ACK: about 40 ms per
    DIMSE message on Linux, against a peer that leaves it on too (Debian's DCMTK, hence its Orthanc and storescp).
    Upstream DCMTK turns it off as well.
    """
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_registering = threading.Lock()


def register_storage_class(uid: str) -> None:
    """Make pynetdicom route C-STORE requests of a SOP class it does not know to its storage service.

    Without it pynetdicom aborts the association on the first such request, even on an accepted context.
    Registrations last as long as the process.
    """
    with _registering:
        if uid_to_service_class(uid) is ServiceClass:
            register_uid(uid, "Storage_" + uid.replace(".", "_"), StorageServiceClass)


def _storage_sop_classes() -> list[str]:
    """pynetdicom's storage SOP classes, plus the retired and newer ones of pydicom's dictionary.

    DCMTK (so Orthanc) accepts the retired ones too: old devices still write Ultrasound Image Storage (Retired).
    """
    known = [str(c.abstract_syntax) for c in AllStoragePresentationContexts]
    extra = [
        uid
        for uid, (name, kind, *_) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name and "Directory" not in name
    ]
    for uid in extra:
        register_storage_class(uid)
    return list(dict.fromkeys([*known, *sorted(extra)]))


#: The SOP classes the DICOM server accepts in C-STORE (and sends back in C-GET).
STORAGE_SOP_CLASSES: list[str] = _storage_sop_classes()


def storage_context(sop_class: str, syntaxes: list[str]) -> PresentationContext:
    """A supported context whose SCP/SCU roles let C-GET send the instances back on the same association."""
    context = build_context(sop_class, syntaxes)
    context.scu_role = True
    context.scp_role = True
    return context


def unknown_storage_contexts(
    requested: Iterable[PresentationContext], supported: Iterable[PresentationContext], syntaxes: list[str]
) -> list[PresentationContext]:
    """Contexts accepting the requested abstract syntaxes nothing supports yet (UnknownSopClassAccepted).

    As DCMTK's "promiscuous" mode, which Orthanc uses: an abstract syntax that is not known to belong to another
    service is taken for a storage SOP class. pynetdicom has no wildcard context, so each one is added to this
    association's supported contexts before negotiation (in EVT_REQUESTED) and registered as a storage class.
    """
    have = {str(c.abstract_syntax) for c in supported}
    added: list[PresentationContext] = []
    for proposed in requested:
        uid = str(proposed.abstract_syntax)
        if uid in have or uid_to_service_class(uid) not in (ServiceClass, StorageServiceClass):
            continue
        register_storage_class(uid)
        have.add(uid)
        added.append(storage_context(uid, syntaxes))
    return added
