"""Isengard: a DICOM store with an Orthanc-compatible REST API, as a small kernel and plugins.

Plugin authors import :data:`hookimpl` from here to mark their hook implementations.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("isengard")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

#: The Orthanc release whose REST API Isengard implements; clients choose features from it.
ORTHANC_VERSION = "1.12.5"
#: The matching value of Orthanc's "ApiVersion" field in /system.
ORTHANC_API_VERSION = 29

hookimpl = pluggy.HookimplMarker("isengard")

__all__ = ["ORTHANC_API_VERSION", "ORTHANC_VERSION", "__version__", "hookimpl"]
