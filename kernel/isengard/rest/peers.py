"""/peers: the known Orthanc peers, and sending instances to them over HTTP(S).

Bodies, answers and errors are Orthanc's (1.12): /store takes what /modalities/{id}/store takes (an identifier,
a list of them, or {"Resources": [...], ...}) plus "Transcode" and "Compress", and answers Orthanc's report, or
{"ID", "Path"} of an "OrthancPeerStore" job when asked ("Asynchronous": true or "Synchronous": false). A peer
that cannot be reached, or answers an HTTP error, gives Orthanc's "Error in the network protocol" (9, HTTP 500).
"""

from __future__ import annotations

from typing import Any

import httpx
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom.transcode import parse_syntax
from ..errors import ErrorCode, OrthancError
from ..jobs import peer_store
from ..peers import OrthancPeer, Peers, call, client
from .common import answer, context, text_answer
from .jobs import job_request, submitted
from .modalities import _instances_of, _store_body, _store_request, bad_body, bool_field, raw_json

bp = Blueprint("peers", __name__)

_OPERATIONS = ["configuration", "store", "store-straight", "system"]


@bp.get("/peers")
async def list_peers() -> Response:
    """The known peers (names, or their public configurations with ``expand``)."""
    found = await Peers(context()).all()
    if "expand" in request.args:
        return answer({name: peer.public_json() for name, peer in found.items()})
    return answer(list(found))


@bp.get("/peers/<name>")
async def peer_operations(name: str) -> Response:
    """The operations available on one peer."""
    await Peers(context()).get(name)
    return answer(_OPERATIONS)


@bp.get("/peers/<name>/configuration")
async def peer_configuration(name: str) -> Response:
    """The configuration of one peer, without its secrets."""
    return answer((await Peers(context()).get(name)).public_json())


@bp.put("/peers/<name>")
async def put_peer(name: str) -> Response:
    """Define or replace a peer (kept in the index, so it survives restarts and every server sees it)."""
    peer = OrthancPeer.parse(await raw_json())
    await Peers(context()).put(name, peer)
    return text_answer("")


@bp.delete("/peers/<name>")
async def delete_peer(name: str) -> Response:
    """Forget a peer (one of the configuration file's included)."""
    await Peers(context()).delete(name)
    return text_answer("")


@bp.get("/peers/<name>/system")
async def peer_system(name: str) -> Response:
    """The peer's own /system: a check that it is reachable, with these credentials, and what it is."""
    ctx = context()
    peer = await Peers(ctx).get(name)
    async with client(ctx.config, peer) as http:
        response = await call(http, "GET", "system")
    return _peer_answer(peer, response)


def _peer_answer(peer: OrthancPeer, response: httpx.Response) -> Response:
    """The peer's JSON answer, passed on as it is."""
    try:
        return answer(response.json())
    except ValueError:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"The Orthanc peer at {peer.url} answered no JSON") from None


def _transcode_field(options: dict[str, Any]) -> str:
    value = options.get("Transcode", "")
    if not isinstance(value, str):
        raise bad_body("String value expected in field: Transcode")
    if not value:
        return ""
    try:
        return str(parse_syntax(value))
    except OrthancError:
        raise bad_body(f"Unknown transfer syntax UID: {value}") from None


@bp.post("/peers/<name>/store")
async def store(name: str) -> Response:
    """Send patients, studies, series or instances to the peer, one ``POST /instances`` per instance (as a job
    with ``"Asynchronous": true``)."""
    ctx = context()
    resources, options = _store_request(await _store_body())
    synchronous, priority = job_request(options)
    transcode_to = _transcode_field(options)
    compress = bool_field(options, "Compress", False)
    peer = await Peers(ctx).get(name)
    instances = await _instances_of(ctx, resources)
    if ctx.config.bool("LogExportedResources"):
        await peer_store.log_exports(ctx, name, resources)
    content = peer_store.store_content(peer, resources, len(instances), transcode_to, compress)
    if not synchronous:
        parameters = peer_store.job_parameters(peer, instances, transcode_to, compress)
        return submitted(await ctx.jobs.submit(peer_store.JOB_TYPE, parameters, content, priority=priority))
    sent = await peer_store.send(ctx, peer, instances, transcode_to=transcode_to, compress=compress)
    peer_store.account(content, sent)
    return answer(content)


@bp.post("/peers/<name>/store-straight")
async def store_straight(name: str) -> Response:
    """Forward the DICOM file of the body to the peer, without storing it here; answers the peer's answer."""
    ctx = context()
    peer = await Peers(ctx).get(name)
    data = await request.get_data()
    async with client(ctx.config, peer) as http:
        response = await call(http, "POST", "instances", content=data, headers={"Content-Type": "application/dicom"})
    return _peer_answer(peer, response)


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
