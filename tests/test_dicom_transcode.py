"""Compressed files sent to peers that accept uncompressed transfer syntaxes only: decompressed on the way out.

One server holds the compressed transfer-syntax samples (JPEG baseline and lossless, JPEG-LS, JPEG 2000, RLE) and
the 12-bit JPEG extended one, which no installed codec decodes. They go to dcmtk's storescp (uncompressed only, its
default) through /modalities/{id}/store and through a C-MOVE, and back to a C-GET requestor that proposes
uncompressed contexts only. What arrives must be explicit VR little endian, the same instance (UIDs), and
pixel-identical to what pydicom decodes from the original.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelMove

from isengard.testing import ServerProcess, assert_orthanc_error, free_port, instance_id, require_tool, sample

AET = "ISENGARD"
SUCCESS, WARNING = 0x0000, 0xB000
DECODABLE = [
    sample("TransferSyntaxes", f"1.2.840.10008.{suffix}.dcm")
    for suffix in ("1.2.4.50", "1.2.4.57", "1.2.4.70", "1.2.4.80", "1.2.4.81", "1.2.4.90", "1.2.4.91", "1.2.5")
]
NO_CODEC = sample("TransferSyntaxes", "1.2.840.10008.1.2.4.51.dcm")  # JPEG extended, 12 bits: nothing decodes it


class StoreScp:
    """dcmtk's storescp with its default transfer syntaxes (uncompressed only), one process per association."""

    def __init__(self, folder: Path, aet: str = "PLAIN") -> None:
        require_tool("storescp")
        self.folder, self.aet, self.port = folder, aet, free_port()
        self.process = subprocess.Popen(
            ["storescp", "--fork", "-aet", aet, "-od", str(folder), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["echoscu", "-aec", aet, "127.0.0.1", str(self.port)], capture_output=True).returncode:
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.05)

    def take(self) -> dict[str, Dataset]:
        """What arrived since the last call, by SOPInstanceUID."""
        found = {}
        for path in self.folder.iterdir():
            ds = pydicom.dcmread(path)
            found[str(ds.SOPInstanceUID)] = ds
            path.unlink()
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreScp]:
    scp = StoreScp(tmp_path_factory.mktemp("plain"))
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, plain: StoreScp) -> Iterator[ServerProcess]:
    config = {
        "DicomAet": AET,
        "DicomModalities": {
            "plain": [plain.aet, "127.0.0.1", plain.port],
            "retriever": ["RETRIEVER", "127.0.0.1", 104],
        },
    }
    srv = ServerProcess(tmp_path_factory.mktemp("transcode"), config).start()
    srv.upload(*DECODABLE, NO_CODEC)
    yield srv
    srv.stop()


def uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_decoded(received: dict[str, Dataset], originals: list[Path]) -> None:
    """Each original arrived once, uncompressed little endian, same UIDs, same pixels as pydicom decodes."""
    assert set(received) == {uid_of(p) for p in originals}
    for path in originals:
        original = pydicom.dcmread(path)
        copy = received[str(original.SOPInstanceUID)]
        assert copy.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian), path.name
        for keyword in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "Rows", "Columns"):
            assert copy.get(keyword) == original.get(keyword), (path.name, keyword)
        expected = original.pixel_array
        assert copy.pixel_array.shape == expected.shape, path.name
        assert (copy.pixel_array == expected).all(), path.name


def retrieve_identifier(paths: list[Path]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = "\\".join(uid_of(p) for p in paths)
    return ds


def c_move(server: ServerProcess, destination: str, paths: list[Path]) -> tuple[Dataset, Dataset | None]:
    """The final (status, identifier) of a C-MOVE of these instances."""
    ae = AE(ae_title="RETRIEVER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title=AET)
    assert assoc.is_established
    try:
        model = StudyRootQueryRetrieveInformationModelMove
        return list(assoc.send_c_move(retrieve_identifier(paths), destination, model))[-1]
    finally:
        assoc.release()


# -- C-STORE SCU ------------------------------------------------------------------------------------------------
def test_store_decompresses_for_a_peer_taking_uncompressed_only(server: ServerProcess, plain: StoreScp) -> None:
    plain.take()
    ids = [instance_id(p) for p in DECODABLE]
    r = server.post("/modalities/plain/store", json={"Resources": ids, "Synchronous": True})
    assert r.status_code == 200, r.text
    assert r.json()["FailedInstancesCount"] == 0
    assert r.json()["InstancesCount"] == len(DECODABLE)
    assert_decoded(plain.take(), DECODABLE)


def test_store_without_a_codec_fails_clearly(server: ServerProcess, plain: StoreScp) -> None:
    plain.take()
    body = {"Resources": [instance_id(NO_CODEC)], "Synchronous": True}
    error = assert_orthanc_error(server.post("/modalities/plain/store", json=body), 501)
    assert "JPEG Extended" in error["Details"] and uid_of(NO_CODEC) in error["Details"], error
    r = server.post(
        "/modalities/plain/store",
        json={**body, "Resources": [instance_id(NO_CODEC), instance_id(DECODABLE[0])], "Permissive": True},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["InstancesCount"], r.json()["FailedInstancesCount"]) == (2, 1)
    assert set(plain.take()) == {uid_of(DECODABLE[0])}
    assert server.get("/system").status_code == 200


# -- C-MOVE and C-GET sub-operations of the DICOM server ---------------------------------------------------------
def test_move_decompresses_for_a_destination_taking_uncompressed_only(server: ServerProcess, plain: StoreScp) -> None:
    plain.take()
    status, _ = c_move(server, plain.aet, DECODABLE)
    assert (int(status.Status), int(status.NumberOfCompletedSuboperations)) == (SUCCESS, len(DECODABLE))
    assert_decoded(plain.take(), DECODABLE)


def test_move_without_a_codec_fails_that_instance_only(server: ServerProcess, plain: StoreScp) -> None:
    plain.take()
    status, identifier = c_move(server, plain.aet, [NO_CODEC, DECODABLE[1]])
    assert int(status.Status) == WARNING
    assert (int(status.NumberOfCompletedSuboperations), int(status.NumberOfFailedSuboperations)) == (1, 1)
    assert identifier is not None and uid_of(NO_CODEC) in str(identifier.FailedSOPInstanceUIDList)
    assert set(plain.take()) == {uid_of(DECODABLE[1])}


def test_get_decompresses_for_a_requestor_taking_uncompressed_only(server: ServerProcess) -> None:
    received: dict[str, Dataset] = {}

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received[str(ds.SOPInstanceUID)] = ds
        return SUCCESS

    classes = sorted({str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in DECODABLE})
    ae = AE(ae_title="RETRIEVER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in classes:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    roles = [build_role(c, scp_role=True) for c in classes]
    port = server.config["DicomPort"]
    assoc = ae.associate("127.0.0.1", port, ae_title=AET, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        model = StudyRootQueryRetrieveInformationModelGet
        status, _ = list(assoc.send_c_get(retrieve_identifier(DECODABLE), model))[-1]
    finally:
        assoc.release()
    assert (int(status.Status), int(status.NumberOfCompletedSuboperations)) == (SUCCESS, len(DECODABLE))
    assert_decoded(received, DECODABLE)
