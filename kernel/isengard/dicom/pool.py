"""Outgoing associations kept open a while after use, for the next C-STOREs to the same peer (Orthanc's
DicomAssociationCloseDelay): a series sent instance by instance, or one /store after another, then costs one
association instead of one each.

An idle association belongs to nobody: :meth:`AssociationPool.take` hands it to one thread at a time (pynetdicom
associations are not meant for concurrent use), so parallel senders to one peer each get their own, and each
one goes back to the pool when its sender is done. A timer releases an association left idle for the delay, and
the server's shutdown releases them all: pynetdicom's threads of an open association would hold the process up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Idle:
    assoc: Association
    timer: threading.Timer = field(init=False)


class AssociationPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Hashable, list[_Idle]] = {}

    def take(self, key: Hashable) -> Association | None:
        """The most recently used idle association for this key that is still up, now the caller's; or None."""
        while True:
            with self._lock:
                entries = self._idle.get(key)
                if not entries:
                    return None
                entry = entries.pop()
                if not entries:
                    del self._idle[key]
            entry.timer.cancel()
            if entry.assoc.is_established:  # not aborted by the peer, nor timed out, while it waited
                return entry.assoc

    def give_back(self, key: Hashable, assoc: Association, delay: float) -> None:
        """Keep ``assoc`` for the next :meth:`take` of this key, and release it after ``delay`` seconds unused."""
        if not assoc.is_established:
            return
        entry = _Idle(assoc)
        entry.timer = threading.Timer(delay, self._expire, (key, entry))
        entry.timer.daemon = True
        with self._lock:
            self._idle.setdefault(key, []).append(entry)
        entry.timer.start()

    def _expire(self, key: Hashable, entry: _Idle) -> None:
        with self._lock:
            entries = self._idle.get(key, [])
            if entry not in entries:  # taken meanwhile
                return
            entries.remove(entry)
            if not entries:
                del self._idle[key]
        _release(entry.assoc)

    def close_all(self) -> None:
        """Release every idle association now (at shutdown: peers see a release, not a dropped connection)."""
        with self._lock:
            entries = [entry for group in self._idle.values() for entry in group]
            self._idle.clear()
        for entry in entries:
            entry.timer.cancel()
            _release(entry.assoc)


def _release(assoc: Association) -> None:
    try:
        if assoc.is_established:
            assoc.release()
    except Exception:  # the peer went away meanwhile: nothing left to release
        log.debug("releasing an idle association failed", exc_info=True)


#: The process's pool of outgoing C-STORE associations.
POOL = AssociationPool()
