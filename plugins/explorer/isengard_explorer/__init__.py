"""Explorer: the web user interface of Isengard, served at /ui/ (and / redirects there).

The interface is a plain client of the public REST API (Orthanc's routes), like any other program: it reads
nothing from the server's internals, so what it shows is exactly what a script would get. It ships as static
ES modules and CSS (no build step, see docs/explorer.md), answered with a strict Content-Security-Policy: every
script, style, image and request comes from this origin, nothing is inline.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Quart, Response, redirect, send_from_directory
from werkzeug.exceptions import NotFound

from isengard import hookimpl
from isengard.context import ServerContext
from isengard.rest.pages import page_headers

STATIC = Path(__file__).parent / "static"

#: ``blob:`` images are the previews the upload page makes of local files; its search forms submit here.
SECURITY_HEADERS = page_headers(images="'self' blob: data:", forms=True)

bp = Blueprint("explorer", __name__)


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


# Redirections are relative (RFC 9110 allows it): behind a reverse proxy that serves the server under a prefix,
# an absolute "/ui/" would leave the prefix out.


@bp.get("/")
async def root() -> Response:
    """Orthanc sends / to its explorer; Isengard sends it to this one."""
    return redirect("ui/", 302)


@bp.get("/app/explorer.html")
async def orthanc_explorer() -> Response:
    """Orthanc's explorer address, bookmarked: this one instead."""
    return redirect("../ui/", 302)


@bp.get("/ui")
async def ui_without_slash() -> Response:
    """The interface's address with its trailing slash, which the page's relative module URLs need."""
    return redirect("ui/", 301)


@bp.get("/ui/")
async def index() -> Response:
    """The interface: one page, the rest is ES modules and CSS under /ui/."""
    return _secured(await send_from_directory(STATIC, "index.html"))


@bp.get("/ui/<path:path>")
async def static_file(path: str) -> Response:
    """A file of the interface; send_from_directory refuses paths that leave the static folder."""
    if path.endswith("/") or not (STATIC / path).is_file():
        raise NotFound()
    return _secured(await send_from_directory(STATIC, path))


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
