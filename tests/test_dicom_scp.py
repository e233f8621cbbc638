"""The DICOM server as real peers see it: C-ECHO and C-STORE from dcmtk's tools and pynetdicom, who may do what,
and failures (bad datasets, refusals, plugins that raise) that must never stop the server.

Two servers serve the module: ``server`` has Orthanc's defaults (echo and store open to anyone, find for known
modalities only) and the test plugins; ``strict`` turns every check on (called AET, modality host, known peers
only) and accepts unknown SOP classes.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    CTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from isengard.model import DicomIdentifiers
from isengard.testing import ServerProcess, instance_id, latencies_during, sample, storage_files

HERE = Path(__file__).parent
AET = "ISENGARD"
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.8.498.77"
NOT_AUTHORIZED, OUT_OF_RESOURCES, UNABLE_TO_PROCESS = 0x0124, 0xA700, 0xC000
MODALITIES = {
    "finder": ["FINDER", "127.0.0.1", 104],
    "nostore": {"AET": "NOSTORE", "Host": "127.0.0.1", "Port": 104, "AllowStore": False},
    "nofind": {"AET": "NOFIND", "Host": "127.0.0.1", "Port": 104, "AllowFind": False},
    # a host this machine never is: DicomCheckModalityHost must refuse this AET from 127.0.0.1
    "faraway": {"AET": "FARAWAY", "Host": "192.0.2.10", "Port": 104},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("dicom-scp")
    config = {
        "DicomAet": AET,
        "DicomModalities": MODALITIES,
        "Plugins": ["recorder", "dicom_policy"],
        "Recorder": {"Path": str(work / "events.jsonl"), "RejectModality": "XA"},
        "DicomPolicy": {"Path": str(work / "requests.jsonl"), "RefuseStoreFrom": "BLOCKED"},
    }
    srv = ServerProcess(work / "server", config, env={"PYTHONPATH": str(HERE / "plugins")}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "DicomAet": AET,
        "DicomModalities": MODALITIES,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "UnknownSopClassAccepted": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
    }
    srv = ServerProcess(tmp_path_factory.mktemp("dicom-scp-strict"), config).start()
    yield srv
    srv.stop()


# -- peers ----------------------------------------------------------------------------------------------------
def associate(
    server: ServerProcess, aet: str = "PYSCU", *, called: str = AET, contexts: list[tuple[str, str]] | None = None
) -> Association:
    """A pynetdicom association (Verification, plus the (SOP class, transfer syntax) contexts given)."""
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    for sop_class, syntax in contexts or []:
        ae.add_requested_context(sop_class, syntax)
    return ae.associate("127.0.0.1", server.config["DicomPort"], ae_title=called)


def echo_status(server: ServerProcess, aet: str = "PYSCU") -> int:
    assoc = associate(server, aet)
    assert assoc.is_established
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def store(server: ServerProcess, ds: Dataset, aet: str = "PYSCU") -> int:
    syntax = ds.file_meta.TransferSyntaxUID
    assoc = associate(server, aet, contexts=[(ds.SOPClassUID, syntax)])
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def dcmtk(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False)


def assert_serving(server: ServerProcess) -> None:
    """After a refusal or a failure: the process lives, DICOM and HTTP still answer."""
    assert server.process is not None and server.process.poll() is None, "the server died"
    assert echo_status(server) == 0x0000
    assert server.get("/system").status_code == 200


def dataset_bytes(data: bytes) -> bytes:
    """The data set of a DICOM file, as encoded: what follows the preamble and the group 0002 elements."""
    if data[128:132] != b"DICM":
        return data
    pos = 132
    while struct.unpack_from("<H", data, pos)[0] == 0x0002:  # explicit VR little endian, always (PS3.10 7.1)
        if data[pos + 4 : pos + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return data[pos:]


def new_instance(**values: Any) -> Dataset:
    """A small secondary capture, its own patient/study/series/instance, with ``values`` set (None: deleted)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "P-" + generate_uid()[-12:]
    ds.PatientName = "SCP^TEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def transfer_syntax_files() -> list[Path]:
    return sorted(sample("TransferSyntaxes").glob("*.dcm"))


# -- C-ECHO ---------------------------------------------------------------------------------------------------
def test_echo_from_echoscu_and_pynetdicom(server: ServerProcess) -> None:
    result = dcmtk("echoscu", "-aet", "ANYONE", "-aec", AET, "127.0.0.1", server.config["DicomPort"])
    assert result.returncode == 0, result.stderr
    assert echo_status(server, "SOMEONE") == 0x0000


# -- C-STORE --------------------------------------------------------------------------------------------------
def test_store_keeps_every_transfer_syntax_byte_for_byte(server: ServerProcess, monkeypatch: Any) -> None:
    """pynetdicom sends each file's data set as it lies on disk; the stored file holds the very same bytes."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    files = [f for f in transfer_syntax_files() if f.read_bytes()[128:132] == b"DICM"]
    metas = [pydicom.dcmread(f, stop_before_pixels=True).file_meta for f in files]
    contexts = [(m.MediaStorageSOPClassUID, m.TransferSyntaxUID) for m in metas]
    assoc = associate(server, "RAWSCU", contexts=contexts)
    assert assoc.is_established and not assoc.rejected_contexts
    try:
        statuses = [int(assoc.send_c_store(f).Status) for f in files]
    finally:
        assoc.release()
    assert statuses == [0] * len(files)
    with server.client() as c:
        for path, meta in zip(files, metas, strict=True):
            public_id = instance_id(path)
            assert c.get(f"/instances/{public_id}/metadata/TransferSyntax").text == meta.TransferSyntaxUID
            stored = c.get(f"/instances/{public_id}/file").content
            assert dataset_bytes(stored) == dataset_bytes(path.read_bytes()), path.name
            assert pydicom.dcmread(io.BytesIO(stored)).file_meta.TransferSyntaxUID == meta.TransferSyntaxUID


def test_store_a_file_without_meta_information(server: ServerProcess) -> None:
    path = sample("TransferSyntaxes", "1.2.840.10008.1.2.dcm")  # a bare implicit VR data set
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert store(server, ds) == 0x0000
    public_id = instance_id(path)
    assert server.get(f"/instances/{public_id}/metadata/TransferSyntax").text == ImplicitVRLittleEndian
    stored = pydicom.dcmread(io.BytesIO(server.get(f"/instances/{public_id}/file").content))
    assert stored.PixelData == ds.PixelData and stored.PatientName == ds.PatientName


def storescu_profile(files: list[Path], path: Path) -> Path:
    """A dcmtk association profile with one context per (SOP class, transfer syntax) of ``files``: storescu then
    sends each file in its own syntax (its -x options cover only some compressed syntaxes)."""
    pairs = sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in map(_meta, files)})
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Files]"]
    for i, (sop_class, ts) in enumerate(pairs, start=1):
        lines.append(f"PresentationContext{i} = {sop_class}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[AsStored]", "PresentationContexts = Files"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _meta(path: Path) -> FileMetaDataset:
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    meta = ds.file_meta if "TransferSyntaxUID" in ds.file_meta else FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.setdefault("TransferSyntaxUID", ImplicitVRLittleEndian)
    return meta


def comparable(ds: Dataset) -> dict[Any, Any]:
    """Elements a re-encoding sender keeps: not group lengths, nor the trailing padding dcmtk drops."""
    return {e.tag: e.value for e in ds if e.tag.element != 0 and e.tag.group not in (0x0002, 0xFFFC)}


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # a sample's overlong SH, read as it is
def test_storescu_files_stay_in_their_transfer_syntax(tmp_path: Path) -> None:
    """dcmtk re-encodes what it sends (so bytes may differ), but the syntax and every element survive."""
    files = transfer_syntax_files()
    srv = ServerProcess(tmp_path / "storescu").start()
    try:
        profile = storescu_profile(files, tmp_path / "storescu.cfg")
        result = dcmtk(
            "storescu", "-aet", "STORESCU", "-xf", profile, "AsStored", "127.0.0.1", srv.config["DicomPort"], *files
        )
        assert result.returncode == 0, result.stderr
        with srv.client() as c:
            for path in files:
                public_id = instance_id(path)
                assert c.get(f"/instances/{public_id}/metadata/TransferSyntax").text == _meta(path).TransferSyntaxUID
                stored = pydicom.dcmread(io.BytesIO(c.get(f"/instances/{public_id}/file").content))
                assert comparable(stored) == comparable(pydicom.dcmread(path, force=True))
    finally:
        srv.stop()


def test_parallel_storescu_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    flair, epi = sorted(sample("Brainix", "Flair").iterdir()), sorted(sample("Brainix", "Epi").iterdir())
    srv = ServerProcess(tmp_path / "parallel").start()
    try:
        port = str(srv.config["DicomPort"])
        # four peers at once, each series sent twice, by peers that overlap
        batches = [flair, epi, flair[::-1], epi + flair[:5]]
        processes = [
            subprocess.Popen(["storescu", "-aet", f"PEER{i}", "127.0.0.1", port, *map(str, b)], stderr=subprocess.PIPE)
            for i, b in enumerate(batches)
        ]
        for p in processes:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        expected = {instance_id(f) for f in flair + epi}
        with srv.client() as c:
            assert set(c.get("/instances").json()) == expected
            changes = c.get("/changes?limit=1000").json()["Changes"]
            new = [ch["ID"] for ch in changes if ch["ChangeType"] == "NewInstance"]
            assert sorted(new) == sorted(expected)  # each instance announced exactly once
            assert c.get("/statistics").json()["CountInstances"] == len(expected)
    finally:
        srv.stop()


def test_store_records_who_sent_and_raises_the_same_events_as_rest(server: ServerProcess) -> None:
    events_path = Path(server.config["Recorder"]["Path"])
    by_dicom, by_rest = new_instance(), new_instance()
    result = dcmtk_store(server, by_dicom, aet="MODALITY1", called="SOME_AET")
    assert result.returncode == 0, result.stderr
    rest = server.post("/instances", content=encode(by_rest)).json()
    dicom_id = instance_id(by_dicom)
    metadata = server.get(f"/instances/{dicom_id}/metadata?expand").json()
    assert metadata["Origin"] == "DicomProtocol"
    assert metadata["RemoteAET"] == "MODALITY1"
    assert metadata["CalledAET"] == "SOME_AET"  # the AET the peer called, not ours (DicomCheckCalledAet is off)
    assert metadata["RemoteIP"] == "127.0.0.1"
    assert metadata["TransferSyntax"] == ExplicitVRLittleEndian

    def changes_of(ds: Dataset) -> list[str]:
        keys = (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        ids = set(DicomIdentifiers(*keys).public_ids().values())
        return [e["ChangeType"] for e in read_jsonl(events_path) if e["event"] == "change" and e["ID"] in ids]

    wait_for(lambda: changes_of(by_dicom) and changes_of(by_rest))
    assert changes_of(by_dicom) == changes_of(by_rest) == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    stored = {e["id"]: e["origin"] for e in read_jsonl(events_path) if e["event"] == "stored"}
    assert stored[dicom_id] == "DicomProtocol"
    assert stored[rest["ID"]] == "RestApi"


def encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dcmtk_store(server: ServerProcess, ds: Dataset, *, aet: str, called: str = AET) -> subprocess.CompletedProcess[str]:
    path = Path(server.workdir, f"{ds.SOPInstanceUID}.dcm")
    path.write_bytes(encode(ds))
    return dcmtk("storescu", "-aet", aet, "-aec", called, "127.0.0.1", server.config["DicomPort"], path)


def test_a_bad_data_set_fails_and_stores_nothing(server: ServerProcess) -> None:
    before, files = server.get("/statistics").json(), storage_files(server)
    # no StudyInstanceUID: the instance cannot be placed in the hierarchy
    assert store(server, new_instance(StudyInstanceUID=None)) == OUT_OF_RESOURCES
    assert server.get("/statistics").json() == before
    assert storage_files(server) == files
    assert_serving(server)


def test_an_instance_a_filter_discards_is_acknowledged_not_stored(server: ServerProcess) -> None:
    """As Orthanc: accept_instance saying no discards the instance quietly (success), so the sender moves on."""
    ds = new_instance(Modality="XA")  # the recorder plugin refuses XA
    assert store(server, ds) == 0x0000
    assert server.get(f"/instances/{instance_id(ds)}").status_code == 404


# -- who may do what ------------------------------------------------------------------------------------------
def find_status(server: ServerProcess, aet: str, **keys: str) -> list[int]:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    model = StudyRootQueryRetrieveInformationModelFind
    ae = AE(ae_title=aet)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title=AET)
    assert assoc.is_established
    try:
        return [int(status.Status) for status, _ in assoc.send_c_find(query, model)]
    finally:
        assoc.release()


def test_find_is_for_known_modalities_unless_always_allowed(server: ServerProcess) -> None:
    assert find_status(server, "STRANGER") == [NOT_AUTHORIZED]  # DicomAlwaysAllowFind is false
    assert find_status(server, "NOFIND") == [NOT_AUTHORIZED]  # known, but AllowFind is false
    assert find_status(server, "finder")[-1] == 0x0000  # known (AETs compare case-insensitively)
    assert_serving(server)


def test_store_refused_to_a_modality_without_allow_store(server: ServerProcess) -> None:
    ds = new_instance()
    assert store(server, ds, "NOSTORE") == NOT_AUTHORIZED
    assert server.get(f"/instances/{instance_id(ds)}").status_code == 404
    assert_serving(server)


def test_authorize_hook_is_asked_for_dimse_requests(server: ServerProcess) -> None:
    requests_path = Path(server.config["DicomPolicy"]["Path"])
    ds = new_instance()
    assert store(server, ds, "BLOCKED") == NOT_AUTHORIZED  # the plugin refuses C-STORE from BLOCKED
    assert server.get(f"/instances/{instance_id(ds)}").status_code == 404
    assert echo_status(server, "BLOCKED") == 0x0000  # and nothing else
    asked = [r for r in read_jsonl(requests_path) if r["user"] == "BLOCKED"]
    assert [r["method"] for r in asked] == ["C-STORE", "C-ECHO"]
    assert asked[0] == {
        "protocol": "dicom",
        "method": "C-STORE",
        "path": AET,
        "user": "BLOCKED",
        "remote_ip": "127.0.0.1",
        "headers": {},
    }
    assert_serving(server)


def test_exceptions_in_plugins_fail_the_request_not_the_server(server: ServerProcess) -> None:
    assert echo_status(server, "RAISE") == UNABLE_TO_PROCESS  # authorize raises for this AET
    ds = new_instance(PatientID="RAISE")
    assert store(server, ds) == OUT_OF_RESOURCES  # accept_instance raises
    assert server.get(f"/instances/{instance_id(ds)}").status_code == 404
    assert find_status(server, "FINDER", PatientID="RAISE") == [UNABLE_TO_PROCESS]  # handle_c_find raises
    assert_serving(server)


def test_unsupported_sop_class_is_not_accepted(server: ServerProcess) -> None:
    assoc = associate(server, contexts=[(PRIVATE_SOP_CLASS, ExplicitVRLittleEndian)])
    try:
        assert assoc.is_established
        assert [c.abstract_syntax for c in assoc.rejected_contexts] == [PRIVATE_SOP_CLASS]
        assert int(assoc.send_c_echo().Status) == 0x0000  # the rest of the association works
    finally:
        assoc.release()


# -- the strict server ----------------------------------------------------------------------------------------
def test_wrong_called_aet_is_rejected(strict: ServerProcess) -> None:
    assoc = associate(strict, "FINDER", called="NOT_ME")
    assert assoc.is_rejected
    result = dcmtk("echoscu", "-aet", "FINDER", "-aec", "NOT_ME", "127.0.0.1", strict.config["DicomPort"])
    assert result.returncode != 0 and "Called AE Title Not Recognized" in result.stderr
    # AETs compare case-insensitively (StrictAetComparison is false)
    assoc = associate(strict, "FINDER", called=AET.lower())
    assert assoc.is_established
    assoc.release()


def test_only_known_peers_associate_when_nothing_is_open_to_all(strict: ServerProcess) -> None:
    assert associate(strict, "STRANGER").is_rejected
    # FARAWAY is known, but from another host, and DicomCheckModalityHost is on
    assert associate(strict, "FARAWAY").is_rejected
    assert echo_status(strict, "FINDER") == 0x0000


def test_unknown_sop_class_accepted_when_configured(strict: ServerProcess) -> None:
    ds = new_instance(SOPClassUID=PRIVATE_SOP_CLASS)
    assert store(strict, ds, "FINDER") == 0x0000
    public_id = instance_id(ds)
    assert strict.get(f"/instances/{public_id}/metadata/SopClassUid").text == PRIVATE_SOP_CLASS
    # a known SOP class still works next to it, and so does the next association proposing the unknown one
    assert store(strict, new_instance(SOPClassUID=CTImageStorage), "FINDER") == 0x0000
    assert store(strict, new_instance(SOPClassUID=PRIVATE_SOP_CLASS), "FINDER") == 0x0000
    assert echo_status(strict, "FINDER") == 0x0000


# -- responsiveness -------------------------------------------------------------------------------------------
@pytest.mark.serial
def test_http_stays_responsive_during_a_large_store(server: ServerProcess) -> None:
    frames, rows = 10, 1024
    ds = new_instance(
        Rows=rows, Columns=rows, NumberOfFrames=frames, BitsAllocated=16, BitsStored=16, HighBit=15,
        PixelRepresentation=0, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
        PixelData=bytes(range(256)) * (frames * rows * rows * 2 // 256),
    )  # fmt: skip
    status, latencies = latencies_during(server, lambda: store(server, ds, "BIGSCU"))
    assert status == 0x0000
    size = int(server.get(f"/instances/{instance_id(ds)}/attachments/dicom/size").text)
    assert size > frames * rows * rows * 2
    print(
        f"\n/system during a {size / 1e6:.0f} MB C-STORE: {len(latencies)} requests, max {max(latencies) * 1000:.0f} ms"
    )
    assert len(latencies) >= 3 and max(latencies) < 0.5
