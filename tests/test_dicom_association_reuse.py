"""Outgoing associations: C-STORE associations kept open for DicomAssociationCloseDelay and reused, and the
timeouts of the associations the DICOM server requests (C-MOVE sub-operations: DicomScuTimeout).

The peers are pynetdicom storage SCPs in this process, which record every association they see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove, Verification

from isengard.testing import ServerProcess, free_port, sample

FLAIR = sorted(sample("Brainix", "Flair").glob("*.dcm"))[:6]
CLOSE_DELAY = 2
SCU_TIMEOUT = 2


@dataclass
class Seen:
    """What happened to one association at the peer."""

    opened: float
    stores: list[str] = field(default_factory=list)
    released: float | None = None  # A-RELEASE from the other side
    closed: float | None = None  # connection closed, whatever the reason


class CountingScp:
    """A storage SCP that records each association: when it opened, what it carried, how and when it ended."""

    def __init__(self, aet: str, *, network_timeout: float = 60, store_delay: float = 0) -> None:
        self.aet, self.port, self.store_delay = aet, free_port(), store_delay
        self.lock = threading.Lock()
        self.seen: dict[Association, Seen] = {}
        ae = AE(ae_title=aet)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.network_timeout = network_timeout
        handlers = [
            (evt.EVT_ESTABLISHED, self._established),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_RELEASED, self._released),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _established(self, event: evt.Event) -> None:
        with self.lock:
            self.seen[event.assoc] = Seen(time.monotonic())

    def _store(self, event: evt.Event) -> int:
        time.sleep(self.store_delay)
        with self.lock:
            self.seen[event.assoc].stores.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def _released(self, event: evt.Event) -> None:
        with self.lock:
            if event.assoc in self.seen:
                self.seen[event.assoc].released = time.monotonic()

    def _closed(self, event: evt.Event) -> None:
        with self.lock:
            if event.assoc in self.seen:
                self.seen[event.assoc].closed = time.monotonic()

    def associations(self) -> list[Seen]:
        with self.lock:
            return sorted(self.seen.values(), key=lambda s: s.opened)

    def reset(self) -> None:
        """Forget the associations seen so far, once they have all closed (none of them can be reused then)."""
        self.wait_all_closed(CLOSE_DELAY + 5)
        with self.lock:
            self.seen.clear()

    def wait_all_closed(self, timeout: float) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while any(s.closed is None for s in self.associations()):
            assert time.monotonic() < deadline, "an association stayed open"
            time.sleep(0.05)
        return self.associations()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def peer() -> Iterator[CountingScp]:
    scp = CountingScp("COUNTER")
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def grumpy() -> Iterator[CountingScp]:
    """Drops an association after 1 s of silence, sooner than the client would close it."""
    scp = CountingScp("GRUMPY", network_timeout=1)
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[CountingScp]:
    """Answers each C-STORE after longer than the server's DicomScuTimeout."""
    scp = CountingScp("SLOW", store_delay=SCU_TIMEOUT + 6)
    yield scp
    scp.stop()


def modalities(*scps: CountingScp) -> dict[str, Any]:
    found: dict[str, Any] = {s.aet.lower(): [s.aet, "127.0.0.1", s.port] for s in scps}
    found["mover"] = ["MOVER", "127.0.0.1", 104]
    return found


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, peer: CountingScp, grumpy: CountingScp, slow: CountingScp
) -> Iterator[tuple[ServerProcess, list[str]]]:
    config = {
        "DicomAet": "ISENGARD",
        "DicomAssociationCloseDelay": CLOSE_DELAY,
        "DicomScuTimeout": SCU_TIMEOUT,
        "DicomScpTimeout": 30,
        "DicomModalities": modalities(peer, grumpy, slow),
    }
    srv = ServerProcess(tmp_path_factory.mktemp("reuse"), config).start()
    ids = [answer["ID"] for answer in srv.upload(*FLAIR)]
    yield srv, ids
    srv.stop()


def store(server: ServerProcess, modality: str, *resources: str) -> None:
    r = server.post(f"/modalities/{modality}/store", json={"Resources": list(resources), "Synchronous": True})
    assert r.status_code == 200, r.text
    assert r.json()["FailedInstancesCount"] == 0


# -- DicomAssociationCloseDelay -------------------------------------------------------------------------------
def test_stores_in_a_row_share_one_association_released_after_the_delay(
    server: tuple[ServerProcess, list[str]], peer: CountingScp
) -> None:
    srv, ids = server
    peer.reset()
    store(srv, "counter", ids[0])
    store(srv, "counter", ids[1])
    store(srv, "counter", ids[2], ids[3])
    done = time.monotonic()
    [assoc] = peer.associations()
    assert len(assoc.stores) == 4
    assert assoc.closed is None  # still open, waiting for more
    [assoc] = peer.wait_all_closed(CLOSE_DELAY + 5)
    assert assoc.released is not None, "closed without an A-RELEASE"
    assert CLOSE_DELAY - 0.5 <= assoc.released - done <= CLOSE_DELAY + 3
    store(srv, "counter", ids[0])  # after the delay: a new association
    assert len(peer.associations()) == 2


def test_parallel_stores_get_an_association_each(server: tuple[ServerProcess, list[str]], peer: CountingScp) -> None:
    """Concurrent senders never share an association; the ones they leave are reused by the next round."""
    srv, ids = server
    peer.reset()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store(srv, "counter", i), ids[:4]))
        first_round = len(peer.associations())
        list(pool.map(lambda i: store(srv, "counter", i), ids[2:6]))
    seen = peer.wait_all_closed(CLOSE_DELAY + 5)
    assert 1 <= first_round <= 4
    assert len(seen) <= 4, "the second round opened new associations instead of reusing the idle ones"
    uids = stored_uids(srv, ids)
    assert sorted(uid for s in seen for uid in s.stores) == sorted(uids[:4] + uids[2:6])
    assert all(s.released is not None for s in seen), "an association was aborted"


def stored_uids(srv: ServerProcess, ids: list[str]) -> list[str]:
    with srv.client() as c:
        return [c.get(f"/instances/{i}/content/0008,0018").text.strip("\0 ") for i in ids]


def test_an_association_the_peer_dropped_is_not_reused(
    server: tuple[ServerProcess, list[str]], grumpy: CountingScp
) -> None:
    srv, ids = server
    grumpy.reset()
    store(srv, "grumpy", ids[0])
    [first] = grumpy.wait_all_closed(5)  # after 1 s of silence, well before the client's delay
    assert first.released is None
    time.sleep(0.2)
    store(srv, "grumpy", ids[1])
    assert len(grumpy.associations()) == 2
    assert srv.get("/system").status_code == 200


def test_no_reuse_without_a_delay(isengard: Any, peer: CountingScp) -> None:
    srv = isengard({"DicomAssociationCloseDelay": 0, "DicomModalities": modalities(peer)})
    ids = [answer["ID"] for answer in srv.upload(*FLAIR[:2])]
    peer.reset()
    store(srv, "counter", ids[0])
    store(srv, "counter", ids[1])
    seen = peer.wait_all_closed(2)
    assert [len(s.stores) for s in seen] == [1, 1]
    assert all(s.released is not None for s in seen)


# -- timeouts of the associations the server requests and accepts --------------------------------------------
def test_move_sub_associations_wait_dicom_scu_timeout(
    server: tuple[ServerProcess, list[str]], slow: CountingScp
) -> None:
    """The destination takes SCU_TIMEOUT + 6 s per C-STORE: the sub-operation fails after DicomScuTimeout (2 s),
    not after DicomScpTimeout (30 s)."""
    srv, ids = server
    uid = stored_uids(srv, ids[:1])[0]
    assoc = associate_to(srv)
    try:
        identifier = dataset(QueryRetrieveLevel="IMAGE", SOPInstanceUID=uid)
        started = time.monotonic()
        responses = list(assoc.send_c_move(identifier, "SLOW", StudyRootQueryRetrieveInformationModelMove))
        elapsed = time.monotonic() - started
    finally:
        assoc.release()
    final = responses[-1][0]
    assert int(final.NumberOfFailedSuboperations) == 1, final
    assert elapsed < SCU_TIMEOUT + 4.5  # well before the destination answers, with room for a loaded machine


def test_incoming_associations_keep_dicom_scp_timeout(server: tuple[ServerProcess, list[str]]) -> None:
    """An association to the server may stay silent longer than DicomScuTimeout."""
    srv, _ = server
    assoc = associate_to(srv)
    try:
        time.sleep(SCU_TIMEOUT + 1)
        assert assoc.is_established
        assert int(assoc.send_c_echo().Status) == 0x0000
    finally:
        assoc.release()


def associate_to(srv: ServerProcess) -> Association:
    ae = AE(ae_title="MOVER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", srv.config["DicomPort"], ae_title="ISENGARD")
    assert assoc.is_established
    return assoc


def dataset(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds
