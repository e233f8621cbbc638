"""One gate for every request that touches data: REST, DICOMweb (through REST routes) and DIMSE.

Authentication (who is asking) is protocol-specific; authorization (may they do this) is the ``authorize`` hook,
asked with the same :class:`AccessRequest` whatever the protocol, so an access-control plugin is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .plugins import resolve

if TYPE_CHECKING:
    import pluggy


@dataclass(frozen=True)
class AccessRequest:
    protocol: str  # "http" or "dicom"
    method: str  # HTTP method, or the DIMSE service ("C-STORE", "C-FIND", ...)
    path: str  # HTTP path, or the called AET for DICOM
    user: str | None = None  # HTTP Basic user, or the calling AET
    remote_ip: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def is_authorized(pm: pluggy.PluginManager, request: AccessRequest) -> bool:
    answers = pm.hook.authorize(request=request)
    for answer in answers:
        if await resolve(answer) is False:
            return False
    return True
