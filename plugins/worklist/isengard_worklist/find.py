"""The worklist C-FIND: every worklist matched against the identifier, as Orthanc's worklists plugin answers.

Kept apart from the hook so that whatever changes the identifier first (the kernel's filtering of incoming
worklist queries, for the Lua IncomingWorklistRequestFilter) hands this function the query it should answer.

Orthanc's options: FilterIssuerAet keeps, for a query that does not constrain ScheduledStationAETitle, the worklists
with a step scheduled on the calling AET only (some modalities leave that key out, and would otherwise get every
worklist);
LimitAnswers stops at that many answers, the last response then saying "matching terminated" (0xFE00) as Orthanc
marks the answers incomplete.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from isengard.dicom.scp import FindAnswers

from .matching import Matcher, answer, issuer_filter
from .settings import WorklistSettings
from .store import WorklistStore

if TYPE_CHECKING:
    from isengard.context import ServerContext


async def find_worklists(
    ctx: ServerContext,
    store: WorklistStore,
    settings: WorklistSettings,
    query: Dataset,
    requestor: dict[str, str],
) -> FindAnswers:
    matcher = Matcher.parse(query, case_sensitive_pn=ctx.config.bool("CaseSensitivePN"))
    items = list((await store.all()).values())
    selector = issuer_filter(matcher, requestor.get("RemoteAET", "")) if settings.filter_issuer_aet else matcher
    # matching reads every worklist: in a worker thread, the event loop serves other requests meanwhile
    return await asyncio.to_thread(_match, matcher, selector, items, settings.limit_answers)


def _match(matcher: Matcher, selector: Matcher, items: list[Dataset], limit: int) -> FindAnswers:
    """The answers of ``matcher`` for the worklists ``selector`` (the same, or stricter) matches."""
    answers = FindAnswers()
    for item in items:
        if not selector.matches(item):
            continue
        if limit and len(answers) >= limit:
            answers.complete = False
            break
        answers.append(answer(matcher, item))
    return answers
