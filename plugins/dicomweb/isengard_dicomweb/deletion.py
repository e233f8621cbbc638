"""DELETE of studies, series and instances named by their UIDs, what Orthanc's DICOMweb client sends to a server
defined with ``HasDelete`` (and dicomweb-client's ``delete_study``, ``delete_series``, ``delete_instance``).

PS3.18 has no such transaction (dicomweb-client says so) and Orthanc's plugin 1.7 answers 405: the answer is that of
the DICOMweb servers that do offer it, 204 No Content, and an unknown UID is the 404 of PS3.18 8.7.7. The resources
go through the kernel's deletion (store.py), as a DELETE of the REST API does: the authorize hook sees the request,
and the changes and on_deleted events follow. A UID shared by two patients deletes both, as the path names both.
"""

from __future__ import annotations

from quart import Blueprint, Response

from isengard.rest.common import context

from .resources import at_every_level, resolve

bp = Blueprint("dicomweb_deletion", __name__)


@at_every_level(bp, "", method="DELETE")
async def delete(study: str, series: str | None = None, instance: str | None = None) -> Response:
    """Delete a study, a series or an instance, with the ancestors it leaves empty."""
    ctx = context()
    level, resources = await resolve(ctx, study, series, instance)
    for resource in resources:
        await ctx.store.delete(level, resource.public_id)
    return Response(status=204)
