"""Jobs: long operations (DICOM transfers, archives...) queued in the index and run by the servers' engines.

A job type is registered by the ``register_job_types`` hook (the kernel's own types are plugins of the kernel,
like its REST families); see :mod:`isengard.jobs.engine` for how servers share jobs and
:mod:`isengard.jobs.run` for what a job type's code sees.
"""

from .engine import JobEngine
from .run import JobInterrupted, JobRun, JobType, RetryJob

__all__ = ["JobEngine", "JobInterrupted", "JobRun", "JobType", "RetryJob"]
