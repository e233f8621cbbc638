"""Remote DICOMweb servers: ``DicomWeb.Servers`` plus those added over REST, and the HTTP calls made to them.

The Orthanc Book ("DICOMweb plugin", client-related options) says a server is defined as an Orthanc peer is: the
short form ``["url"]`` or ``["url", "user", "password"]``, or the object form (Url, Username, Password,
HttpHeaders, CertificateFile..., Timeout), so :class:`~isengard.peers.OrthancPeer` reads it, with the kernel's
TLS set-up (HttpsVerifyPeers, HttpsCACertificates). Orthanc's plugin keeps the other members (HasDelete,
ChunkedTransfers, HasWadoRsUniversalTransferSyntax) as user properties, and so do we. Servers added over REST
are kept in the index like peers, so ServersInDatabase is moot.
"""

from __future__ import annotations

from typing import Any

import httpx

from isengard.errors import ErrorCode, OrthancError
from isengard.peers import OrthancPeer
from isengard.registry import Registry

from .settings import SECTION

#: Orthanc's HttpClient turns these answers of a remote server into its own errors; any other is a network error.
_REMOTE_ERRORS = {400: ErrorCode.BAD_REQUEST, 401: ErrorCode.UNAUTHORIZED, 404: ErrorCode.UNKNOWN_RESOURCE}


class DicomWebServers(Registry[OrthancPeer]):
    #: The index property of the REST changes (the definitions live in the "Servers" member of "DicomWeb").
    option = f"{SECTION}.Servers"

    def configured(self) -> dict[str, Any]:
        """A JSON object, or absent: settings.py checked the section at start-up."""
        return self.ctx.config.dict(SECTION).get("Servers") or {}

    def parse(self, name: str, value: Any, *, stored: bool) -> OrthancPeer:
        try:
            return OrthancPeer.parse(value, check_files=not stored)
        except OrthancError as e:
            details = f"bad definition of DICOMweb server {name!r}: {e.details or e.code.message}"
            raise OrthancError(e.code, details) from None

    def to_stored(self, item: OrthancPeer) -> Any:
        return item.stored_json()

    def unknown(self, name: str, *, deleting: bool) -> OrthancError:
        # Orthanc's plugin answers a DELETE 400 "Parameter out of range"; an unknown name is a 404 here, always
        return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Inexistent server: {name}")


def server_flag(server: OrthancPeer, name: str, default: bool) -> bool:
    """A boolean user property; Orthanc's plugin reads true/false, and shows them back as "1"/"0" strings."""
    value = server.properties.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)


def merged_headers(body: dict[str, Any]) -> dict[str, str]:
    """The "HttpHeaders" of a client request body, added to (and overriding) those of the server's definition."""
    value = body.get("HttpHeaders", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "HttpHeaders must be a JSON object mapping names to strings")
    return dict(value)


async def send(
    http: httpx.AsyncClient, method: str, url: str | httpx.URL, *, stream: bool = False, **kwargs: Any
) -> httpx.Response:
    """One request to a remote DICOMweb server, its errors turned into Orthanc's.

    Unreachable, or an HTTP error other than 400/401/404: "Error in the network protocol" (9, HTTP 500), as
    Orthanc's plugin answers; the reason goes in the details. ``stream``: the body is left to read (the caller
    closes the response).
    """
    target = http.build_request(method, url, **kwargs)
    try:
        response = await http.send(target, stream=stream)
    except httpx.HTTPError as e:
        reason = str(e) or type(e).__name__
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"Cannot reach the DICOMweb server at {target.url}: {reason}"
        ) from None
    if response.is_success:
        return response
    await response.aread()
    await response.aclose()
    code = _REMOTE_ERRORS.get(response.status_code, ErrorCode.NETWORK_PROTOCOL)
    details = f"The DICOMweb server answered HTTP {response.status_code} to {method} {target.url}"
    text = response.text.strip()
    raise OrthancError(code, f"{details}: {text[:300]}" if text else details)


def megabytes(size: int) -> str:
    """Orthanc's plugin shows network usage as a string of whole megabytes."""
    return str(size // (1024 * 1024))
