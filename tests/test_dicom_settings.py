"""What the DICOM server accepts, changed at run time: /tools/accepted-transfer-syntaxes and
/tools/unknown-sop-class-accepted apply to the next associations."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from isengard.testing import sample

UNKNOWN_SOP_CLASS = "1.2.826.0.1.3680043.8.498.77777.1"


@pytest.fixture
def server(isengard):
    return isengard({"DicomAet": "ISENGARD"})


def accepted(server, sop_class: str, syntax: str) -> bool:
    ae = AE(ae_title="SETTINGS")
    ae.add_requested_context(Verification)  # so that the association opens whatever happens to the other context
    ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title="ISENGARD")
    assert assoc.is_established
    try:
        return any(c.abstract_syntax == sop_class for c in assoc.accepted_contexts)
    finally:
        assoc.release()


def test_accepted_transfer_syntaxes_apply_to_new_associations(server):
    jpeg = pydicom.dcmread(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm"), stop_before_pixels=True)
    with server.client() as c:
        everything = c.get("/tools/accepted-transfer-syntaxes").json()
        assert {ExplicitVRLittleEndian, JPEGBaseline8Bit, "1.2.840.10008.1.2.4.90"} <= set(everything)
        assert accepted(server, jpeg.SOPClassUID, JPEGBaseline8Bit)

        one_digit = c.put("/tools/accepted-transfer-syntaxes", json="1.2.840.10008.1.2.?").json()
        assert sorted(one_digit) == ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5"]
        uncompressed = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
        answer = c.put("/tools/accepted-transfer-syntaxes", json=uncompressed)
        assert sorted(answer.json()) == uncompressed
        assert sorted(c.get("/tools/accepted-transfer-syntaxes").json()) == uncompressed
        assert not accepted(server, jpeg.SOPClassUID, JPEGBaseline8Bit)
        assert accepted(server, jpeg.SOPClassUID, ExplicitVRLittleEndian)

        assert c.put("/tools/accepted-transfer-syntaxes", json="1.2.840.10008.1.*").json() == everything
        assert accepted(server, jpeg.SOPClassUID, JPEGBaseline8Bit)


@pytest.mark.parametrize(("body", "status"), [([], 400), ("", 400), ([1], 400), ("9.9.9.*", 400), ({"a": 1}, 400)])
def test_bad_transfer_syntax_bodies(server, body, status):
    with server.client() as c:
        before = c.get("/tools/accepted-transfer-syntaxes").json()
        r = c.put("/tools/accepted-transfer-syntaxes", json=body)
        assert r.status_code == status and "OrthancStatus" in r.json()
        assert c.get("/tools/accepted-transfer-syntaxes").json() == before


def test_unknown_sop_classes_can_be_accepted_at_run_time(server):
    with server.client() as c:
        assert c.get("/tools/unknown-sop-class-accepted").text == "0"
        assert not accepted(server, UNKNOWN_SOP_CLASS, ExplicitVRLittleEndian)
        assert c.put("/tools/unknown-sop-class-accepted", content="true").status_code == 200
        assert c.get("/tools/unknown-sop-class-accepted").text == "1"

        ds = pydicom.dcmread(sample("Phenix", "IM-0001-0001.dcm"))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UNKNOWN_SOP_CLASS
        ae = AE(ae_title="SETTINGS")
        ae.add_requested_context(UNKNOWN_SOP_CLASS, [ds.file_meta.TransferSyntaxUID])
        assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title="ISENGARD")
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        stored = c.post("/tools/lookup", content=str(ds.SOPInstanceUID)).json()
        assert [s["Type"] for s in stored] == ["Instance"]

        assert c.put("/tools/unknown-sop-class-accepted", content="0").status_code == 200
        assert not accepted(server, UNKNOWN_SOP_CLASS, ExplicitVRLittleEndian)
        assert c.put("/tools/unknown-sop-class-accepted", content="maybe").status_code == 400
