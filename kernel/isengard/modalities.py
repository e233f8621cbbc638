"""Known DICOM peers: the DicomModalities option, plus those added over REST (kept in the index, so every
server on one database sees them and a restart loses none).

Definitions are read as Orthanc reads them (two spellings, the same defaults, the same error messages), and
shown as Orthanc shows them, every field present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode, OrthancError
from .registry import Registry

if TYPE_CHECKING:
    from .context import ServerContext

PERMISSIONS = (
    "AllowEcho",
    "AllowEventReport",
    "AllowFind",
    "AllowFindWorklist",
    "AllowGet",
    "AllowMove",
    "AllowNAction",
    "AllowStore",
    "AllowTranscoding",
)
#: Orthanc's manufacturers, and the retired names it still reads (as the behaviour that replaced them).
MANUFACTURERS = {
    "Generic": "Generic",
    "GenericNoWildcardInDates": "GenericNoWildcardInDates",
    "GenericNoUniversalWildcard": "GenericNoUniversalWildcard",
    "Vitrea": "Vitrea",
    "GE": "GE",
    "ClearCanvas": "Generic",
    "Dcm4Chee": "Generic",
    "EFilm2": "Generic",
    "MedInria": "Generic",
    "SyngoVia": "GenericNoWildcardInDates",
    "AgfaImpax": "GenericNoWildcardInDates",
}
#: How to retrieve after a C-FIND (Orthanc 1.12.6): "SystemDefault" defers to DicomDefaultRetrieveMethod.
RETRIEVE_METHODS = ("C-MOVE", "C-GET", "SystemDefault")


def _bad_field(kind: str, name: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, f"{kind} value expected in field: {name}")


def _port(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The TCP port must be an integer")
    if not 1 <= value <= 65534:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"A TCP port number must be in range [1..65534], but found: {value}"
        )
    return value


def _manufacturer(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad_field("String", "Manufacturer")
    if value not in MANUFACTURERS:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Unknown modality manufacturer: "{value}"')
    return MANUFACTURERS[value]


def retrieve_method(value: Any) -> str:
    """One of RETRIEVE_METHODS, as spelled by Orthanc; "Parameter out of range" otherwise."""
    if not isinstance(value, str):
        raise _bad_field("String", "RetrieveMethod")
    if value not in RETRIEVE_METHODS:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Unknown retrieve method: "{value}"')
    return value


def _string(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise _bad_field("String", name)
    return value


def _boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _bad_field("Boolean", name)
    return value


def _unsigned(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_field("Unsigned integer", name)
    return value


@dataclass
class Modality:
    aet: str
    host: str
    port: int
    manufacturer: str = "Generic"
    permissions: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(PERMISSIONS, True))
    local_aet: str = ""
    timeout: int = 0
    use_dicom_tls: bool = False
    retrieve_method: str = "SystemDefault"

    @classmethod
    def parse(cls, value: Any) -> Modality:
        """Orthanc's two spellings: ["AET", "host", port(, "Manufacturer")] or {"AET": ..., "Host": ...}."""
        if isinstance(value, list):
            if len(value) not in (3, 4) or not all(isinstance(v, str) for v in value[:2]):
                raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "A modality is [AET, host, port(, manufacturer)]")
            manufacturer = _manufacturer(value[3]) if len(value) == 4 else "Generic"
            return cls(value[0], value[1], _port(value[2]), manufacturer)
        if not isinstance(value, dict):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "A modality is a JSON object or a JSON array")
        aet, host = _string(value, "AET"), _string(value, "Host")
        port = _port(value.get("Port"))
        manufacturer = _manufacturer(value.get("Manufacturer", "Generic"))
        permissions = {p: _boolean(value, p, True) for p in PERMISSIONS}
        if "AllowStorageCommitment" in value:  # Orthanc's shorthand for the two storage commitment services
            allowed = _boolean(value, "AllowStorageCommitment", True)
            permissions["AllowNAction"] = permissions["AllowEventReport"] = allowed
        return cls(
            aet,
            host,
            port,
            manufacturer,
            permissions,
            _string(value, "LocalAet", ""),
            _unsigned(value, "Timeout"),
            _boolean(value, "UseDicomTls", False),
            retrieve_method(value.get("RetrieveMethod", "SystemDefault")),
        )

    def to_json(self) -> dict[str, Any]:
        """Orthanc's form, every field present, keys in its (alphabetical) order."""
        out: dict[str, Any] = {
            "AET": self.aet,
            **self.permissions,
            "Host": self.host,
            "LocalAet": self.local_aet,
            "Manufacturer": self.manufacturer,
            "Port": self.port,
            "RetrieveMethod": self.retrieve_method,
            "Timeout": self.timeout,
            "UseDicomTls": self.use_dicom_tls,
        }
        return dict(sorted(out.items()))

    def allows(self, permission: str) -> bool:
        return self.permissions.get(permission, True)

    def retrieves_by(self, asked: str, default: str) -> str:
        """The method to use, "C-MOVE" or "C-GET": what a request asks, else this modality's choice, else the
        server's default (DicomDefaultRetrieveMethod), each unless "SystemDefault"."""
        for choice in (asked, self.retrieve_method):
            if choice != "SystemDefault":
                return choice
        return "C-MOVE" if retrieve_method(default) == "SystemDefault" else default


class Modalities(Registry[Modality]):
    option = "DicomModalities"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.strict = bool(ctx.config.get("StrictAetComparison", False))

    def parse(self, name: str, value: Any, *, stored: bool) -> Modality:
        try:
            return Modality.parse(value)
        except OrthancError as e:
            details = f"bad definition of modality {name!r}: {e.details or e.code.message}"
            raise OrthancError(e.code, details) from None

    def to_stored(self, item: Modality) -> Any:
        return item.to_json()

    def unknown(self, name: str, *, deleting: bool) -> OrthancError:
        if deleting:
            return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown DICOM modality with symbolic name: {name}")
        return OrthancError(ErrorCode.INEXISTENT_ITEM, f"No modality with symbolic name: {name}")

    def same_aet(self, a: str, b: str) -> bool:
        return a.strip() == b.strip() if self.strict else a.strip().upper() == b.strip().upper()

    async def by_aet(self, aet: str, host: str | None = None) -> list[Modality]:
        """Modalities with this AET (and this host, when DicomCheckModalityHost is on)."""
        check_host = bool(self.ctx.config.get("DicomCheckModalityHost", False))
        return [
            m
            for m in (await self.all()).values()
            if self.same_aet(m.aet, aet) and (not check_host or host is None or m.host == host)
        ]
