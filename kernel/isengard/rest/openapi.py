"""/openapi.json: the description of the routes actually registered (kernel and plugins), built at request time."""

from __future__ import annotations

import inspect
import re
from typing import Any

from quart import Blueprint, Quart, Response, current_app

from .. import ORTHANC_VERSION, __version__, hookimpl
from ..context import ServerContext
from .common import answer

bp = Blueprint("openapi", __name__)

_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def describe(app: Quart) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions.get(rule.endpoint)
        doc = inspect.getdoc(view) or ""
        summary, _, details = doc.partition("\n\n")
        choices = re.search(r"<any\(([^)]*)\):[a-z_]+>", rule.rule)
        templates = [rule.rule]
        if choices:  # "/<any(patients, studies):collection>/..." documents each collection
            templates = [rule.rule.replace(choices.group(0), c.strip()) for c in choices.group(1).split(",")]
        for template in templates:
            path = _CONVERTER.sub(lambda m: "{" + m.group(1) + "}", template)
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{([a-z_]+)}", path)
            ]
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                operation: dict[str, Any] = {
                    "summary": summary.replace("\n", " "),
                    "responses": {"200": {"description": "Success"}},
                }
                if details:
                    operation["description"] = details
                if params:
                    operation["parameters"] = params
                paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Isengard REST API",
            "version": __version__,
            "description": f"Orthanc-compatible REST API (Orthanc {ORTHANC_VERSION}).",
        },
        "paths": dict(sorted(paths.items())),
    }


@bp.get("/openapi.json")
async def openapi() -> Response:
    """The OpenAPI 3 description of every route this server answers."""
    return answer(describe(current_app))


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
