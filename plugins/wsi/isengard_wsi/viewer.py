"""The slide viewer at /wsi/app/viewer.html?series={series}, with the page names of orthanc-wsi 1.1's viewer.

orthanc-wsi serves viewer.html, viewer.js, ol.js and ol.css under /wsi/app/; so does this plugin (plus
viewer.css, since a strict Content-Security-Policy forbids the style orthanc-wsi writes inline). OpenLayers is
vendored in static/vendor/ol (its README says which version and how to rebuild it): nothing comes from another
origin, and the page asks the server with relative URLs only, so it works behind a reverse proxy's prefix.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

from isengard.rest.pages import page_headers

STATIC = Path(__file__).parent / "static"

#: Public name under /wsi/app/ -> file under static/.
FILES = {
    "viewer.html": "viewer.html",
    "viewer.js": "viewer.js",
    "viewer.css": "viewer.css",
    "ol.js": "vendor/ol/ol.js",
    "ol.css": "vendor/ol/ol.css",
}

SECURITY_HEADERS = page_headers()

bp = Blueprint("wsi_viewer", __name__)


@bp.get("/wsi/app/<name>")
async def app_file(name: str) -> Response:
    """One file of the viewer; the series to show is in the page's query string, read by viewer.js."""
    path = FILES.get(name)
    if path is None:
        raise NotFound()
    response = await send_from_directory(STATIC, path)
    response.headers.update(SECURITY_HEADERS)
    return response
