"""The Quart application: access control in front, Orthanc error bodies behind, plugin routes in between."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from ..auth import AccessRequest, is_authorized
from ..context import ServerContext
from ..errors import ErrorCode, OrthancError
from .body import FlowControlledConnection, FlowControlledRequest
from .compression import compress_response
from .errors import error_response, orthanc_error_response

log = logging.getLogger("isengard.rest")

REALM = "Orthanc Secure Area"
_DRAIN_LIMIT = 1024 * 1024
_HTTP_ERRORS = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.UNKNOWN_RESOURCE,
    405: ErrorCode.BAD_REQUEST,
    413: ErrorCode.BAD_REQUEST,
    415: ErrorCode.BAD_FILE_FORMAT,
}


def authentication_required(ctx: ServerContext) -> bool:
    """As in Orthanc: on when asked, and on by itself once remote access is allowed unless explicitly off."""
    config = ctx.config
    if "AuthenticationEnabled" in config.explicit:
        return config.bool("AuthenticationEnabled")
    return config.bool("AuthenticationEnabled") or config.bool("RemoteAccessAllowed")


def _is_loopback(address: str | None) -> bool:
    if not address:
        return True  # a Unix socket or an in-process test client
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _basic_user(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


#: ASGI scope key of an in-process request a plugin makes through the app (Lua's RestApiGet...): only code in
#: the process can set it, and such a request skips the HTTP gate (remote access, credentials) as Orthanc's
#: internal calls do; the ``authorize`` hook still sees it.
INTERNAL_SCOPE_KEY = "isengard.internal"


def create_app(ctx: ServerContext) -> Quart:
    app = Quart("isengard")
    app.request_class, app.asgi_http_class = FlowControlledRequest, FlowControlledConnection
    config = ctx.config
    upload_mb = config.int("MaximumUploadSize")
    app.config.update(
        ISENGARD_CONTEXT=ctx,
        MAX_CONTENT_LENGTH=(upload_mb or 4096) * 1024 * 1024,
        BODY_TIMEOUT=3600,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    remote_allowed = config.bool("RemoteAccessAllowed")
    require_auth = authentication_required(ctx)
    users = {str(k): str(v) for k, v in config.dict("RegisteredUsers").items()}
    describe = config.bool("HttpDescribeErrors")

    def unauthorized(details: str | None = None) -> Response:
        response = error_response(ErrorCode.UNAUTHORIZED, details, http_status=401, describe=describe)
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
        return response

    @app.before_request
    async def gate() -> Response | None:
        remote = request.remote_addr
        internal = bool(request.scope.get(INTERNAL_SCOPE_KEY))
        if not internal and not remote_allowed and not _is_loopback(remote):
            # Orthanc answers a remote client 401 (not 403) when RemoteAccessAllowed is false
            return unauthorized("Remote access is not allowed (RemoteAccessAllowed)")
        user = None
        if require_auth and not internal:
            credentials = _basic_user(request.headers.get("Authorization"))
            expected = users.get(credentials[0]) if credentials else None
            if (
                credentials is None
                or expected is None
                or not hmac.compare_digest(expected.encode(), credentials[1].encode())
            ):
                return unauthorized()
            user = credentials[0]
        request.isengard_user = user  # type: ignore[attr-defined]
        access = AccessRequest(
            protocol="http",
            method=request.method,
            path=request.path,
            user=user,
            remote_ip=remote,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        if not await is_authorized(ctx.pm, access):
            return error_response(ErrorCode.FORBIDDEN_ACCESS, http_status=403)
        return None

    @app.after_request
    async def finish_body(response: Response) -> Response:
        """Receive the rest of a small unread request body before answering; otherwise close after an error.

        Hypercorn silently drops a keep-alive connection whose request body it has not wholly received when the
        answer ends, and the client's next request on that connection fails. Errors answered before the view read
        the body (401, 404, bad JSON) are the usual case.
        """
        length = request.content_length
        if length is not None and length <= _DRAIN_LIMIT:
            with contextlib.suppress(Exception):
                await request.get_data()
        elif response.status_code >= 400 and (length or request.headers.get("Transfer-Encoding")):
            response.headers["Connection"] = "close"
        return response

    if config.bool("HttpCompressionEnabled"):

        @app.after_request
        async def compress(response: Response) -> Response:
            return await compress_response(response, request.headers.get("Accept-Encoding"), request.method)

    @app.errorhandler(OrthancError)
    async def orthanc_error(error: OrthancError) -> Response:
        return orthanc_error_response(error, describe=describe)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_ERRORS.get(status, ErrorCode.INTERNAL_ERROR)
        response = error_response(
            code, error.description if status != 404 else None, http_status=status, describe=describe
        )
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(UnicodeDecodeError)
    async def not_text(error: UnicodeDecodeError) -> Response:
        # request.get_data(as_text=True) on a body that is not UTF-8: the client's mistake, not ours
        return error_response(ErrorCode.BAD_REQUEST, f"The body is not UTF-8 text: {error}", describe=describe)

    @app.errorhandler(Exception)
    async def internal_error(error: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(ErrorCode.INTERNAL_ERROR, str(error), http_status=500, describe=describe)

    ctx.pm.hook.register_routes(app=app, context=ctx)
    return app


def current_user() -> str | None:
    return getattr(request, "isengard_user", None)
