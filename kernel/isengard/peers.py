"""Known Orthanc peers: the OrthancPeers option, plus those added over REST (kept in the index, so every server on
one database sees them and a restart loses none; OrthancPeersInDatabase is therefore moot).

A peer is any server speaking Orthanc's REST API. Definitions are read as Orthanc reads them (the short form
``["url"]`` or ``["url", "user", "password"]``, and the object form with Url, Username, Password, HttpHeaders,
CertificateFile, CertificateKeyFile, CertificateKeyPassword, Timeout and free user properties), with Orthanc's
error codes, and shown as Orthanc shows them, secrets replaced by null (Orthanc Book, "Configuration of
Orthanc", OrthancPeers; "REST API of Orthanc", /peers).

The HTTP client is httpx's async one; HTTPS peers are checked against HttpsCACertificates (the system's
authorities when empty) unless HttpsVerifyPeers is false, as Orthanc does with libcurl.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .errors import ErrorCode, OrthancError
from .registry import Registry

if TYPE_CHECKING:
    from .config import Config

#: Members of the object form with a meaning; any other member is a user property, kept and shown as given.
RESERVED = frozenset(
    {
        "Url",
        "Username",
        "Password",
        "CertificateFile",
        "CertificateKeyFile",
        "CertificateKeyPassword",
        "HttpHeaders",
        "Pkcs11",
        "Timeout",
    }
)


def _bad(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise _bad(f"String value expected in field: {name}")
    return value


def _url(value: str) -> str:
    """Orthanc's check: an http(s) URL, kept with a trailing slash so that paths are appended to it."""
    if not value:
        raise _bad("Empty URL")
    if not value.startswith(("http://", "https://")):
        raise _bad(f"Bad URL: {value}")
    return value if value.endswith("/") else value + "/"


def _timeout(body: dict[str, Any]) -> int:
    value = body.get("Timeout", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("Integer value expected in field: Timeout")
    if value < 0:
        raise _bad("Unsigned integer value expected in field: Timeout")
    return value


def _headers(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("HttpHeaders", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad("HttpHeaders must be a JSON object mapping header names to strings")
    return dict(value)


@dataclass
class OrthancPeer:
    url: str
    username: str = ""
    password: str = ""
    certificate_file: str = ""
    certificate_key_file: str = ""
    certificate_key_password: str = ""
    timeout: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, *, check_files: bool = True) -> OrthancPeer:
        """Orthanc's two forms. ``check_files``: the client certificate and key must exist now (a definition
        given over REST or read from the configuration; not one stored earlier, whose file may come back)."""
        if isinstance(value, list):
            if len(value) not in (1, 3) or not all(isinstance(v, str) for v in value):
                raise _bad('A peer is ["url"] or ["url", "username", "password"]')
            return cls(_url(value[0]), *value[1:])
        if not isinstance(value, dict):
            raise _bad("A peer is a JSON object or a JSON array")
        username, password = _string(value, "Username"), _string(value, "Password")
        if password and not username:
            raise _bad("A password is given without a username")
        certificate, key = _string(value, "CertificateFile"), _string(value, "CertificateKeyFile")
        if check_files and certificate and not Path(certificate).is_file():
            raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot open certificate file: {certificate}")
        if check_files and certificate and key and not Path(key).is_file():
            raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot open key file: {key}")
        pkcs11 = value.get("Pkcs11", False)
        if not isinstance(pkcs11, bool):
            raise _bad("Boolean value expected in field: Pkcs11")
        if pkcs11:
            raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "PKCS#11 client authentication is not supported")
        return cls(
            _url(_string(value, "Url")),
            username,
            password,
            certificate,
            key if certificate else "",
            _string(value, "CertificateKeyPassword") if certificate else "",
            _timeout(value),
            _headers(value),
            {k: v for k, v in value.items() if k not in RESERVED},
        )

    def public_json(self) -> dict[str, Any]:
        """What /peers shows: secrets as null, header names only (Orthanc's public form, keys sorted)."""
        out: dict[str, Any] = {
            "HttpHeaders": sorted(self.headers),
            "Pkcs11": False,
            "Timeout": self.timeout,
            "Url": self.url,
            **self.properties,
        }
        if self.username:
            out.update(Username=self.username, Password=None)
        if self.certificate_file:
            out.update(CertificateFile=self.certificate_file, CertificateKeyFile=None, CertificateKeyPassword=None)
        return dict(sorted(out.items()))

    def stored_json(self) -> dict[str, Any]:
        """The whole definition, secrets included: what the index and a job's parameters keep."""
        return {
            **self.properties,
            "Url": self.url,
            "Username": self.username,
            "Password": self.password,
            "CertificateFile": self.certificate_file,
            "CertificateKeyFile": self.certificate_key_file,
            "CertificateKeyPassword": self.certificate_key_password,
            "Timeout": self.timeout,
            "HttpHeaders": self.headers,
        }

    def job_json(self) -> Any:
        """The "Peer" of a job's Content: Orthanc's short form without the password when it says everything
        (["url"] or ["url", "user", ""]), else the public form (never a secret; header names only)."""
        if self.certificate_file or self.headers or self.properties or self.timeout:
            return self.public_json()
        return [self.url, self.username, ""] if self.username else [self.url]


class Peers(Registry[OrthancPeer]):
    option = "OrthancPeers"

    def parse(self, name: str, value: Any, *, stored: bool) -> OrthancPeer:
        """Certificate files are checked when read from the configuration; a stored peer was checked at its PUT."""
        try:
            return OrthancPeer.parse(value, check_files=not stored)
        except OrthancError as e:
            raise OrthancError(e.code, f"bad definition of peer {name!r}: {e.details or e.code.message}") from None

    def to_stored(self, item: OrthancPeer) -> Any:
        return item.stored_json()

    def unknown(self, name: str, *, deleting: bool) -> OrthancError:
        if deleting:
            return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown Orthanc peer: {name}")
        return OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No peer with symbolic name: {name}")


# -- talking to a peer -----------------------------------------------------------------------------------------
def tls_context(config: Config, peer: OrthancPeer) -> ssl.SSLContext:
    """Server checks as HttpsVerifyPeers and HttpsCACertificates say; the peer's client certificate, if any."""
    authorities = config.str("HttpsCACertificates")
    try:
        context = ssl.create_default_context(cafile=str(config.path("HttpsCACertificates")) if authorities else None)
        if not config.bool("HttpsVerifyPeers"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if peer.certificate_file:
            context.load_cert_chain(
                peer.certificate_file, peer.certificate_key_file or None, peer.certificate_key_password or None
            )
    except (OSError, ssl.SSLError) as e:  # a missing or unreadable PEM file, a wrong key password
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"Cannot set up HTTPS towards {peer.url}: {e}") from None
    return context


def client(config: Config, peer: OrthancPeer) -> httpx.AsyncClient:
    """A client for one operation (its connections are kept alive across the instances of a transfer).

    ``trust_env`` is off: as in Orthanc, the configuration alone says how to reach a peer.
    """
    return httpx.AsyncClient(
        base_url=peer.url,
        auth=(peer.username, peer.password) if peer.username else None,
        headers=peer.headers,
        timeout=peer.timeout or config.int("HttpTimeout") or None,
        verify=tls_context(config, peer) if peer.url.startswith("https://") else False,
        trust_env=False,
    )


def _peer_details(response: httpx.Response) -> str:
    """The reason an Orthanc-like peer gives in its JSON error body, if any."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("Details") or body.get("Message") or "")


async def call(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to a peer; Orthanc's "Error in the network protocol" (9) when it cannot be reached or answers
    an HTTP error, the reason in the details."""
    url = f"{http.base_url}{path}"
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        reason = str(e) or type(e).__name__
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"Cannot reach the Orthanc peer at {url}: {reason}") from None
    if response.is_success:
        return response
    details = f"The Orthanc peer answered HTTP {response.status_code} to {method} {url}"
    reason = _peer_details(response)
    raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"{details}: {reason}" if reason else details)
