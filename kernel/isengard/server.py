"""Running the server: index and storage up, then HTTP (Hypercorn) and DICOM, until asked to stop or restart."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from .context import ServerContext, create_context
from .rest.app import create_app

log = logging.getLogger("isengard")


def hypercorn_config(ctx: ServerContext, *, host: str | None = None) -> HypercornConfig:
    config = ctx.config
    hc = HypercornConfig()
    bind_host = host or ("0.0.0.0" if config.bool("RemoteAccessAllowed") else "127.0.0.1")
    hc.bind = [f"{bind_host}:{config.int('HttpPort')}"]
    hc.keep_alive_timeout = float(config.int("HttpRequestTimeout")) if config.bool("KeepAlive") else 0.5
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 5.0
    if config.bool("SslEnabled"):
        pem = str(config.path("SslCertificate"))
        hc.certfile = pem
        hc.keyfile = pem  # Orthanc's SslCertificate holds the certificate and its private key in one PEM
    return hc


async def run_once(ctx: ServerContext, *, host: str | None = None, ready: asyncio.Event | None = None) -> bool:
    """Serve until stopped; returns True when a restart (/tools/reset) was asked."""
    started = time.monotonic()
    await ctx.start()
    try:
        sweep = asyncio.create_task(ctx.store.sweep(), name="isengard-sweep")
        servers: list[Any] = []
        if ctx.config.bool("HttpServerEnabled"):
            app = create_app(ctx)
            shutdown_trigger = ctx.lifecycle.stopping.wait
            servers.append(
                asyncio.create_task(serve(app, hypercorn_config(ctx, host=host), shutdown_trigger=shutdown_trigger))
            )
        log.warning("Isengard is ready (%.2fs) on HTTP port %s", time.monotonic() - started, ctx.config.int("HttpPort"))
        if ready is not None:
            ready.set()
        stop = asyncio.create_task(ctx.lifecycle.stopping.wait())
        await asyncio.wait([stop, *servers], return_when=asyncio.FIRST_COMPLETED)
        ctx.lifecycle.request_stop()
        for task in servers:
            await task  # re-raises a server that could not start (port in use, bad certificate)
        sweep.cancel()
    finally:
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
