"""Helpers shared by the REST families: reading arguments and bodies, answering JSON, finding resources."""

from __future__ import annotations

import json
from typing import Any

from quart import Response, current_app, request

from ..context import ServerContext
from ..errors import ErrorCode, OrthancError, unknown_resource
from ..model import Resource, ResourceType


def context() -> ServerContext:
    return current_app.config["ISENGARD_CONTEXT"]


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json; charset=utf-8",
        headers=headers,
    )


def text_answer(data: str, content_type: str = "text/plain") -> Response:
    return Response(data, content_type=content_type)


def flag(name: str) -> bool:
    """Orthanc's boolean query arguments: present without value, or "true"/"1"; "false"/"0" turn them off."""
    if name not in request.args:
        return False
    return request.args.get(name, "").lower() not in ("false", "0", "no")


def int_arg(name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"argument {name!r} must be an integer") from None
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"argument {name!r} must not be negative")
    return value


async def json_body(*, expect: type | tuple[type, ...] = dict) -> Any:
    """The request body as JSON of the expected type, or Orthanc's "Bad request" error."""
    raw = await request.get_data()
    try:
        value = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise OrthancError(ErrorCode.BAD_REQUEST, "The body must contain a valid JSON document") from None
    if not isinstance(value, expect):
        names = expect.__name__ if isinstance(expect, type) else "/".join(t.__name__ for t in expect)
        kind = {"dict": "a JSON object", "list": "a JSON array", "str": "a JSON string"}.get(names, names)
        raise OrthancError(ErrorCode.BAD_REQUEST, f"The body must contain {kind}")
    return value


async def get_resource(level: ResourceType, public_id: str) -> Resource:
    found = await context().index.get_resources(level, [public_id])
    if not found:
        raise unknown_resource(public_id)
    return found[0]


def level_of_collection(name: str) -> ResourceType:
    for level in ResourceType:
        if level.plural == name:
            return level
    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"unknown collection {name}")
