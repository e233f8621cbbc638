"""POST /tools/create-dicom: new instances from JSON tags, images and PDF, checked in the stored files.

Expected tags, error codes and inherited values are those a reference Orthanc gave for the same bodies.
"""

from __future__ import annotations

import base64
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from isengard.testing import ServerProcess, sample

NOW = {
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
}
IDENTIFIERS = {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
BASE_TAGS = NOW | IDENTIFIERS | {"SeriesDate", "SeriesTime", "StudyDate", "StudyTime", "SpecificCharacterSet"}
IMAGE_TAGS = {
    "BitsAllocated", "BitsStored", "Columns", "HighBit", "PhotometricInterpretation", "PixelData",
    "PixelRepresentation", "Rows", "SamplesPerPixel",
}  # fmt: skip
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"  # odd length: padded in the file

GREY8 = (np.arange(120).reshape(10, 12) * 2).astype(np.uint8)
GREY16 = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)
RGB = np.dstack([np.full((10, 12), 10), np.full((10, 12), 20), np.arange(120).reshape(10, 12)]).astype(np.uint8)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_uri(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> str:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return data_uri(out.getvalue(), "image/png" if fmt == "PNG" else "image/jpeg")


def decoded(uri: str) -> np.ndarray:
    """What the pixels of an image are once decoded (lossy JPEG included)."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.partition(",")[2]))))


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[httpx.Client]:
    with module_server.client() as c:
        for name in ("IM-0001-0001.dcm", "IM-0001-0002.dcm"):
            assert c.post("/instances", content=sample("Brainix", "Flair", name).read_bytes()).status_code == 200
        yield c


@pytest.fixture(scope="module")
def brainix(client: httpx.Client) -> dict[str, str]:
    [instance] = client.post(
        "/tools/find", json={"Level": "Instance", "Query": {"PatientName": "BRAINIX", "InstanceNumber": "1"}}
    ).json()
    parents = {level: client.get(f"/instances/{instance}/{level}").json()["ID"] for level in ("patient", "study")}
    return {"instance": instance, "series": client.get(f"/instances/{instance}/series").json()["ID"], **parents}


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/tools/create-dicom", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stored(client: httpx.Client, instance: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance}/file").content))


def keywords(ds: pydicom.Dataset) -> set[str]:
    return {e.keyword for e in ds}


def test_an_instance_from_tags_only(client):
    answer = create(client, {"Tags": {"PatientName": "Create^Plain"}})
    assert set(answer) == {"ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"}
    assert (answer["Path"], answer["Status"]) == (f"/instances/{answer['ID']}", "Success")
    instance = client.get(f"/instances/{answer['ID']}").json()
    assert instance["ParentSeries"] == answer["ParentSeries"]
    assert client.get(f"/instances/{answer['ID']}/metadata/Origin").text == "RestApi"
    ds = stored(client, answer["ID"])
    assert keywords(ds) == BASE_TAGS | {"PatientName"}
    assert ds.PatientName == "Create^Plain" and ds.SpecificCharacterSet == "ISO_IR 100"
    assert uuid.UUID(ds.PatientID)  # a fresh patient for every creation without parent
    assert ds.StudyDate == ds.SeriesDate == ds.ContentDate and re.fullmatch(r"\d{8}", ds.StudyDate)
    assert re.fullmatch(r"\d{6}\.000000", ds.ContentTime)
    assert "SOPClassUID" not in ds and ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    other = create(client, {"Tags": {"PatientName": "Create^Plain"}})
    assert other["ParentPatient"] != answer["ParentPatient"]


def test_empty_numbers_are_empty_values(client):
    """A number tag given as "" is present and empty (type 2), not an error."""
    answer = create(client, {"Tags": {"PatientName": "Create^Empty", "PatientWeight": "", "NumberOfFrames": ""}})
    ds = stored(client, answer["ID"])
    assert ds["PatientWeight"].value is None and ds["NumberOfFrames"].value is None


@pytest.mark.parametrize(
    ("content", "expected", "photometric"),
    [
        (image_uri(GREY8), GREY8, "MONOCHROME2"),
        (image_uri(GREY16), GREY16, "MONOCHROME2"),
        (image_uri(RGB), RGB, "RGB"),
        (image_uri(RGB, mode="RGBA"), RGB, "RGB"),  # alpha is dropped
        (image_uri(RGB, mode="P"), np.asarray(Image.fromarray(RGB).convert("P").convert("RGB")), "RGB"),
        (image_uri(GREY8, "JPEG"), decoded(image_uri(GREY8, "JPEG")), "MONOCHROME2"),
        (image_uri(RGB, "JPEG"), decoded(image_uri(RGB, "JPEG")), "RGB"),
    ],
    ids=["grey8", "grey16", "rgb", "rgba", "palette", "jpeg-grey", "jpeg-rgb"],
)  # fmt: skip
def test_images_become_pixel_data(client, content, expected, photometric):
    answer = create(client, {"Tags": {"PatientName": "Create^Image"}, "Content": content})
    ds = stored(client, answer["ID"])
    assert keywords(ds) == BASE_TAGS | IMAGE_TAGS | {"PatientName"} | (
        {"PlanarConfiguration"} if expected.ndim == 3 else set()
    )
    bits = expected.dtype.itemsize * 8
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation) == (10, 12, photometric)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (bits, bits, bits - 1, 0)
    assert ds.SamplesPerPixel == (3 if expected.ndim == 3 else 1)
    assert ds["PixelData"].VR == "OW"
    assert np.array_equal(ds.pixel_array, expected)


def test_a_pdf_becomes_an_encapsulated_document(client):
    answer = create(client, {"Tags": {"PatientName": "Create^Pdf"}, "Content": data_uri(PDF, "application/pdf")})
    ds = stored(client, answer["ID"])
    extra = {"ConversionType", "EncapsulatedDocument", "MIMETypeOfEncapsulatedDocument", "Modality", "SOPClassUID"}
    assert keywords(ds) == BASE_TAGS | extra | {"PatientName"}
    assert (ds.SOPClassUID, ds.Modality, ds.ConversionType) == ("1.2.840.10008.5.1.4.1.1.104.1", "OT", "WSD")
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.EncapsulatedDocument == PDF + b"\0"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    pdf = client.get(f"/instances/{answer['ID']}/pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content == PDF
    not_pdf = client.get(f"/instances/{create(client, {'Tags': {'PatientName': 'NoPdf'}})['ID']}/pdf")
    assert not_pdf.status_code == 404 and not_pdf.json()["OrthancStatus"] == 17
    # the Book's example: a PDF attached to a study, with the modality of the request
    body = {"Tags": {"Modality": "CT"}, "Content": data_uri(PDF, "application/pdf")}
    assert stored(client, create(client, body)["ID"]).Modality == "CT"


LEVELS = ("patient", "study", "series")
#: What a new child of each level of Brainix/Flair takes from it (its own level's modules; those above add up).
INHERITED = {
    "patient": {"PatientBirthDate": "19490301", "PatientID": "5Yp0E", "PatientName": "BRAINIX", "PatientSex": "0000"},
    "study": {
        "AccessionNumber": "0",
        "ReferringPhysicianName": "dAEvNTxZJO0E",
        "StudyDate": "20061201",
        "StudyDescription": "IRM cérébrale, neuro-crâne",
        "StudyID": "218211405",
        "StudyTime": "141645.000000",
        "StudyInstanceUID": "2.16.840.1.113669.632.20.1211.10000357775",
    },
    "series": {
        "Modality": "MR",
        "PatientPosition": "HFS",
        "SeriesDescription": "sT2W/FLAIR",
        "PerformedProcedureStepDescription": "IRM cérébrale, neuro-crâne",
        "PerformedProcedureStepID": "218211405",
        "PerformedProcedureStepStartDate": "20061201",
        "PerformedProcedureStepStartTime": "141645.000000",
        "ProtocolName": "sT2W/FLAIR SENSE",
        "SeriesDate": "20061201",
        "SeriesNumber": "401",
        "SeriesTime": "142856.530000",
        "SeriesInstanceUID": "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114285654497",
    },
}


@pytest.mark.parametrize("level", LEVELS)
def test_a_child_inherits_the_modules_of_its_parent(client, brainix, level):
    answer = create(client, {"Tags": {"ImageComments": f"child of a {level}"}, "Parent": brainix[level]})
    chain = LEVELS[: LEVELS.index(level) + 1]
    for other in LEVELS:
        assert (answer["Parent" + other.capitalize()] == brainix[other]) is (other in chain)
    ds = stored(client, answer["ID"])
    expected = {k: v for upper in chain for k, v in INHERITED[upper].items()}
    assert {k: str(ds[k].value) for k in expected} == expected
    assert keywords(ds) == BASE_TAGS | set(expected) | {"ImageComments"}
    assert "ProcedureCodeSequence" not in ds  # sequences are not inherited
    for prefix in {"Study", "Series"} - {k[:-4] for k in expected if k.endswith("Date")}:
        assert ds[prefix + "Date"].value == ds.ContentDate  # the levels created now are dated now


def test_inherited_and_generated_tags_need_force(client, brainix):
    for tags, details in [({"PatientName": "Other"}, "PatientName"), ({"Modality": "CT"}, "Modality")]:
        response = client.post("/tools/create-dicom", json={"Tags": tags, "Parent": brainix["series"]})
        assert response.status_code == 400
        assert (response.json()["OrthancStatus"], response.json()["Details"]) == (2020, details)
    forced = create(client, {"Tags": {"PatientName": "Other"}, "Parent": brainix["series"], "Force": True})
    assert forced["ParentSeries"] == brainix["series"]
    assert stored(client, forced["ID"]).PatientName == "Other"
    # PatientID and the dates may always be set; a new PatientID makes a new patient
    moved = create(client, {"Tags": {"PatientID": "CREATE-2", "StudyDate": "20200101"}, "Parent": brainix["series"]})
    assert moved["ParentSeries"] != brainix["series"]
    response = client.post("/tools/create-dicom", json={"Tags": {"StudyInstanceUID": "1.2.3.4"}})
    assert (response.status_code, response.json()["OrthancStatus"]) == (400, 2020)
    uid = "1.2.826.0.1.3680043.10.99.1"
    forced = create(
        client, {"Tags": {"StudyInstanceUID": uid, "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "Force": True}
    )
    ds = stored(client, forced["ID"])
    assert ds.StudyInstanceUID == uid and ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"


def test_private_tags_sequences_and_binary_values(client):
    body = {
        "Tags": {
            "PatientName": "Create^Private",
            "0009,0010": "MYCREATOR",
            "0009,1001": data_uri(b"\x00\x01\x02\x03", "application/octet-stream"),
            "0011,1001": "text",  # its creator comes from PrivateCreator
            "ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2.3", "ReferencedSOPInstanceUID": "1.2.3.4"}],
            "OverlayData": data_uri(b"\x01\x02\x03\x04", "application/octet-stream"),
            "Rows": "12",
            "SmallestImagePixelValue": "-5",
            "PatientWeight": "70.5",
            "ImageType": "ORIGINAL\\PRIMARY",
            "StudyDescription": None,
        },
        "PrivateCreator": "OTHERCREATOR",
    }
    ds = stored(client, create(client, body)["ID"])
    assert ds[0x00090010].value == "MYCREATOR" and ds[0x00091001].value == b"\x00\x01\x02\x03"
    assert ds[0x00110010].value == "OTHERCREATOR" and ds[0x00111001].value == b"text"
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert ds[0x60003000].value == b"\x01\x02\x03\x04" and ds[0x60003000].VR == "OW"
    assert (ds.Rows, str(ds.PatientWeight), list(ds.ImageType)) == (12, "70.5", ["ORIGINAL", "PRIMARY"])
    assert (ds.SmallestImagePixelValue, ds["SmallestImagePixelValue"].VR) == (-5, "SS")
    assert ds.StudyDescription == ""
    literal = {"Tags": {"0009,1001": "data:x"}, "InterpretBinaryTags": False, "PrivateCreator": "C"}
    assert stored(client, create(client, literal)["ID"])[0x00091001].value == b"data:x"


def test_character_sets(client, brainix):
    body = {"Tags": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Jérôme^Ünïcode=王"}}
    ds = stored(client, create(client, body)["ID"])
    assert (ds.SpecificCharacterSet, str(ds.PatientName)) == ("ISO_IR 192", "Jérôme^Ünïcode=王")
    latin = stored(client, create(client, {"Tags": {"PatientName": "Jérôme"}})["ID"])
    assert (latin.SpecificCharacterSet, str(latin.PatientName)) == ("ISO_IR 100", "Jérôme")
    child = create(client, {"Tags": {"SpecificCharacterSet": "ISO_IR 192"}, "Parent": brainix["study"]})
    assert stored(client, child["ID"]).SpecificCharacterSet == "ISO_IR 100"  # the parent's wins


def test_a_content_array_makes_a_series(client, brainix):
    body = {"Tags": {"PatientName": "Create^Series"}, "Content": [image_uri(GREY8), {"Content": image_uri(RGB)}]}
    answer = create(client, body)
    assert set(answer) == {"ID", "Path", "Status"} and answer["Path"] == f"/series/{answer['ID']}"
    series = client.get(answer["Path"]).json()
    files = [stored(client, i) for i in series["Instances"]]
    assert sorted((f.InstanceNumber, f.ImageIndex, f.ImagesInAcquisition, f.SamplesPerPixel) for f in files) == [
        (1, 1, 2, 1),
        (2, 2, 2, 3),
    ]
    assert len({(f.PatientID, f.StudyInstanceUID, f.SeriesInstanceUID) for f in files}) == 1
    into = create(client, {"Tags": {}, "Parent": brainix["series"], "Content": [image_uri(GREY8)]})
    assert into["ID"] == brainix["series"]


def test_the_legacy_body_holds_tags_at_the_top(client):
    answer = create(client, {"PatientName": "Create^Legacy", "PixelData": image_uri(GREY8)})
    ds = stored(client, answer["ID"])
    assert ds.PatientName == "Create^Legacy" and "SpecificCharacterSet" not in ds
    assert np.array_equal(ds.pixel_array, GREY8)


BAD_PNG = data_uri(b"hello", "image/png")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{bad json", 8),
        (b"[1]", 8),
        ({"Tags": [1]}, 8),
        ({"Tags": {"PatientName": 3}}, 5),
        ({"Tags": {"PatientName": ["a"]}}, 5),
        ({"Tags": {"Foo": "x"}}, 27),
        ({"Tags": {"ReferencedStudySequence": [{"Foo": "x"}]}}, 27),
        ({"Tags": {"ReferencedStudySequence": "abc"}}, 15),
        ({"Tags": {"Rows": "abc"}}, 15),
        ({"Tags": {"Rows": "70000"}}, 15),
        ({"Tags": {"TransferSyntaxUID": "1.2"}}, 3),
        ({"Tags": {"SOPInstanceUID": "1.2.3"}}, 2020),
        ({"Tags": {"PixelData": "abc"}}, 2021),
        ({"Tags": {"SpecificCharacterSet": "FOO"}}, 3),
        ({"Tags": {}, "Content": "hello"}, 15),
        ({"Tags": {}, "Content": data_uri(b"hello", "text/plain")}, 2),
        ({"Tags": {}, "Content": "data:image/png;base64,@@@"}, 15),
        ({"Tags": {}, "Content": BAD_PNG}, 15),
        ({"Tags": {}, "Content": data_uri(b"hello", "application/pdf")}, 15),
        ({"Tags": {}, "Content": 3}, 2023),
        ({"Tags": {}, "Content": [3]}, 2023),
        ({"Tags": {}, "Content": [image_uri(GREY8), {"Tags": {}}]}, 2022),
        ({"Tags": {}, "Content": [image_uri(GREY8), BAD_PNG]}, 15),
        ({"Tags": {}, "Parent": "nonexistent"}, 2024),
        ({"Tags": {}, "Parent": 3}, 2024),
        ({"Tags": {}, "Parent": "INSTANCE"}, 2025),
        ({"Tags": {}, "Force": "yes"}, 8),
        ({"Tags": {}, "InterpretBinaryTags": "yes"}, 8),
        ({"Tags": {}, "PrivateCreator": 3}, 8),
    ],
)
def test_bad_bodies_store_nothing(client, brainix, body, status):
    if isinstance(body, dict) and body.get("Parent") == "INSTANCE":
        body = {**body, "Parent": brainix["instance"]}
    before = client.get("/statistics").json()["CountInstances"]
    content = body if isinstance(body, bytes) else None
    response = client.post("/tools/create-dicom", content=content, json=None if content else body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert (error["HttpStatus"], error["OrthancStatus"], error["Uri"]) == (400, status, "/tools/create-dicom")
    assert client.get("/statistics").json()["CountInstances"] == before
