"""The functions Orthanc gives Lua scripts (Orthanc Book, users/lua.rst), with Orthanc's names and arguments.

Everything that touches the server goes through the REST API in process (Quart's test client on the running
app), so a script sees exactly what an HTTP client sees, routes added by plugins included, unless it asks for
the built-in API only (``RestApiGet(uri, true)``: see :func:`is_builtin`). Failures follow
Orthanc: ``RestApi*`` and ``Http*`` log and return ``nil``; the routing functions (``SendToModality``,
``SendToPeer``, ``Delete``, ``ModifyInstance``) raise a Lua error, which stops the callback before a later step
(typically ``Delete``) runs on an instance that was not sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx
from pydicom.uid import generate_uid
from werkzeug.exceptions import HTTPException

from isengard.plugins import DEFAULT_PLUGINS
from isengard.rest.app import INTERNAL_SCOPE_KEY

from .runtime import LuaThread, from_lua, in_lua_call

if TYPE_CHECKING:
    from quart import Quart

    from isengard.config import Config

log = logging.getLogger("isengard.lua")

_LEVELS = ("instances", "series", "studies", "patients")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
#: Where Orthanc's built-in REST API lives in Isengard: the kernel's own route families (its DEFAULT_PLUGINS),
#: and this plugin, since /tools/execute-script is a route of Orthanc's core.
_BUILTIN_MODULES = frozenset((*DEFAULT_PLUGINS, __package__))


def is_builtin(app: Quart, method: str, path: str) -> bool:
    """Whether ``method path`` reaches a built-in route, for ``RestApi*(..., builtin=true)``.

    Orthanc then sends the request to its own REST API only, where a route a plugin added does not exist. A path
    no route answers counts as built-in: the app's own 404 or 405 is the answer.
    """
    try:
        endpoint, _ = app.url_map.bind("localhost").match(path, method=method)
    except HTTPException:
        return True
    blueprint = app.blueprints.get(endpoint.rpartition(".")[0])
    return blueprint is not None and blueprint.import_name in _BUILTIN_MODULES


async def rest_request(
    app: Quart,
    method: str,
    path: str,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    *,
    builtin: bool = False,
) -> tuple[int, bytes]:
    """(status, body) of an in-process request made for Lua, in a task of its own marked by ``in_lua_call``.

    It is marked internal: Orthanc's Lua calls bypass the HTTP layer, so neither remote access nor credentials
    may refuse them. ``builtin``: a route a plugin added answers 404, as it does not exist for Orthanc then.
    """
    path, _, query = path.partition("?")
    path = path.rstrip("/") or "/"  # Orthanc's router ignores a trailing slash ("/instances/" in its samples)
    if builtin and not is_builtin(app, method, path):
        return 404, b""

    async def marked() -> tuple[int, bytes]:
        in_lua_call.set(True)
        response = await app.test_client().open(
            path,
            method=method,
            data=data,
            headers=headers or {},
            query_string=dict(parse_qsl(query, keep_blank_values=True)),
            scope_base={"client": ("127.0.0.1", 0), INTERNAL_SCOPE_KEY: True},
        )
        return response.status_code, await response.get_data()

    return await asyncio.create_task(marked())


class LuaCallFailed(Exception):
    """A routing function failed: raised into Lua as an error with this message."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _numbers(value: Any) -> Any:
    """DumpJson without keepStrings: strings that read as numbers become numbers, as Orthanc does."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    return value


class OrthancFunctions:
    """Binds Orthanc's Lua API to one interpreter and one running app."""

    def __init__(self, lua: LuaThread, config: Config) -> None:
        self.lua = lua
        self.config = config
        self.app: Quart | None = None
        self.http_auth: tuple[str, str] | None = None
        self.http_timeout: float = 10.0
        for name in (
            "RestApiGet",
            "RestApiPost",
            "RestApiPut",
            "RestApiDelete",
            "HttpGet",
            "HttpPost",
            "HttpPut",
            "HttpDelete",
            "SetHttpCredentials",
            "SetHttpTimeout",
            "SendToModality",
            "SendToPeer",
            "Delete",
            "ModifyInstance",
            "ParseJson",
            "DumpJson",
            "PrintRecursive",
            "GetOrthancConfiguration",
            "GenerateDicomUid",
        ):
            lua.define(name, getattr(self, name))

    # -- the REST API, in process ----------------------------------------------------------------------------
    def rest(
        self, method: str, uri: Any, body: Any = None, headers: Any = None, *, builtin: bool = False
    ) -> tuple[int, bytes]:
        """(status, body) of a request to the running app; called from the Lua thread."""
        if self.app is None:
            raise LuaCallFailed("the REST API is not serving yet")
        data = body if isinstance(body, bytes) else (_text(body) if body is not None else None)
        extra = {str(k): str(v) for k, v in (from_lua(headers) or {}).items()}
        return self.lua.wait(rest_request(self.app, method, _text(uri), data, extra, builtin=builtin))

    def _rest_or_nil(
        self, method: str, uri: Any, body: Any = None, builtin: Any = None, headers: Any = None
    ) -> bytes | None:
        status, answer = self.rest(method, uri, body, headers, builtin=builtin is True)
        if status >= 400:
            log.error("Lua: Error in RestApi%s() for URI: %s", method.capitalize(), _text(uri))
            return None
        return answer

    def RestApiGet(self, uri: Any, builtin: Any = None, headers: Any = None) -> bytes | None:
        return self._rest_or_nil("GET", uri, None, builtin, headers)

    def RestApiPost(self, uri: Any, body: Any, builtin: Any = None, headers: Any = None) -> bytes | None:
        return self._rest_or_nil("POST", uri, body, builtin, headers)

    def RestApiPut(self, uri: Any, body: Any, builtin: Any = None, headers: Any = None) -> bytes | None:
        return self._rest_or_nil("PUT", uri, body, builtin, headers)

    def RestApiDelete(self, uri: Any, builtin: Any = None, headers: Any = None) -> bool | None:
        """``true``, or ``nil`` on failure (as Orthanc: not ``false``)."""
        return True if self._rest_or_nil("DELETE", uri, None, builtin, headers) is not None else None

    # -- HTTP clients ----------------------------------------------------------------------------------------
    def _http(self, method: str, url: Any, body: Any = None, headers: Any = None) -> bytes | None:
        extra = {str(k): str(v) for k, v in (from_lua(headers) or {}).items()}
        try:
            response = httpx.request(
                method, _text(url), content=body, headers=extra, auth=self.http_auth, timeout=self.http_timeout
            )
            response.raise_for_status()
        except httpx.HTTPError as e:
            log.error("Lua: Error in Http%s() for URL %s: %s", method.capitalize(), _text(url), e)
            return None
        return response.content

    def HttpGet(self, url: Any, headers: Any = None) -> bytes | None:
        return self._http("GET", url, headers=headers)

    def HttpPost(self, url: Any, body: Any = None, headers: Any = None) -> bytes | None:
        return self._http("POST", url, body, headers)

    def HttpPut(self, url: Any, body: Any = None, headers: Any = None) -> bytes | None:
        return self._http("PUT", url, body, headers)

    def HttpDelete(self, url: Any, headers: Any = None) -> bool:
        return self._http("DELETE", url, headers=headers) is not None

    def SetHttpCredentials(self, username: Any, password: Any) -> None:
        self.http_auth = (_text(username), _text(password))

    def SetHttpTimeout(self, seconds: Any) -> None:
        self.http_timeout = float(seconds)

    # -- routing ---------------------------------------------------------------------------------------------
    def _checked(self, what: str, method: str, uri: str, body: Any = None) -> bytes:
        status, answer = self.rest(method, uri, body)
        if status >= 400:
            raise LuaCallFailed(f"{what} failed ({status}): {answer.decode('utf-8', 'replace')[:300]}")
        return answer

    def SendToModality(self, resource: Any, modality: Any, local_aet: Any = None, timeout: Any = None) -> bytes:
        """C-STORE through POST /modalities/{id}/store, synchronously; answers the id so calls can chain."""
        body: dict[str, Any] = {"Resources": [_text(resource)], "Synchronous": True}
        if local_aet:
            body["LocalAet"] = _text(local_aet)
        if timeout:
            body["Timeout"] = int(timeout)
        self._checked("SendToModality", "POST", f"/modalities/{_text(modality)}/store", json.dumps(body))
        return resource

    def SendToPeer(self, resource: Any, peer: Any) -> bytes:
        body = {"Resources": [_text(resource)], "Synchronous": True}
        self._checked("SendToPeer", "POST", f"/peers/{_text(peer)}/store", json.dumps(body))
        return resource

    def Delete(self, resource: Any) -> bool:
        """Delete a resource of any level (routing scripts pass instances, REST-minded ones series or studies)."""
        for level in _LEVELS:
            status, _ = self.rest("DELETE", f"/{level}/{_text(resource)}")
            if status < 400:
                return True
        raise LuaCallFailed(f"Delete failed: unknown resource {_text(resource)}")

    def ModifyInstance(
        self, instance: Any, replace: Any = None, remove: Any = None, remove_private: Any = False, *_: Any
    ) -> bytes:
        """Modify, store the result, answer its id (Orthanc stores the modified copy so it can be routed)."""
        removed = from_lua(remove) or []
        body = {
            # Lua turns "0012" into 12 too easily (Orthanc Book's warning): DICOM values are sent as text
            "Replace": {k: v if isinstance(v, dict | list) else str(v) for k, v in (from_lua(replace) or {}).items()},
            "Remove": list(removed.values()) if isinstance(removed, dict) else removed,
            "RemovePrivateTags": bool(remove_private),
            "Force": True,
        }
        modified = self._checked("ModifyInstance", "POST", f"/instances/{_text(instance)}/modify", json.dumps(body))
        stored = json.loads(self._checked("ModifyInstance", "POST", "/instances", modified))
        return stored["ID"].encode()

    # -- helpers ---------------------------------------------------------------------------------------------
    def ParseJson(self, text: Any) -> Any:
        return self.lua.to_lua(json.loads(_text(text)))

    def DumpJson(self, value: Any, keep_strings: Any = False) -> bytes:
        data = from_lua(value)
        if not keep_strings:
            data = _numbers(data)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()  # compact and sorted, as Orthanc

    def PrintRecursive(self, value: Any) -> None:
        log.warning("Lua says: %s", json.dumps(from_lua(value), indent=2, default=str))

    def GetOrthancConfiguration(self) -> Any:
        return self.lua.to_lua(self.config.as_dict())

    def GenerateDicomUid(self) -> bytes:
        return generate_uid().encode()
