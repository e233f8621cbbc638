"""DICOM XML answers (PS3.19 Native DICOM Model, PS3.18 F.3) of QIDO-RS and WADO-RS metadata.

Neither pydicom nor dicomweb-client reads these answers (dicomweb-client parses XML only in STOW-RS answers, with
a private helper that knows no person names), so the parts are split by the standard library's MIME parser, parsed
by its XML parser, and read back into the DICOM JSON model here: the XML must say exactly what the JSON answer to
the same request says, and pydicom must build a dataset from it. The comparison with Orthanc's plugin 1.7 is on
the shape of the trees, modulo the differences dicom_xml.py lists.
"""

from __future__ import annotations

import email.parser
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy
import pydicom
import pytest

from isengard.testing import ServerProcess, assert_orthanc_error, sample

from .conftest import orthanc_dicomweb

NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
XML = "application/dicom+xml"
MULTIPART_XML = f'multipart/related; type="{XML}"'
_INT_VRS = {"IS", "SL", "SS", "SV", "UL", "US", "UV"}
_FLOAT_VRS = {"DS", "FL", "FD"}
_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def _parts(response: httpx.Response) -> list[ET.Element]:
    """The XML documents of a multipart/related answer, each checked to be a part of type application/dicom+xml."""
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith(MULTIPART_XML + ";")
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + response.content)
    assert message.is_multipart()
    parts = message.get_payload()
    assert all(part.get_content_type() == XML for part in parts)
    return [ET.fromstring(part.get_payload(decode=True)) for part in parts]


def _numbered(parent: ET.Element, name: str) -> list[ET.Element]:
    children = parent.findall(NS + name)
    assert [c.get("number") for c in children] == [str(n) for n in range(1, len(children) + 1)]
    return children


def _json_model(dataset: ET.Element) -> dict[str, Any]:
    """A NativeDicomModel (or an Item) read back into the DICOM JSON model."""
    out: dict[str, Any] = {}
    for attribute in dataset:
        assert attribute.tag == NS + "DicomAttribute"
        tag, vr = attribute.attrib["tag"], attribute.attrib["vr"]
        assert attribute.get("keyword") == (pydicom.datadict.keyword_for_tag(int(tag, 16)) or None)
        entry: dict[str, Any] = {"vr": vr}
        bulk, inline = attribute.find(NS + "BulkData"), attribute.find(NS + "InlineBinary")
        if bulk is not None:
            entry["BulkDataURI"] = bulk.attrib["uri"]
        elif inline is not None:
            entry["InlineBinary"] = inline.text
        elif vr == "SQ":
            values: list[Any] = [_json_model(item) for item in _numbered(attribute, "Item")]
        elif vr == "PN":
            values = []
            for name in _numbered(attribute, "PersonName"):
                groups = {}
                for group in name:
                    parts = [group.findtext(NS + c) or "" for c in _COMPONENTS]
                    groups[group.tag.removeprefix(NS)] = "^".join(parts).rstrip("^")
                values.append(groups)
        else:
            cast = int if vr in _INT_VRS else float if vr in _FLOAT_VRS else str
            values = [None if v.text is None else cast(v.text) for v in _numbered(attribute, "Value")]
        if bulk is None and inline is None and values:
            entry["Value"] = values
        out[tag] = entry
    return out


def _trimmed(answers: Any) -> Any:
    """JSON answers with the trailing "^" of person names removed: XML names the components that hold something,
    so "^^^^" (an empty name written in full) reads back as ""."""
    if isinstance(answers, list):
        return [_trimmed(a) for a in answers]
    if not isinstance(answers, dict):
        return answers
    if answers.get("vr") == "PN" and "Value" in answers:
        names = [{k: v.rstrip("^") for k, v in (n or {}).items()} for n in answers["Value"]]
        return {**answers, "Value": names}
    return {k: _trimmed(v) for k, v in answers.items()}


def _metadata_url(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_search_answers_one_xml_part_per_match_saying_what_json_says(loaded: ServerProcess) -> None:
    with loaded.client() as c:
        for path, params in (
            ("/dicom-web/studies", {}),
            ("/dicom-web/series", {"Modality": "MR", "includefield": "00400275"}),
            ("/dicom-web/instances", {"PatientName": "Yamada*", "includefield": "all"}),
        ):
            expected = _trimmed(c.get(path, params=params).json())
            for accept in (XML, MULTIPART_XML, f"{XML}, application/dicom+json;q=0.5"):
                documents = _parts(c.get(path, params=params, headers={"Accept": accept}))
                assert all(d.tag == NS + "NativeDicomModel" for d in documents)
                assert [_json_model(d) for d in documents] == expected, (path, accept)
        # nothing found: an empty payload (a multipart body cannot be empty)
        r = c.get("/dicom-web/studies", params={"PatientID": "nobody"}, headers={"Accept": XML})
        assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize(
    "path",
    [
        sample("Comunix", "Ct", "IM-0001-0001.dcm"),  # nested sequences, accents, bulk data
        sample("Encodings", "DavidClunie", "SCSH31"),  # a person name in three groups
    ],
    ids=lambda p: p.name,
)
def test_metadata_in_xml_reads_back_into_the_json_metadata(loaded: ServerProcess, path: Path) -> None:
    url = _metadata_url(path) + "/metadata"
    with loaded.client() as c:
        expected = _trimmed(c.get(url).json())
        for accept in (XML, MULTIPART_XML):
            (document,) = _parts(c.get(url, headers={"Accept": accept}))
            model = _json_model(document)
            assert [model] == expected
    ds = pydicom.Dataset.from_json(model, bulk_data_uri_handler=lambda *_: b"")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PatientName == header.PatientName and ds.SOPInstanceUID == header.SOPInstanceUID
    if "RequestAttributesSequence" in header:
        assert ds.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].CodeMeaning == (
            header.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].CodeMeaning.rstrip(" ")
        )


def test_series_metadata_is_one_part_per_instance(loaded: ServerProcess) -> None:
    series_url = _metadata_url(sample("Comunix", "Pet", "IM-0001-0001.dcm")).rsplit("/instances/", 1)[0]
    with loaded.client() as c:
        expected = _trimmed(c.get(f"{series_url}/metadata").json())
        documents = _parts(c.get(f"{series_url}/metadata", headers={"Accept": XML}))
    assert len(documents) == len(expected) == 2
    assert [_json_model(d) for d in documents] == expected


def test_accept_negotiation(loaded: ServerProcess) -> None:
    with loaded.client() as c:
        for accept in ("*/*", "application/json", f"{XML};q=0.5, application/dicom+json", ""):
            r = c.get("/dicom-web/studies", headers={"Accept": accept})
            assert r.headers["Content-Type"] == "application/dicom+json", accept
        r = c.get("/dicom-web/studies", headers={"Accept": f"application/dicom+json;q=0.2, {MULTIPART_XML}"})
        assert r.headers["Content-Type"].startswith(MULTIPART_XML)
        for path in ("/dicom-web/studies", _metadata_url(sample("Comunix", "Ct", "IM-0001-0001.dcm")) + "/metadata"):
            assert_orthanc_error(c.get(path, headers={"Accept": "text/xml"}), 406)
            assert_orthanc_error(c.get(path, headers={"Accept": 'multipart/related; type="image/jpeg"'}), 406)


def test_texts_are_escaped_and_kept(isengard: Any, tmp_path: Path) -> None:
    server = isengard()
    source = next(sample("Brainix").rglob("*.dcm"))
    ds = pydicom.dcmread(source)
    ds.StudyDescription = "<b>&amp; \"quoted\" 'x'</b>"
    ds.ImageComments = "line 1\r\nline 2\tend"
    ds.PatientName = "O'Brien^<Anne>"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    path = tmp_path / "escaped.dcm"
    ds.save_as(path)
    server.upload(path)
    url = _metadata_url(path) + "/metadata"
    with server.client() as c:
        (document,) = _parts(c.get(url, headers={"Accept": XML}))
        expected = _trimmed(c.get(url).json())
    assert [_json_model(document)] == expected
    (model,) = expected
    assert model["00081030"]["Value"] == [ds.StudyDescription]
    assert model["00204000"]["Value"] == [ds.ImageComments]  # the carriage return survives XML parsing
    assert model["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]


# -- against Orthanc's plugin -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with orthanc_dicomweb(tmp_path_factory.mktemp("orthanc"), sorted(sample("Comunix").rglob("*.dcm"))) as url:
        yield url


def _shape(element: ET.Element, ignored: set[str], vr: str = "") -> tuple[Any, ...]:
    """An XML element as (name, attributes, text, children), modulo the differences dicom_xml.py lists: attribute
    names in lower case (BulkData URI/uri), no xsi attributes, no empty Value after the Items of a sequence, URLs
    without their host, decimals in single precision (Orthanc's), values without the trailing spaces Orthanc keeps
    in multi-valued strings."""
    name = element.tag.removeprefix(NS)
    attributes = {k.lower(): v.split("/dicom-web/", 1)[-1] for k, v in element.attrib.items() if "}" not in k}
    children = [
        _shape(child, ignored, attributes.get("vr", ""))
        for child in element
        if child.get("tag") not in ignored
        and not (attributes.get("vr") == "SQ" and child.tag == NS + "Value" and child.text is None)
    ]
    text = "" if len(element) else (element.text or "").rstrip(" ").split("/dicom-web/", 1)[-1]
    if name == "Value" and vr in _FLOAT_VRS and text:
        text = str(numpy.float32(text))
    return name, sorted(attributes.items()), text, children


def test_xml_has_the_shape_of_orthancs(orthanc: str, loaded: ServerProcess) -> None:
    ct = sample("Comunix", "Ct", "IM-0001-0001.dcm")
    study = pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID
    # SpecificCharacterSet differs (qido.py); a study search reads no file here, so no TimezoneOffsetFromUTC
    ignored = {"00080005", "00080201"}
    for path, accept in (
        (f"/dicom-web/studies?StudyInstanceUID={study}", XML),  # Orthanc answers JSON to the multipart form
        (_metadata_url(ct) + "/metadata", MULTIPART_XML),  # and 400 to the bare form
    ):
        (expected,) = _parts(httpx.get(orthanc + path, headers={"Accept": accept}, timeout=60))
        (actual,) = _parts(loaded.get(path, headers={"Accept": accept}))
        assert _shape(actual, ignored) == _shape(expected, ignored), path
        # metadata: Orthanc 1.10 leaves these files' pixel data out (a BulkData here, checked against JSON above)
        ignored = {"00080005", "7FE00010"}
