"""Orthanc's JSON error body, for every failure: clients parse it, so its fields never vary."""

from __future__ import annotations

import json
import logging

from quart import Response, request

from ..errors import ErrorCode, OrthancError

log = logging.getLogger("isengard.rest")


def error_response(
    code: ErrorCode, details: str | None = None, *, http_status: int | None = None, describe: bool = True
) -> Response:
    status = http_status or code.http_status
    body: dict[str, object] = {
        "HttpError": _REASONS.get(status, "Error"),
        "HttpStatus": status,
        "Message": code.message,
        "Method": request.method,
        "OrthancError": code.message,
        "OrthancStatus": code.status,
        "Uri": request.path,
    }
    if details and describe:
        body["Details"] = details
    return Response(json.dumps(body, indent=3), status=status, content_type="application/json; charset=utf-8")


def orthanc_error_response(error: OrthancError, *, describe: bool = True) -> Response:
    return error_response(error.code, error.details, http_status=error.http_status, describe=describe)


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}
