"""Orthanc's configuration format: JSON with comments, one file or a folder of files, same option names.

Defaults come from the kernel (below) and from plugins (the ``config_defaults`` hook); files override them;
environment variables ``ORTHANC__OPTION`` or ``ORTHANC__SECTION__OPTION`` override files, as in Orthanc's
Docker images. Unknown options are logged once and otherwise ignored.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("isengard.config")


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str


#: The kernel's options, with Orthanc's names and defaults, in the order the sample configuration lists them.
KERNEL_OPTIONS: tuple[Option, ...] = (
    Option("Name", "Isengard", "Name of this server, shown in the web interface and in /system."),
    Option("StorageDirectory", "OrthancStorage", "Folder of the DICOM files (filesystem storage)."),
    Option("IndexDirectory", "OrthancStorage", "Folder of the index database (SQLite index)."),
    Option("StorageCompression", False, "Compress files with zlib before writing them."),
    Option("MaximumStorageSize", 0, "Disk quota in MB; the oldest unprotected patients are recycled (0: none)."),
    Option("MaximumPatientCount", 0, "Maximum number of patients; the oldest are recycled (0: no limit)."),
    Option("MaximumStorageMode", "Recycle", '"Recycle" old patients or "Reject" new instances when full.'),
    Option("Plugins", [], "Extra plugin modules to load by import name (installed plugins load by themselves)."),
    Option("DisabledPlugins", [], "Names of installed plugins not to load."),
    Option("HttpServerEnabled", True, "Serve the REST API and the web interface."),
    Option("HttpPort", 8042, "TCP port of the HTTP server."),
    Option("HttpDescribeErrors", True, "Include the details of errors in HTTP answers."),
    Option("HttpCompressionEnabled", True, "Gzip JSON answers when the client accepts it."),
    Option("RemoteAccessAllowed", False, "Accept HTTP requests from other hosts than this one."),
    Option("AuthenticationEnabled", False, "Require HTTP Basic credentials (on by itself when remote access is)."),
    Option("RegisteredUsers", {}, 'HTTP Basic users: {"alice": "password"}.'),
    Option("SslEnabled", False, "Serve HTTPS instead of HTTP."),
    Option("SslCertificate", "certificate.pem", "PEM file holding the certificate and its private key."),
    Option("HttpTimeout", 60, "Timeout in seconds of HTTP requests this server makes (peers, DICOMweb)."),
    Option("HttpRequestTimeout", 30, "Timeout in seconds to receive a whole HTTP request."),
    Option("KeepAlive", True, "Keep HTTP connections open between requests."),
    Option("MaximumUploadSize", 0, "Largest accepted HTTP request body in MB (0: 4 GB)."),
    Option("DicomServerEnabled", True, "Run the DICOM server (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."),
    Option("DicomAet", "ORTHANC", "Application entity title of this server."),
    Option("DicomPort", 4242, "TCP port of the DICOM server."),
    Option("DicomCheckCalledAet", False, "Refuse associations whose called AET is not DicomAet."),
    Option("DefaultEncoding", "Latin1", "Character set assumed when a file declares none."),
    Option("DefaultPrivateCreator", "", "Private creator of private tags set by /tools/create-dicom without one."),
    Option("DicomModalities", {}, 'Known DICOM peers: {"name": ["AET", "host", port]}.'),
    Option("DicomModalitiesInDatabase", False, "Ignored: modalities added over REST always persist in the index."),
    Option("DicomDefaultRetrieveMethod", "C-MOVE", 'How /queries/{id}/retrieve retrieves: "C-MOVE" or "C-GET".'),
    Option("DicomAlwaysAllowEcho", True, "Answer C-ECHO from any AET, known or not."),
    Option("DicomAlwaysAllowStore", True, "Accept C-STORE from any AET, known or not."),
    Option("DicomAlwaysAllowFind", False, "Answer C-FIND from any AET (otherwise known modalities only)."),
    Option("DicomAlwaysAllowFindWorklist", False, "Answer worklist C-FIND from any AET."),
    Option("DicomAlwaysAllowGet", False, "Answer C-GET from any AET."),
    Option("DicomAlwaysAllowMove", False, "Answer C-MOVE from any AET (the destination must still be known)."),
    Option("DicomCheckModalityHost", False, "A known AET must also connect from its declared host."),
    Option("StrictAetComparison", False, "Compare AETs case-sensitively."),
    Option("DicomScpTimeout", 30, "Seconds of silence after which an incoming association is closed."),
    Option("DicomScuTimeout", 10, "Seconds to wait for a peer when this server calls it."),
    Option("DicomAssociationCloseDelay", 5, "Seconds an outgoing association stays open for more C-STOREs."),
    Option("MaximumPduLength", 16384, "Largest PDU this server receives."),
    Option("UnknownSopClassAccepted", False, "Accept C-STORE of SOP classes pydicom does not know."),
    Option("AcceptedTransferSyntaxes", ["1.2.840.10008.1.*"], "Transfer syntaxes accepted (UIDs, * wildcards)."),
    Option("DeflatedTransferSyntaxAccepted", True, "Accept the deflated transfer syntax."),
    Option("JpegTransferSyntaxAccepted", True, "Accept JPEG baseline and extended."),
    Option("JpegLosslessTransferSyntaxAccepted", True, "Accept JPEG lossless and JPEG-LS."),
    Option("Jpeg2000TransferSyntaxAccepted", True, "Accept JPEG 2000."),
    Option("RleTransferSyntaxAccepted", True, "Accept RLE."),
    Option("JpipTransferSyntaxAccepted", True, "Accept JPIP references."),
    Option("Mpeg2TransferSyntaxAccepted", True, "Accept MPEG-2 video."),
    Option("Mpeg4TransferSyntaxAccepted", True, "Accept MPEG-4 video."),
    Option("H265TransferSyntaxAccepted", True, "Accept H.265 video."),
    Option("IngestTranscoding", "", "Transfer syntax UID every incoming file is converted to before storage."),
    Option("IngestTranscodingOfUncompressed", True, "Apply IngestTranscoding to files in uncompressed syntaxes."),
    Option("IngestTranscodingOfCompressed", True, "Apply IngestTranscoding to files in compressed syntaxes."),
    Option("DicomLossyTranscodingQuality", 90, "Quality (1-100) of lossy transcoding (JPEG; JPEG-LS, J2K derive)."),
    Option("QueryRetrieveSize", 100, "Queries kept in /queries for later retrieval."),
    Option("OrthancPeers", {}, 'Known Orthanc-compatible HTTP peers: {"name": ["url", "user", "pass"]}.'),
    Option("OrthancPeersInDatabase", False, "Ignored: peers added over REST always persist in the index."),
    Option("HttpsVerifyPeers", True, "Check the certificates of HTTPS peers."),
    Option("HttpsCACertificates", "", "PEM file of the authorities trusted for HTTPS peers (empty: the system's)."),
    Option("StableAge", 60, "Seconds without new instance after which a patient, study or series is stable."),
    Option("OverwriteInstances", False, "Replace an instance received again instead of keeping the first."),
    Option("StoreMD5ForAttachments", True, "Record MD5 checksums of attachments."),
    Option("SyncStorageArea", True, "fsync every file the storage writes, before it is indexed."),
    Option("OrphanedFilesGracePeriod", 60, "Age in seconds from which the start-up sweep removes unindexed files."),
    Option("CaseSensitivePN", False, "Match person names case-sensitively in C-FIND and /tools/find."),
    Option("LimitFindResults", 0, "Maximum answers of /tools/find and C-FIND above instance level (0: none)."),
    Option("LimitFindInstances", 0, "Maximum answers of /tools/find and C-FIND at instance level (0: none)."),
    Option("LogExportedResources", False, "Record exports to modalities and peers in /exports."),
    Option("UserMetadata", {}, 'Names of user metadata: {"Sample": 1024}.'),
    Option("UserContentType", {}, 'Names of user attachments: {"sample": 1024}.'),
    Option("ExtraMainDicomTags", {}, 'Additional tags to index per level: {"Study": ["..."]}.'),
    Option("ExecuteLuaEnabled", False, "Allow POST /tools/execute-script (scripts over REST)."),
    Option("DeidentifyLogs", True, "Keep patient identifiers out of the logs."),
    Option("SaveJobs", True, "Keep jobs in the index across restarts."),
    Option("ConcurrentJobs", 2, "Jobs this server runs at once (0: one per CPU core)."),
    Option("JobsHistorySize", 10, "Finished jobs kept in /jobs."),
    Option("JobsLeaseDuration", 30, "Seconds without news from a server after which others take over its jobs."),
    Option("CheckRevisions", False, "Require If-Match revisions on metadata and attachment writes."),
)
KERNEL_DEFAULTS: dict[str, Any] = {o.name: o.default for o in KERNEL_OPTIONS}

ENV_PREFIX = "ORTHANC__"


class ConfigError(Exception):
    """The configuration cannot be read: a message for the operator, not a traceback."""


def strip_comments(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments outside strings (Orthanc's files use both)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    # jsoncpp tolerates a comma before a closing bracket; so do we.
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def parse_json_with_comments(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(strip_comments(text))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: the configuration must be a JSON object")
    return value


def read_files(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One file, or every ``*.json`` of a folder merged in name order (a key defined twice is an error)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix == ".json" and f.is_file())
    elif p.is_file():
        files = [p]
    else:
        raise ConfigError(f"configuration not found: {p}")
    merged: dict[str, Any] = {}
    for f in files:
        part = parse_json_with_comments(f.read_text(encoding="utf-8"), str(f))
        for key in part.keys() & merged.keys():
            raise ConfigError(f"{f}: option {key!r} is already set by another file of {p}")
        merged.update(part)
    return merged


def _env_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _match_key(word: str, known: Mapping[str, Any]) -> str:
    """ORTHANC__DICOM_AET names "DicomAet": compare without underscores and case; unknown words CamelCase."""
    squashed = word.replace("_", "").lower()
    for key in known:
        if key.lower() == squashed:
            return key
    return "".join(part.capitalize() for part in word.lower().split("_"))


def apply_environment(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        words = name[len(ENV_PREFIX) :].split("__")
        target = values
        for word in words[:-1]:
            key = _match_key(word, target)
            section = target.get(key)
            if not isinstance(section, dict):
                section = target[key] = {}
            target = section
        target[_match_key(words[-1], target)] = _env_value(raw)


class Config(Mapping[str, Any]):
    """Read-only view of the effective configuration, with typed accessors that explain bad values."""

    def __init__(
        self, values: dict[str, Any], *, source: str | None = None, explicit: frozenset[str] = frozenset()
    ) -> None:
        self._values = values
        self.source = source
        #: Options the operator set (file, environment, overrides) rather than inherited from defaults.
        self.explicit = explicit

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None,
        *,
        defaults: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        warn_unknown: bool = True,
    ) -> Config:
        values: dict[str, Any] = json.loads(json.dumps(dict(defaults or KERNEL_DEFAULTS)))
        known = set(values)
        from_file = read_files(path) if path else {}
        for key in sorted(from_file.keys() - known) if warn_unknown else ():
            log.warning("unknown configuration option %r is ignored", key)
        values.update(from_file)
        before = json.dumps(values, sort_keys=True)
        env_values = json.loads(before)
        apply_environment(env_values, os.environ if environ is None else environ)
        from_env = {k for k in env_values if k not in values or env_values[k] != values[k]}
        values = env_values
        values.update(overrides or {})
        explicit = frozenset(from_file) | from_env | frozenset(overrides or {})
        return cls(values, source=str(path) if path else None, explicit=explicit)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._values))

    def bool(self, key: str) -> bool:
        value = self._values.get(key)
        if not isinstance(value, bool):
            raise ConfigError(f"option {key!r} must be true or false, not {value!r}")
        return value

    def int(self, key: str) -> int:
        value = self._values.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"option {key!r} must be an integer, not {value!r}")
        return value

    def str(self, key: str) -> str:
        value = self._values.get(key)
        if not isinstance(value, str):
            raise ConfigError(f"option {key!r} must be a string, not {value!r}")
        return value

    def dict(self, key: str) -> dict[str, Any]:
        value = self._values.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"option {key!r} must be a JSON object, not {value!r}")
        return value

    def list(self, key: str) -> list[Any]:
        value = self._values.get(key) or []
        if not isinstance(value, list):
            raise ConfigError(f"option {key!r} must be a JSON list, not {value!r}")
        return value

    def path(self, key: str) -> Path:
        """A path option, relative to the configuration file's folder as in Orthanc."""
        p = Path(self.str(key)).expanduser()
        if p.is_absolute() or not self.source:
            return p
        base = Path(self.source)
        return (base if base.is_dir() else base.parent) / p


def sample_configuration(options: tuple[Option, ...] = KERNEL_OPTIONS) -> str:
    """The commented configuration ``isengard --config=FILE`` writes: every option at its default."""
    lines = [
        "{",
        "  // Isengard configuration. Same format and option names as Orthanc: comments are allowed,",
        "  // relative paths are relative to this file. Delete what you do not change.",
    ]
    for i, option in enumerate(options):
        comma = "," if i < len(options) - 1 else ""
        lines.append("")
        lines.append(f"  // {option.help}")
        lines.append(f"  {json.dumps(option.name)} : {json.dumps(option.default)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
