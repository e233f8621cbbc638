"""Running the server: index and storage up, then HTTP (Hypercorn) and DICOM, until asked to stop or restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from .context import ServerContext, create_context
from .dicom.scp import DicomServer
from .rest.app import create_app

log = logging.getLogger("isengard")
GRACEFUL_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = GRACEFUL_TIMEOUT + 1.0


def hypercorn_config(ctx: ServerContext, *, host: str | None = None) -> HypercornConfig:
    config = ctx.config
    hc = HypercornConfig()
    # As Orthanc: listen on every interface whatever RemoteAccessAllowed says; the request gate in rest/app.py
    # answers 401 to other hosts, so a refused client learns why instead of finding no server.
    hc.bind = [f"{host or '0.0.0.0'}:{config.int('HttpPort')}"]
    hc.keep_alive_timeout = float(config.int("HttpRequestTimeout")) if config.bool("KeepAlive") else 0.5
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    if config.bool("SslEnabled"):
        pem = str(config.path("SslCertificate"))
        hc.certfile = pem
        hc.keyfile = pem  # Orthanc's SslCertificate holds the certificate and its private key in one PEM
    return hc


async def _finish(server: asyncio.Task[Any]) -> None:
    """Wait for Hypercorn to stop; re-raise a server that could not start (port in use, bad certificate).

    An idle TLS connection a client keeps open holds Hypercorn's shutdown past its graceful timeout, for asyncio's
    SSL close timeout (30 s): the wait is bounded, then the server task is cancelled.
    """
    done, _ = await asyncio.wait([server], timeout=SHUTDOWN_TIMEOUT)
    if done:
        server.result()
        return
    log.warning("HTTP connections still open %.0fs after the stop: closing them", SHUTDOWN_TIMEOUT)
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # cut short in its clean-up, it may raise anything
        await server


async def run_once(ctx: ServerContext, *, host: str | None = None, ready: asyncio.Event | None = None) -> bool:
    """Serve until stopped; returns True when a restart (/tools/reset) was asked."""
    started = time.monotonic()
    await ctx.start()
    dicom: DicomServer | None = None
    try:
        grace = float(ctx.config.int("OrphanedFilesGracePeriod"))
        sweep = asyncio.create_task(ctx.store.sweep(grace=grace), name="isengard-sweep")
        servers: list[Any] = []
        if ctx.config.bool("HttpServerEnabled"):
            app = create_app(ctx)
            shutdown_trigger = ctx.lifecycle.stopping.wait
            servers.append(
                asyncio.create_task(serve(app, hypercorn_config(ctx, host=host), shutdown_trigger=shutdown_trigger))
            )
        if ctx.config.bool("DicomServerEnabled"):
            dicom = DicomServer(ctx, asyncio.get_running_loop())
            await asyncio.to_thread(dicom.start)
        log.warning(
            "Isengard is ready (%.2fs) on HTTP port %s, DICOM port %s",
            time.monotonic() - started,
            ctx.config.int("HttpPort"),
            ctx.config.int("DicomPort"),
        )
        ctx.jobs.open()
        if ready is not None:
            ready.set()
        stop = asyncio.create_task(ctx.lifecycle.stopping.wait())
        await asyncio.wait([stop, *servers], return_when=asyncio.FIRST_COMPLETED)
        ctx.lifecycle.request_stop()
        for task in servers:
            await _finish(task)
        sweep.cancel()
    finally:
        await ctx.jobs.stop()  # first: a job moving instances to this server needs its DICOM server
        if dicom is not None:
            await asyncio.to_thread(dicom.stop)
        await ctx.events.drained()
        await ctx.stop()
    return ctx.lifecycle.restart


async def serve_forever(config_path: str | None, overrides: dict[str, Any] | None = None) -> None:
    loop = asyncio.get_running_loop()
    while True:
        ctx = create_context(config_path, overrides=overrides)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ctx.lifecycle.request_stop)
        if not await run_once(ctx):
            return
        log.info("restarting (configuration reloaded)")
