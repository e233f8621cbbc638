"""From the UIDs of a DICOMweb path to the resources of the index, and back to URLs.

DICOMweb names resources by their UIDs, the index by Orthanc's public ids (hashes that include the PatientID), so
every path is a find on the identifier tags. One StudyInstanceUID may belong to two patients in the index (a
collision Orthanc keeps apart); a path then names both, as a C-MOVE on that UID would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Blueprint, Response

from isengard.context import ServerContext
from isengard.dicom.tags import IDENTIFIER_TAGS
from isengard.errors import ErrorCode, OrthancError
from isengard.model import Resource, ResourceType
from isengard.query import ConstraintKind, FindQuery, TagConstraint

#: The levels DICOMweb paths name, from the top.
PATH_LEVELS = (ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE)


def uid_constraint(level: ResourceType, uid: str) -> TagConstraint:
    return TagConstraint(IDENTIFIER_TAGS[level], level, ConstraintKind.EQUAL, (uid,), case_sensitive=True)


async def resolve(ctx: ServerContext, *uids: str | None) -> tuple[ResourceType, list[Resource]]:
    """The resources a path names: ``(study, series, instance)`` UIDs, the trailing ones possibly ``None``.

    A series or instance UID alone (WADO-URI names instances that way too) is also accepted. Raises the 404 of
    PS3.18 8.7.7 when nothing matches.
    """
    constraints = [uid_constraint(level, uid) for level, uid in zip(PATH_LEVELS, uids, strict=False) if uid]
    if not constraints:
        raise OrthancError(ErrorCode.BAD_REQUEST, "No UID is given")
    level = max(c.level for c in constraints)
    ids = await ctx.index.find(FindQuery(level, constraints))
    if not ids:
        named = "/".join(uid for uid in uids if uid)
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Unknown {level.label.lower()}: {named}")
    return level, await ctx.index.get_resources(level, ids)


async def instances_of(ctx: ServerContext, level: ResourceType, resources: list[Resource]) -> list[str]:
    """The instances below the resources, in the index's order (series by series, instances as stored)."""
    out: list[str] = []
    for res in resources:
        out += [res.public_id] if level is ResourceType.INSTANCE else await ctx.index.instances_of(level, res.public_id)
    return out


def resource_path(uids: dict[ResourceType, str], level: ResourceType) -> str:
    """ "studies/1.2/series/3.4" for the series level: what RetrieveURL and BulkDataURI append to Root."""
    return "/".join(f"{lvl.plural}/{uids.get(lvl, '')}" for lvl in PATH_LEVELS if lvl <= level)


View = Callable[..., Awaitable[Response]]


def at_every_level(bp: Blueprint, suffix: str, method: str = "GET") -> Callable[[View], View]:
    """Serve a view of ``(study, series=None, instance=None)`` at the study, series and instance paths (followed by
    ``suffix``): WADO-RS names the same operation at the three levels (PS3.18 10.4), and so does deletion."""

    def register(view: View) -> View:
        series = "/studies/<study>/series/<series>"
        paths = ("/studies/<study>", series, f"{series}/instances/<instance>")
        defaults: tuple[dict[str, None], ...] = ({"series": None, "instance": None}, {"instance": None}, {})
        for path, values in zip(paths, defaults, strict=True):
            options = {"defaults": values} if values else {}  # a blueprint refuses defaults=None
            bp.add_url_rule(path + suffix, view_func=view, methods=[method], **options)
        return view

    return register
