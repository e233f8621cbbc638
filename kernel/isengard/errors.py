"""Orthanc's error vocabulary: every failure the kernel reports carries one of these codes.

Clients written for Orthanc branch on ``OrthancStatus`` and ``HttpStatus`` in the JSON error body, so the
numbers, messages and HTTP statuses must be the ones Orthanc uses.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """(Orthanc status number, HTTP status, message)."""

    INTERNAL_ERROR = (-1, 500, "Internal error")
    PLUGIN = (1, 500, "Error encountered within the plugin engine")
    NOT_IMPLEMENTED = (2, 501, "Not implemented yet")
    PARAMETER_OUT_OF_RANGE = (3, 400, "Parameter out of range")
    NOT_ENOUGH_MEMORY = (4, 500, "The server hosting Orthanc is running out of memory")
    BAD_PARAMETER_TYPE = (5, 400, "Bad type for a parameter")
    BAD_SEQUENCE_OF_CALLS = (6, 400, "Bad sequence of calls")
    INEXISTENT_ITEM = (7, 404, "Accessing an inexistent item")
    BAD_REQUEST = (8, 400, "Bad request")
    NETWORK_PROTOCOL = (9, 500, "Error in the network protocol")
    DATABASE = (11, 500, "Error with the database engine")
    URI_SYNTAX = (12, 400, "Badly formatted URI")
    INEXISTENT_FILE = (13, 404, "Inexistent file")
    CANNOT_WRITE_FILE = (14, 500, "Cannot write to file")
    BAD_FILE_FORMAT = (15, 400, "Bad file format")
    TIMEOUT = (16, 500, "Timeout")
    UNKNOWN_RESOURCE = (17, 404, "Unknown resource")
    FULL_STORAGE = (19, 507, "The file storage is full")
    CORRUPTED_FILE = (20, 500, "Corrupted file (e.g. inconsistent MD5 hash)")
    INEXISTENT_TAG = (21, 404, "Inexistent tag")
    READ_ONLY = (22, 500, "Cannot modify a read-only data structure")
    INCOMPATIBLE_IMAGE_FORMAT = (23, 400, "Incompatible format of the images")
    INCOMPATIBLE_IMAGE_SIZE = (24, 400, "Incompatible size of the images")
    UNKNOWN_DICOM_TAG = (27, 404, "Unknown DICOM tag")
    BAD_JSON = (28, 400, "Cannot parse a JSON document")
    UNAUTHORIZED = (29, 401, "Bad credentials were provided to an HTTP request")
    EMPTY_REQUEST = (33, 400, "Empty request")
    NOT_ACCEPTABLE = (34, 406, "Cannot send a response which is acceptable according to the Accept HTTP header")
    DATABASE_UNAVAILABLE = (36, 503, "The database is currently not available (probably a transient situation)")
    CANCELED_JOB = (37, 500, "This job was canceled")
    BAD_RANGE = (41, 416, "Incorrect range request")
    REVISION = (43, 409, "A bad revision number was provided, which might indicate conflict between multiple writers")
    FORBIDDEN_ACCESS = (46, 403, "Access to a resource is forbidden")
    CREATE_DICOM_OVERRIDE_TAG = (2020, 400, "Trying to override a value inherited from a parent module")
    CREATE_DICOM_USE_CONTENT = (2021, 400, 'Use "Content" to inject an image into a new DICOM instance')
    CREATE_DICOM_NO_PAYLOAD = (2022, 400, "No payload is present for one instance in the series")
    CREATE_DICOM_USE_DATA_URI_SCHEME = (
        2023,
        400,
        "The payload of the DICOM instance must be specified according to Data URI scheme",
    )
    CREATE_DICOM_BAD_PARENT = (2024, 400, "Trying to attach a new DICOM instance to an inexistent resource")
    CREATE_DICOM_PARENT_IS_INSTANCE = (
        2025,
        400,
        "Trying to attach a new DICOM instance to an instance (must be a series, study or patient)",
    )
    CANNOT_EXECUTE_LUA = (2031, 500, "Cannot execute a Lua command")
    CANNOT_ORDER_SLICES = (2040, 500, "Unable to order the slices of the series")

    @classmethod
    def from_status(cls, status: int) -> ErrorCode | None:
        """The code of an Orthanc status number (as a job records it)."""
        return next((code for code in cls if code.status == status), None)

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def http_status(self) -> int:
        return self.value[1]

    @property
    def message(self) -> str:
        return self.value[2]


class OrthancError(Exception):
    """A failure with an Orthanc error code; the REST layer turns it into Orthanc's JSON error body."""

    def __init__(self, code: ErrorCode, details: str | None = None, *, http_status: int | None = None) -> None:
        super().__init__(details or code.message)
        self.code = code
        self.details = details
        self.http_status = http_status or code.http_status


def unknown_resource(public_id: str) -> OrthancError:
    return OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Unknown resource: {public_id}")


class InstanceDiscarded(OrthancError):
    """A filter (the ``accept_instance`` hook) refused an instance before it was stored.

    REST answers 403 like any forbidden access; a C-STORE SCU is answered ``dimse_status``: success (0) when the
    filter only said no, as Orthanc does for ``ReceivedInstanceFilter``, or the status a filter chose (Orthanc's
    ``ReceivedCStoreInstanceFilter``).
    """

    def __init__(self, dimse_status: int = 0) -> None:
        super().__init__(ErrorCode.FORBIDDEN_ACCESS, "The instance was discarded by a filter")
        self.dimse_status = dimse_status
