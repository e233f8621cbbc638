"""The "Archive" and "Media" jobs: a ZIP archive (or DICOM media) made in the background, kept as the job's
output ``archive`` for GET /jobs/{id}/archive.

The ZIP is written to a temporary file as it is produced, then copied into the storage area (without being read
into memory where the storage allows it), so a large archive costs disk, never memory. A run cut short starts
again from the beginning: there is no checkpoint, the archive being one file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import hookimpl
from ..archive import ArchiveOptions, Plan, plan_archive, write_archive
from .run import JobRun, JobType

ARCHIVE, MEDIA = "Archive", "Media"
MIME_TYPE = "application/zip"
_MB = 1024 * 1024


def archive_content(plan: Plan, archive_size: int = 0) -> dict[str, Any]:
    """Orthanc's Content of an archive job: sizes as strings, and in whole MB."""
    size = plan.uncompressed_size
    return {
        "ArchiveSize": str(archive_size),
        "ArchiveSizeMB": archive_size // _MB,
        "Description": "REST API",
        "InstancesCount": len(plan.entries),
        "UncompressedSize": str(size),
        "UncompressedSizeMB": size // _MB,
    }


def job_parameters(resources: list[str], options: ArchiveOptions, filename: str) -> dict[str, Any]:
    return {
        "Resources": resources,
        "Extended": options.extended,
        "Transcode": options.transcode,
        "LossyQuality": options.quality,
        "Filename": filename,
    }


async def run_job(job: JobRun) -> None:
    params = job.parameters
    ctx = job.context
    options = ArchiveOptions(
        media=job.record.type == MEDIA,
        extended=params["Extended"],
        transcode=params["Transcode"],
        quality=params["LossyQuality"],
    )
    plan = await plan_archive(ctx, params["Resources"], media=options.media)
    job.content.update(archive_content(plan))
    total = max(1, len(plan.entries))

    async def progress(done: int) -> None:
        await job.step(done / total)

    fd, name = tempfile.mkstemp(prefix="isengard-archive-", suffix=".zip")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in write_archive(ctx, plan, options, progress):
                await asyncio.to_thread(out.write, chunk)
            size = out.tell()
        await job.step()  # a pause or cancellation asked meanwhile: before the copy into the storage
        job.content.update(archive_content(plan, size))
        await job.add_output("archive", path, MIME_TYPE, params["Filename"])
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {ARCHIVE: JobType(run_job), MEDIA: JobType(run_job)}
