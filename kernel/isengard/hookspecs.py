"""Every hook of Isengard: the kernel's whole contract with plugins.

Hooks take keyword arguments only, so new arguments can be added without breaking plugins: an implementation
declares just the arguments it uses. A hook may return a value or an awaitable of that value; the kernel awaits
what needs awaiting, so sync and async plugins look the same. Unless said otherwise, hooks are called from the
event loop: never block in them, run blocking work with ``asyncio.to_thread``.

The built-in features (the default index, storage and web UI) are plugins too and implement these hooks
exactly like a third-party distribution would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable

    from quart import Quart

    from .auth import AccessRequest
    from .backends import IndexBackend, StorageArea
    from .config import Config
    from .context import ServerContext
    from .dicom.parse import ParsedInstance
    from .jobs import JobType
    from .model import Change, JobRecord, ResourceType

hookspec = pluggy.HookspecMarker("isengard")


# -- configuration and wiring ---------------------------------------------------------------------------------


@hookspec
def config_defaults() -> dict[str, Any]:
    """Default values of the options a plugin reads, merged under the kernel's defaults at start-up.

    Called once, before the configuration is read. Option names follow Orthanc's (a plugin's options usually live
    in a section named after it, such as ``"DicomWeb": {...}``). Unknown options are logged, never fatal, so a
    plugin that declares its defaults also silences that warning for its options.
    """


@hookspec(firstresult=True)
def index_backend(config: Config) -> IndexBackend | None:
    """Provide the index: the first plugin that returns an object wins.

    Called once at start-up, before the server listens. Return ``None`` to let another plugin provide it (for
    instance when the configuration disables you, as Orthanc's ``"PostgreSQL": {"EnableIndex": false}`` does).
    The kernel calls ``start()`` on the backend before any other method.
    """


@hookspec(firstresult=True)
def storage_area(config: Config) -> StorageArea | None:
    """Provide the storage area for attachments: the first plugin that returns an object wins.

    Same timing and rules as :func:`index_backend`.
    """


@hookspec
def register_routes(app: Quart, context: ServerContext) -> None:
    """Add HTTP routes: typically ``app.register_blueprint(...)``.

    Called once while the Quart application is built, before it serves. Routes pass through the kernel's
    authentication and :func:`authorize` hook like the built-in ones. ``context`` gives access to the store,
    the index, the storage and the configuration.
    """


@hookspec
def register_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``isengard`` sub-commands: ``subparsers.add_parser("name")`` and ``set_defaults(func=...)``.

    Called when the command line is parsed, before any configuration is read. ``func`` receives the parsed
    ``argparse.Namespace`` and returns an exit status.
    """


@hookspec
def startup(context: ServerContext) -> Awaitable[None] | None:
    """Called once the index and storage are started, before the HTTP and DICOM servers accept requests."""


@hookspec
def shutdown(context: ServerContext) -> Awaitable[None] | None:
    """Called when the server stops, before the index and storage are closed."""


@hookspec
def register_job_types(context: ServerContext) -> dict[str, JobType] | None:
    """Job types the jobs engine can run: ``{type name: JobType(run=..., resumable=...)}``.

    Called once per server start, after the :func:`startup` hooks. The name is the job's ``Type`` in /jobs (use
    Orthanc's where one exists: "DicomModalityStore", "Archive"...); when two plugins give the same name, the one
    registered later wins. ``run`` is a coroutine function receiving a :class:`~isengard.jobs.JobRun`: it reads
    ``parameters`` and ``checkpoint``, calls ``await job.step(progress)`` between steps (where a pause, a
    cancellation or a shutdown stops it by raising), keeps in ``checkpoint`` what a later run needs to go on
    from there, updates ``content``, may store files with ``job.add_output``, and fails by raising (an
    :class:`~isengard.errors.OrthancError` gives the job its error code). Jobs are stored in the index, so any
    server on the database may run a job another one accepted: every server should load the same job plugins.
    """


# -- access control -------------------------------------------------------------------------------------------


@hookspec
def authorize(request: AccessRequest) -> bool | Awaitable[bool | None] | None:
    """Decide whether a request may touch data: REST, DICOMweb and DIMSE requests all come through here.

    Called after authentication (so ``request.user`` is known) and before the request reads or writes anything.
    Return ``False`` to refuse (HTTP 403, or a DICOM refusal status), ``True`` or ``None`` to let it through.
    Every implementation is asked; a single ``False`` refuses.
    """


# -- ingest ---------------------------------------------------------------------------------------------------


@hookspec
def accept_instance(
    instance: ParsedInstance, origin: dict[str, str]
) -> bool | int | Awaitable[bool | int | None] | None:
    """Filter incoming instances before they are written (Orthanc's ``ReceivedInstanceFilter``).

    Called for every instance, from REST, DICOM or a plugin, after its header is parsed and before anything is
    stored. ``origin`` holds the metadata of the reception (``Origin``, ``RemoteAET``, ``RemoteIP``, ...).
    Return ``False`` to discard the instance (REST answers 403, a C-STORE SCU is told success, as Orthanc does),
    or a non-zero DIMSE status to discard it and answer that status to a C-STORE SCU (Orthanc's
    ``ReceivedCStoreInstanceFilter``). ``True``, ``None`` and 0 keep it.
    """


# -- events ---------------------------------------------------------------------------------------------------


@hookspec
def on_stored(
    context: ServerContext, instance_id: str, instance: ParsedInstance, origin: dict[str, str]
) -> Awaitable[None] | None:
    """An instance was stored (its file written and indexed); not called for "AlreadyStored".

    Called from the event loop after the index committed, in the order instances were stored. Exceptions are
    logged and never undo the storage. Use it for routing, forwarding, auto-processing.
    """


@hookspec
def on_deleted(context: ServerContext, level: ResourceType, public_id: str) -> Awaitable[None] | None:
    """A resource was deleted (once for the resource asked, after the index committed and files are gone)."""


@hookspec
def on_change(context: ServerContext, change: Change) -> Awaitable[None] | None:
    """Every entry of the change log, with its sequence number, once committed.

    Orthanc's change types (``NewInstance``, ``NewSeries``, ``StableStudy``, ``Deleted``, ``UpdatedMetadata``,
    ...). Audit trails and push notifications are built on this hook: it sees each change exactly once per
    server process, in sequence order.
    """


@hookspec
def on_stable(context: ServerContext, level: ResourceType, public_id: str) -> Awaitable[None] | None:
    """A patient, study or series received no new instance for ``StableAge`` seconds.

    Called once per resource each time it becomes stable, right after the matching ``Stable*`` change is
    logged (which :func:`on_change` also receives).
    """


@hookspec
def on_job_state(context: ServerContext, job: JobRecord) -> Awaitable[None] | None:
    """A job was submitted (state ``Pending``) or finished on this server (``Success`` or ``Failure``).

    Delivered like :func:`on_change`, in order and off the request path; ``job`` is its record
    (``id``, ``type``, ``state``, ``content``...). Orthanc's Lua ``OnJobSubmitted``/``OnJobSuccess``/
    ``OnJobFailure`` are built on it.
    """


# -- DICOM network --------------------------------------------------------------------------------------------


@hookspec
def filter_find_query(
    context: ServerContext, query: Any, model: str, requestor: dict[str, str]
) -> Awaitable[Any | None] | Any | None:
    """Rewrite an incoming C-FIND query before it is answered (Orthanc's Lua ``IncomingFindRequestFilter``).

    Called from the event loop for every C-FIND the server accepted, right before :func:`handle_c_find`, with
    the same arguments. Return a replacement ``pydicom.Dataset`` (a patched copy: some modalities send
    wildcards or private elements other servers misread), or ``None`` to keep the query. Every implementation is
    asked with the query as received; the first replacement, in call order, is the one answered.
    """


@hookspec
def filter_outgoing_find(context: ServerContext, query: Any, modality: str) -> Awaitable[Any | None] | Any | None:
    """Rewrite a C-FIND this server is about to send (Orthanc's Lua ``OutgoingFindRequestFilter``).

    Called from the event loop for the queries of ``/modalities/{id}/query`` and ``/queries/.../query-*`` (as
    Orthanc, not for the deprecated ``find-*`` routes), with the identifier (a ``pydicom.Dataset``) and the
    modality's symbolic name. Return a replacement dataset to send instead (fixing what a given PACS
    misreads), or ``None`` to send it as it is; the first replacement, in call order, is sent.
    """


@hookspec(firstresult=True)
def handle_c_find(
    context: ServerContext, query: Any, model: str, requestor: dict[str, str]
) -> Awaitable[list[Any] | None] | list[Any] | None:
    """Answer a C-FIND: return the list of matching datasets, or ``None`` to let the next handler answer.

    ``query`` is the request identifier (a ``pydicom.Dataset``), ``model`` the SOP class UID of the information
    model (patient root, study root, modality worklist, ...), ``requestor`` holds ``RemoteAET``, ``CalledAET``
    and ``RemoteIP``. The kernel's default handler answers the query/retrieve models from the index; the worklist
    plugin answers the worklist model. Called from the event loop.

    The first non-``None`` answer wins, so decide synchronously: return ``None`` to pass, or a list (or an
    awaitable of a list, e.g. the coroutine of an ``async def`` helper) to answer. An ``async def`` hook
    implementation always answers, since its coroutine is not ``None``.
    """
