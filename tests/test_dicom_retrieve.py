"""C-MOVE and C-GET from the DICOM server to real peers: dcmtk's storescp, movescu and getscu, a second Isengard,
and pynetdicom (a slow destination, to cancel a move while it runs).

One server holds Brainix, Comunix and the transfer-syntax samples; its modalities are the destinations below and
the AETs allowed to retrieve. At the end, the choice of retrieve method after a C-FIND (Orthanc 1.12.6): a remote
Isengard that knows no modality at all, so that only a C-GET brings anything back from it.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from isengard.testing import (
    ServerProcess,
    SlowStoreScp,
    assert_orthanc_error,
    free_port,
    instance_id,
    latencies_during,
    sample,
    wait_job,
)

AET = "ISENGARD"
BRAINIX_STUDY = "2.16.840.1.113669.632.20.1211.10000357775"
BRAINIX_FLAIR = "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114285654497"
COMUNIX_ACCESSION = "1657271"
SUCCESS, PENDING, CANCEL, WARNING, DESTINATION_UNKNOWN = 0x0000, 0xFF00, 0xFE00, 0xB000, 0xA801
MOVE_FAILED, GET_FAILED = 0xC511, 0xC411
MOVE_MODEL = StudyRootQueryRetrieveInformationModelMove  # pynetdicom's "unable to process" for a failed C-MOVE / C-GET


class StoreScp:
    """dcmtk's storescp, accepting every transfer syntax, writing what it receives to a folder."""

    def __init__(self, folder: Path, aet: str = "DEST") -> None:
        self.folder, self.aet, self.port = folder, aet, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["storescp", "-aet", aet, "+xa", "-od", str(folder), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["echoscu", "-aec", aet, "127.0.0.1", str(self.port)], capture_output=True).returncode:
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.05)

    def received(self) -> dict[str, Dataset]:
        """What arrived, by SOPInstanceUID."""
        found = (pydicom.dcmread(p) for p in self.folder.iterdir() if p.is_file())
        return {str(ds.SOPInstanceUID): ds for ds in found}

    def clear(self) -> None:
        for p in self.folder.iterdir():
            p.unlink()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreScp]:
    scp = StoreScp(tmp_path_factory.mktemp("storescp"))
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[SlowStoreScp]:
    scp = SlowStoreScp(delay=0.1)
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("peer"), {"DicomAet": "PEER"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dest: StoreScp, slow: SlowStoreScp, peer: ServerProcess
) -> Iterator[ServerProcess]:
    config = {
        "DicomAet": AET,
        "DicomModalities": {
            "dest": [dest.aet, "127.0.0.1", dest.port],
            "slow": [slow.aet, "127.0.0.1", slow.port],
            "peer": ["PEER", "127.0.0.1", peer.config["DicomPort"]],
            "mover": ["MOVER", "127.0.0.1", 104],
            "nomove": {"AET": "NOMOVE", "Host": "127.0.0.1", "Port": 104, "AllowMove": False, "AllowGet": False},
        },
    }
    srv = ServerProcess(tmp_path_factory.mktemp("retrieve"), config).start()
    srv.upload(*sample("Brainix").rglob("*.dcm"), *sample("Comunix").rglob("*.dcm"), *transfer_syntax_files())
    yield srv
    srv.stop()


@pytest.fixture
def clean_dest(dest: StoreScp) -> StoreScp:
    dest.clear()
    return dest


def transfer_syntax_files() -> list[Path]:
    return sorted(p for p in sample("TransferSyntaxes").glob("*.dcm") if p.read_bytes()[128:132] == b"DICM")


# -- a C-MOVE / C-GET client ----------------------------------------------------------------------------------
def associate(server: ServerProcess, aet: str, *contexts: str) -> Association:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for context in (Verification, *contexts):
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title=AET)
    assert assoc.is_established
    return assoc


def identifier(**keys: str) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def c_move(
    server: ServerProcess, destination: str, aet: str = "MOVER", model: str = MOVE_MODEL, **keys: str
) -> list[Dataset]:
    """Every response status dataset of one C-MOVE."""
    assoc = associate(server, aet, model)
    try:
        return [status for status, _ in assoc.send_c_move(identifier(**keys), destination, model)]
    finally:
        assoc.release()


def final(responses: list[Dataset]) -> tuple[int, int, int]:
    """(status, completed, failed) of the last response."""
    last = responses[-1]
    return (
        int(last.Status),
        int(last.get("NumberOfCompletedSuboperations", 0)),
        int(last.get("NumberOfFailedSuboperations", 0)),
    )


def assert_serving(server: ServerProcess) -> None:
    assert server.process is not None and server.process.poll() is None, "the server died"
    assoc = associate(server, "MOVER")
    try:
        assert int(assoc.send_c_echo().Status) == SUCCESS
    finally:
        assoc.release()
    assert server.get("/system").status_code == 200


def uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def comparable(ds: Dataset) -> dict[Any, Any]:
    """The elements a sender keeps: group lengths and dcmtk's trailing padding aside."""
    return {e.tag: e.value for e in ds if e.tag.element != 0 and e.tag.group not in (0x0002, 0xFFFC)}


# -- C-MOVE ---------------------------------------------------------------------------------------------------
def test_movescu_moves_a_study_to_storescp(server: ServerProcess, clean_dest: StoreScp) -> None:
    result = subprocess.run(
        ["movescu", "-S", "-aet", "MOVER", "-aec", AET, "-aem", clean_dest.aet, "-k", "QueryRetrieveLevel=STUDY",
         "-k", f"StudyInstanceUID={BRAINIX_STUDY}", "127.0.0.1", str(server.config["DicomPort"])],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = clean_dest.received()
    originals = sorted(sample("Brainix").rglob("*.dcm"))
    assert set(received) == uids(originals)
    original = pydicom.dcmread(originals[0])
    assert received[original.SOPInstanceUID].PixelData == original.PixelData


def test_move_keeps_each_file_in_its_transfer_syntax(server: ServerProcess, peer: ServerProcess) -> None:
    """One move of instances in 12 syntaxes, each on a context of its own: all arrive as stored."""
    files = transfer_syntax_files()
    sop_uids = "\\".join(sorted(uids(files)))
    responses = c_move(server, "PEER", QueryRetrieveLevel="IMAGE", SOPInstanceUID=sop_uids)
    assert final(responses) == (SUCCESS, len(files), 0)
    with peer.client() as c:
        for path, public_id in zip(files, map(instance_id, files), strict=True):
            original = pydicom.dcmread(path)
            assert c.get(f"/instances/{public_id}/metadata/TransferSyntax").text == original.file_meta.TransferSyntaxUID
            assert comparable(read(c.get(f"/instances/{public_id}/file").content)) == comparable(original)


def test_move_decompresses_what_the_destination_refuses(server: ServerProcess, clean_dest: StoreScp) -> None:
    """storescp takes every syntax but JPEG lossless process 14: that one arrives decompressed, the rest as stored."""
    files = transfer_syntax_files()
    responses = c_move(server, clean_dest.aet, QueryRetrieveLevel="IMAGE", SOPInstanceUID="\\".join(uids(files)))
    assert final(responses) == (SUCCESS, len(files), 0)
    received = clean_dest.received()
    assert set(received) == uids(files)
    [refused] = [pydicom.dcmread(p) for p in files if p.name == "1.2.840.10008.1.2.4.57.dcm"]
    copy = received[refused.SOPInstanceUID]
    assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (copy.pixel_array == refused.pixel_array).all()


def test_move_to_another_isengard(server: ServerProcess, peer: ServerProcess) -> None:
    flair = sorted(sample("Brainix", "Flair").iterdir())
    responses = c_move(server, "PEER", QueryRetrieveLevel="SERIES", SeriesInstanceUID=BRAINIX_FLAIR)
    assert final(responses) == (SUCCESS, 22, 0)
    assert [int(r.Status) for r in responses[:-1]] == [PENDING] * 22  # progress, one response per instance
    with peer.client() as c:
        for public_id in map(instance_id, flair):
            metadata = c.get(f"/instances/{public_id}/metadata?expand").json()
            assert (metadata["Origin"], metadata["RemoteAET"], metadata["CalledAET"]) == ("DicomProtocol", AET, "PEER")
        received = read(c.get(f"/instances/{instance_id(flair[0])}/file").content)
    assert comparable(received) == comparable(pydicom.dcmread(flair[0]))


def test_move_by_accession_number_without_level(server: ServerProcess, clean_dest: StoreScp) -> None:
    """Some SCUs omit QueryRetrieveLevel; the most specific key with a value decides, as in Orthanc."""
    responses = c_move(server, clean_dest.aet, model=PatientRootQueryRetrieveInformationModelMove,
                       AccessionNumber=COMUNIX_ACCESSION)  # fmt: skip
    assert final(responses) == (SUCCESS, 4, 0)
    assert set(clean_dest.received()) == uids(sorted(sample("Comunix").rglob("*.dcm")))


def test_move_to_an_unknown_destination(server: ServerProcess) -> None:
    responses = c_move(server, "NOWHERE", QueryRetrieveLevel="STUDY", StudyInstanceUID=BRAINIX_STUDY)
    assert [int(r.Status) for r in responses] == [DESTINATION_UNKNOWN]
    assert_serving(server)


@pytest.mark.parametrize(
    ("aet", "keys"),
    [
        ("NOMOVE", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": BRAINIX_STUDY}),  # AllowMove is false
        ("STRANGER", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": BRAINIX_STUDY}),  # DicomAlwaysAllowMove
        ("MOVER", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3.4.5.6.7"}),  # nothing stored
        ("MOVER", {"QueryRetrieveLevel": "STUDY"}),  # nothing named
        ("MOVER", {"QueryRetrieveLevel": "WARD", "StudyInstanceUID": BRAINIX_STUDY}),  # no such level
    ],
)
def test_move_failures_send_nothing(
    server: ServerProcess, clean_dest: StoreScp, aet: str, keys: dict[str, str]
) -> None:
    responses = c_move(server, clean_dest.aet, aet, **keys)
    assert [int(r.Status) for r in responses] == [MOVE_FAILED]
    assert clean_dest.received() == {}
    assert_serving(server)


def test_a_lost_file_fails_its_own_sub_operation_only(isengard: Any, clean_dest: StoreScp) -> None:
    srv = isengard({"DicomAet": AET, "DicomModalities": {"dest": [clean_dest.aet, "127.0.0.1", clean_dest.port],
                                                         "mover": ["MOVER", "127.0.0.1", 104]}})  # fmt: skip
    files = sorted(sample("Brainix", "Flair").iterdir())[:3]
    srv.upload(*files)
    uuid = srv.get(f"/instances/{instance_id(files[1])}/attachments/dicom/info").json()["Uuid"]
    [lost] = Path(srv.config["StorageDirectory"]).rglob(uuid)
    lost.unlink()
    model = MOVE_MODEL
    assoc = associate(srv, "MOVER", model)
    try:
        query = identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID=BRAINIX_FLAIR)
        *_, (status, failed) = assoc.send_c_move(query, clean_dest.aet, model)
    finally:
        assoc.release()
    assert final([status]) == (WARNING, 2, 1)
    assert failed.FailedSOPInstanceUIDList == pydicom.dcmread(files[1]).SOPInstanceUID
    assert set(clean_dest.received()) == uids([files[0], files[2]])
    assert_serving(srv)


def test_cancel_a_move_while_it_runs(server: ServerProcess, slow: SlowStoreScp) -> None:
    model = StudyRootQueryRetrieveInformationModelMove
    assoc = associate(server, "MOVER", model)
    context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == model)
    query = identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID=BRAINIX_FLAIR)
    responses = []
    try:
        for status, _ in assoc.send_c_move(query, slow.aet, model, msg_id=41):
            responses.append(status)
            if len(responses) == 2:
                assoc.send_c_cancel(41, context_id)
    finally:
        assoc.release()
    last = responses[-1]
    assert int(last.Status) == CANCEL
    assert 0 < int(last.NumberOfCompletedSuboperations) < 22
    assert int(last.NumberOfRemainingSuboperations) == 22 - int(last.NumberOfCompletedSuboperations)
    assert len(slow.received) == int(last.NumberOfCompletedSuboperations)
    assert_serving(server)


@pytest.mark.serial
def test_http_stays_responsive_during_a_move(server: ServerProcess, peer: ServerProcess) -> None:
    def move() -> list[Dataset]:
        return c_move(server, "PEER", QueryRetrieveLevel="STUDY", StudyInstanceUID=BRAINIX_STUDY)

    responses, latencies = latencies_during(server, move)
    assert final(responses)[:2] == (SUCCESS, 44)
    print(f"\n/system during a 44-instance C-MOVE: {len(latencies)} requests, max {max(latencies) * 1000:.0f} ms")
    assert len(latencies) >= 3 and max(latencies) < 0.5


# -- C-GET ----------------------------------------------------------------------------------------------------
def test_getscu_gets_a_series(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        ["getscu", "-S", "-aet", "MOVER", "-aec", AET, "-k", "QueryRetrieveLevel=SERIES",
         "-k", f"SeriesInstanceUID={BRAINIX_FLAIR}", "-od", str(tmp_path),
         "127.0.0.1", str(server.config["DicomPort"])],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = sorted(tmp_path.iterdir())
    assert uids(received) == uids(sorted(sample("Brainix", "Flair").iterdir()))


@pytest.mark.parametrize("aet", ["NOMOVE", "STRANGER"])
def test_get_refused(server: ServerProcess, aet: str) -> None:
    model = StudyRootQueryRetrieveInformationModelGet
    assoc = associate(server, aet, model)
    try:
        query = identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID=BRAINIX_FLAIR)
        statuses = [int(status.Status) for status, _ in assoc.send_c_get(query, model)]
    finally:
        assoc.release()
    assert statuses == [GET_FAILED]
    assert_serving(server)


# -- after a C-FIND: C-MOVE or C-GET ---------------------------------------------------------------------------
FLAIR_QUERY = {"Level": "Series", "Query": {"SeriesInstanceUID": BRAINIX_FLAIR}}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Holds Brainix; knows no modality, so it can C-MOVE to nobody, and answers C-FIND and C-GET from anyone."""
    config = {"DicomAet": "REMOTE", "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True}
    srv = ServerProcess(tmp_path_factory.mktemp("remote"), config).start()
    srv.upload(*sample("Brainix").rglob("*.dcm"))
    yield srv
    srv.stop()


def remote_modality(remote: ServerProcess, **fields: Any) -> dict[str, Any]:
    return {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.config["DicomPort"], **fields}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, remote: ServerProcess) -> Iterator[ServerProcess]:
    """Asks the remote; "getter" says C-GET, "plain" leaves it to DicomDefaultRetrieveMethod (C-MOVE)."""
    modalities = {
        "getter": remote_modality(remote, RetrieveMethod="C-GET"),
        "plain": ["REMOTE", "127.0.0.1", remote.config["DicomPort"]],
    }
    srv = ServerProcess(tmp_path_factory.mktemp("local"), {"DicomAet": "LOCAL", "DicomModalities": modalities})
    yield srv.start()
    srv.stop()


def ask(server: ServerProcess, modality: str) -> str:
    """A new query of the Flair series on ``modality``, with none of its instances here yet."""
    for found in server.post("/tools/lookup", content=BRAINIX_FLAIR).json():
        server.client().delete(found["Path"])
    answer = server.post(f"/modalities/{modality}/query", json=FLAIR_QUERY)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["ID"])


def flair_here(server: ServerProcess) -> set[str]:
    """The SOPInstanceUIDs of the Flair series this server holds, each checked to have come by C-GET."""
    [found] = server.post("/tools/lookup", content=BRAINIX_FLAIR).json()
    out = set()
    for instance in server.get(f"{found['Path']}/instances").json():
        metadata = server.get(f"/instances/{instance['ID']}/metadata?expand").json()
        assert (metadata["Origin"], metadata["RemoteAET"]) == ("DicomProtocol", "REMOTE")
        out.add(instance["MainDicomTags"]["SOPInstanceUID"])
    return out


FLAIR = sorted(sample("Brainix", "Flair").iterdir())


def test_retrieve_method_in_modality_definitions(local: ServerProcess) -> None:
    expanded = local.get("/modalities?expand").json()
    assert (expanded["getter"]["RetrieveMethod"], expanded["plain"]["RetrieveMethod"]) == ("C-GET", "SystemDefault")
    assert local.get("/modalities/getter/configuration").json() == expanded["getter"]


def test_a_modality_that_says_c_get(local: ServerProcess) -> None:
    query_id = ask(local, "getter")
    # TargetAet names no one the remote knows: with C-GET, this server is the destination anyway
    report = local.post(f"/queries/{query_id}/retrieve", json={"TargetAet": "NOBODY"})
    assert report.status_code == 200, report.text
    assert report.json() == {
        "Description": "REST API",
        "LocalAet": "LOCAL",
        "Query": [{"0008,0050": "0", "0008,0052": "SERIES", "0010,0020": "5Yp0E", "0020,000d": BRAINIX_STUDY,
                   "0020,000e": BRAINIX_FLAIR}],
        "RemoteAet": "REMOTE",
    }  # fmt: skip
    assert flair_here(local) == uids(FLAIR)


def test_c_get_as_a_job(local: ServerProcess) -> None:
    query_id = ask(local, "getter")
    started = local.post(f"/queries/{query_id}/answers/0/retrieve", json={"Synchronous": False}).json()
    assert started["Path"] == f"/jobs/{started['ID']}"
    job = wait_job(local, started["ID"])
    assert (job["State"], job["Type"], job["Progress"]) == ("Success", "DicomGetScu", 100)
    assert job["Content"]["RemoteAet"] == "REMOTE" and "TargetAet" not in job["Content"]
    assert flair_here(local) == uids(FLAIR)


def test_the_body_overrides_the_modality(local: ServerProcess) -> None:
    query_id = ask(local, "getter")
    # a C-MOVE asks the remote to send to LOCAL, a destination it does not know
    error = assert_orthanc_error(local.post(f"/queries/{query_id}/retrieve", json={"RetrieveMethod": "C-MOVE"}), 422)
    assert "C-MOVE" in error["Details"]
    assert local.post("/tools/lookup", content=BRAINIX_FLAIR).json() == []
    query_id = ask(local, "plain")  # SystemDefault, and DicomDefaultRetrieveMethod is C-MOVE
    assert "C-MOVE" in assert_orthanc_error(local.post(f"/queries/{query_id}/retrieve", content=b""), 422)["Details"]
    for body in ({"RetrieveMethod": "C-GET"}, {"RetrieveMethod": "C-GET", "Asynchronous": True}):
        query_id = ask(local, "plain")
        answer = local.post(f"/queries/{query_id}/retrieve", json=body).json()
        if "ID" in answer:
            assert wait_job(local, answer["ID"])["Type"] == "DicomGetScu"
        assert flair_here(local) == uids(FLAIR)


def test_default_retrieve_method_option(isengard: Any, remote: ServerProcess) -> None:
    """DicomDefaultRetrieveMethod applies to the modalities that say SystemDefault, not to the others."""
    modalities = {
        "plain": ["REMOTE", "127.0.0.1", remote.config["DicomPort"]],
        "mover": remote_modality(remote, RetrieveMethod="C-MOVE"),
    }
    srv = isengard({"DicomAet": "LOCAL", "DicomDefaultRetrieveMethod": "C-GET", "DicomModalities": modalities})
    assert srv.get("/system").json()["DicomDefaultRetrieveMethod"] == "C-GET"
    query_id = ask(srv, "plain")
    started = srv.post(f"/queries/{query_id}/retrieve", json={"Synchronous": False}).json()
    assert wait_job(srv, started["ID"])["Type"] == "DicomGetScu"
    assert flair_here(srv) == uids(FLAIR)
    query_id = ask(srv, "mover")
    started = srv.post(f"/queries/{query_id}/retrieve", json={"Synchronous": False}).json()
    job = wait_job(srv, started["ID"])
    assert (job["Type"], job["State"]) == ("DicomMoveScu", "Failure")


def test_bad_retrieve_method(local: ServerProcess) -> None:
    query_id = ask(local, "getter")
    for value, orthanc_error in [("C-FOO", "Parameter out of range"), ("c-get", "Parameter out of range"),
                                 (3, "Bad file format")]:  # fmt: skip
        r = local.post(f"/queries/{query_id}/retrieve", json={"RetrieveMethod": value})
        assert_orthanc_error(r, 400, orthanc_error)
    assert local.post("/tools/lookup", content=BRAINIX_FLAIR).json() == []


def test_modality_get_as_a_job(local: ServerProcess) -> None:
    ask(local, "plain")  # to forget the Flair series here
    resources = [{"StudyInstanceUID": BRAINIX_STUDY, "SeriesInstanceUID": BRAINIX_FLAIR}]
    body = {"Level": "Series", "Resources": resources, "Synchronous": False}
    started = local.post("/modalities/plain/get", json=body).json()
    job = wait_job(local, started["ID"])
    assert (job["State"], job["Type"], job["Progress"]) == ("Success", "DicomGetScu", 100)
    assert job["Content"]["Query"] == [{"0008,0052": "SERIES", "0020,000d": BRAINIX_STUDY, "0020,000e": BRAINIX_FLAIR}]
    assert flair_here(local) == uids(FLAIR)
