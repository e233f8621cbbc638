"""Known DICOM peers: the DicomModalities option, plus those added over REST (kept in the index, so every
server on one database sees them and a restart loses none).

Definitions are read as Orthanc reads them (two spellings, the same defaults, the same error messages), and
shown as Orthanc shows them, every field present.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode, OrthancError

if TYPE_CHECKING:
    from .context import ServerContext

INDEX_PROPERTY = "DicomModalities"
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

#: Read-modify-write of the stored definitions, one at a time in this process.
_write_lock = asyncio.Lock()


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
            "Timeout": self.timeout,
            "UseDicomTls": self.use_dicom_tls,
        }
        return dict(sorted(out.items()))

    def allows(self, permission: str) -> bool:
        return self.permissions.get(permission, True)


def _from_config(name: str, value: Any) -> Modality:
    try:
        return Modality.parse(value)
    except OrthancError as e:
        raise OrthancError(e.code, f"bad definition of modality {name!r}: {e.details or e.code.message}") from None


class Modalities:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.strict = bool(ctx.config.get("StrictAetComparison", False))

    async def _stored(self) -> dict[str, Any]:
        raw = await self.ctx.index.get_property(INDEX_PROPERTY)
        return json.loads(raw) if raw else {"added": {}, "deleted": []}

    async def all(self) -> dict[str, Modality]:
        stored = await self._stored()
        found = {name: _from_config(name, v) for name, v in self.ctx.config.dict("DicomModalities").items()}
        for name in stored["deleted"]:
            found.pop(name, None)
        found.update({name: _from_config(name, v) for name, v in stored["added"].items()})
        return dict(sorted(found.items()))

    async def get(self, name: str) -> Modality:
        found = (await self.all()).get(name)
        if found is None:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"No modality with symbolic name: {name}")
        return found

    async def put(self, name: str, modality: Modality) -> None:
        async with _write_lock:
            stored = await self._stored()
            stored["added"][name] = modality.to_json()
            stored["deleted"] = [n for n in stored["deleted"] if n != name]
            await self.ctx.index.set_property(INDEX_PROPERTY, json.dumps(stored))

    async def delete(self, name: str) -> None:
        async with _write_lock:
            if name not in await self.all():
                raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown DICOM modality with symbolic name: {name}")
            stored = await self._stored()
            stored["added"].pop(name, None)
            if name in self.ctx.config.dict("DicomModalities") and name not in stored["deleted"]:
                stored["deleted"].append(name)
            await self.ctx.index.set_property(INDEX_PROPERTY, json.dumps(stored))

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
