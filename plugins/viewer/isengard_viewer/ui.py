"""The browser viewer: static ES modules under /viewer/ (no build step), and Orthanc Web Viewer's address.

The page is a plain client of /viewer/api and of the REST API, with relative URLs only (it works behind a reverse
proxy's prefix). Orthanc's Web viewer plugin opens a series at /web-viewer/app/viewer.html?series={id}: that
address redirects here, so links made for Orthanc keep working.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, redirect, request, send_from_directory
from werkzeug.exceptions import NotFound

from isengard.rest.pages import page_headers

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = page_headers()

bp = Blueprint("viewer_ui", __name__)


def _query() -> str:
    text = request.query_string.decode("latin-1")
    return f"?{text}" if text else ""


@bp.get("/viewer")
async def without_slash() -> Response:
    """The page's address with its trailing slash, which its relative module URLs need."""
    return redirect(f"viewer/{_query()}", 301)


@bp.get("/web-viewer/app/viewer.html")
async def orthanc_web_viewer() -> Response:
    """Orthanc Web Viewer's page (``?series=``): the same query, relative to /web-viewer/app/."""
    return redirect(f"../../viewer/{_query()}", 302)


@bp.get("/viewer/")
async def index() -> Response:
    """The viewer: one page; ``?series=`` opens a series, ``?study=`` lists a study's series."""
    return await _static("index.html")


@bp.get("/viewer/<path:path>")
async def static_file(path: str) -> Response:
    """A file of the viewer (the API's routes, more specific, win); send_from_directory stays in the folder."""
    return await _static(path)


async def _static(path: str) -> Response:
    if path.endswith("/") or not (STATIC / path).is_file():
        raise NotFound()
    response = await send_from_directory(STATIC, path)
    response.headers.update(SECURITY_HEADERS)
    return response
