"""QIDO-RS searches with the real dicomweb-client, checked against what pydicom reads in the same files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from isengard.testing import ServerProcess, assert_orthanc_error, dicom_variant, sample


def _uids(answers: list[dict], tag: str) -> list[str]:
    return [a[tag]["Value"][0] for a in answers]


@pytest.fixture(scope="module")
def headers(sample_files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in sample_files]


def _brainix() -> pydicom.Dataset:
    return pydicom.dcmread(next(sample("Brainix").rglob("*.dcm")), stop_before_pixels=True)


def test_search_for_studies_lists_every_study_once(client: DICOMwebClient, headers: list[pydicom.Dataset]) -> None:
    answers = client.search_for_studies()
    expected = {str(h.StudyInstanceUID) for h in headers} | {"multiframe"}
    assert len(answers) == len(expected)
    assert len(set(_uids(answers, "0020000D"))) == len(answers)


def test_study_answer_holds_the_default_attributes_typed_as_dicom_json(client: DICOMwebClient) -> None:
    brainix = _brainix()
    (study,) = client.search_for_studies(search_filters={"StudyInstanceUID": brainix.StudyInstanceUID})
    assert study["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "BRAINIX"}]}
    assert study["00100020"]["Value"] == [brainix.PatientID]
    assert study["00080061"] == {"vr": "CS", "Value": ["MR"]}
    assert study["00201206"] == {"vr": "IS", "Value": [2]}  # numbers, not strings
    assert study["00201208"] == {"vr": "IS", "Value": [44]}
    assert study["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{brainix.StudyInstanceUID}")
    assert list(study) == sorted(study)


def test_wildcards_and_case_sensitivity(client: DICOMwebClient) -> None:
    assert len(client.search_for_studies(search_filters={"PatientName": "BRAIN*"})) == 1
    assert len(client.search_for_studies(search_filters={"PatientName": "BRAI?IX"})) == 1
    # QidoCaseSensitive is true by default, as in Orthanc's plugin
    assert client.search_for_studies(search_filters={"PatientName": "brainix"}) == []


def test_date_ranges(client: DICOMwebClient, headers: list[pydicom.Dataset]) -> None:
    dates = {str(h.StudyInstanceUID): str(h.get("StudyDate", "")) for h in headers}
    for query, keep in (
        ("20060101-20061231", lambda d: "20060101" <= d <= "20061231"),
        ("-20050101", lambda d: d <= "20050101"),  # as in Orthanc, an empty date is below every bound
        ("20061201-", lambda d: d >= "20061201"),
    ):
        answers = client.search_for_studies(search_filters={"StudyDate": query})
        expected = {uid for uid, d in dates.items() if keep(d)}
        assert set(_uids(answers, "0020000D")) - {None} >= expected, query
        assert all(keep(a["00080020"].get("Value", [""])[0]) for a in answers), query


def test_uid_lists_match_any_of_the_uids(client: DICOMwebClient, headers: list[pydicom.Dataset]) -> None:
    series = sorted({str(h.SeriesInstanceUID) for h in headers})[:3]
    for separator in (",", "\\"):
        answers = client.search_for_series(search_filters={"SeriesInstanceUID": separator.join(series)})
        assert sorted(_uids(answers, "0020000E")) == series


def test_modalities_in_study(client: DICOMwebClient) -> None:
    comunix = pydicom.dcmread(next(sample("Comunix").rglob("*.dcm")), stop_before_pixels=True)
    answers = client.search_for_studies(search_filters={"ModalitiesInStudy": "PT"})
    assert str(comunix.StudyInstanceUID) in _uids(answers, "0020000D")
    (study,) = [a for a in answers if a["0020000D"]["Value"][0] == comunix.StudyInstanceUID]
    assert sorted(study["00080061"]["Value"]) == ["CT", "PT"]


def test_series_of_a_study_and_instances_of_a_series(client: DICOMwebClient, headers: list[pydicom.Dataset]) -> None:
    brainix = _brainix()
    series = client.search_for_series(study_instance_uid=brainix.StudyInstanceUID)
    counts = Counter(str(h.SeriesInstanceUID) for h in headers if h.StudyInstanceUID == brainix.StudyInstanceUID)
    assert {a["0020000E"]["Value"][0]: a["00201209"]["Value"][0] for a in series} == counts
    first = series[0]["0020000E"]["Value"][0]
    instances = client.search_for_instances(study_instance_uid=brainix.StudyInstanceUID, series_instance_uid=first)
    assert len(instances) == counts[first]
    sample_answer = instances[0]
    (file_header,) = [h for h in headers if h.SOPInstanceUID == sample_answer["00080018"]["Value"][0]]
    assert sample_answer["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.4"]
    assert sample_answer["00280010"] == {"vr": "US", "Value": [file_header.Rows]}
    assert sample_answer["00200013"]["vr"] == "IS" and isinstance(sample_answer["00200013"]["Value"][0], int)
    in_study = client.search_for_instances(study_instance_uid=brainix.StudyInstanceUID)
    assert len(in_study) == sum(counts.values())


def test_limit_offset_page_the_answers(client: DICOMwebClient) -> None:
    everything = _uids(client.search_for_instances(), "00080018")
    page = _uids(client.search_for_instances(limit=5, offset=3), "00080018")
    assert page == everything[3:8]


def test_includefield_adds_attributes_and_all_adds_the_header(client: DICOMwebClient) -> None:
    brainix = _brainix()
    filters = {"StudyInstanceUID": brainix.StudyInstanceUID}
    (plain,) = client.search_for_studies(search_filters=filters)
    assert "00081030" not in plain
    (more,) = client.search_for_studies(search_filters=filters, fields=["StudyDescription", "00180087"])
    assert more["00081030"]["Value"] == [brainix.StudyDescription]
    assert more["00180087"]["Value"] == [float(brainix.MagneticFieldStrength)]  # from a file: DS as a number
    (everything,) = client.search_for_studies(search_filters=filters, fields=["all"])
    assert len(everything) > 60 and "00080008" in everything
    assert not any(key.startswith("0002") for key in everything)
    assert "7FE00010" not in everything


def test_fuzzymatching_is_accepted(client: DICOMwebClient) -> None:
    assert len(client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "BRAINIX"})) == 1


def test_person_names_with_ideographic_and_phonetic_groups(client: DICOMwebClient) -> None:
    ds = pydicom.dcmread(sample("Encodings", "DavidClunie", "SCSH31"), stop_before_pixels=True)
    (answer,) = client.search_for_instances(search_filters={"SOPInstanceUID": ds.SOPInstanceUID})
    assert answer["00100010"]["Value"] == [
        {"Alphabetic": ds.PatientName.alphabetic, "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]


def test_bad_queries_are_400(loaded: ServerProcess) -> None:
    with loaded.client() as c:
        for params in ({"limit": "x"}, {"offset": "-1"}, {"NoSuchAttribute": "1"}, {"StudyInstanceUID": "1.2*"}):
            r = c.get("/dicom-web/studies", params=params)
            assert r.status_code == 400, params
        assert_orthanc_error(c.get("/dicom-web/studies", params={"fuzzymatching": "maybe"}), 400)
        assert_orthanc_error(c.get("/dicom-web/studies", headers={"Accept": "text/html"}), 406)
        assert c.get("/dicom-web/studies", headers={"Accept": "application/json"}).status_code == 200


def test_search_below_an_unknown_study_is_empty(loaded: ServerProcess) -> None:
    r = httpx.get(f"{loaded.url}/dicom-web/studies/1.2.3.4/series")
    assert r.status_code == 200 and r.json() == []
    assert r.headers["Content-Type"] == "application/dicom+json"


def _with_item(header: pydicom.Dataset, path: tuple[int, ...], wanted: str) -> bool:
    """Whether a header has, along ``path`` (sequence tags, then the attribute), an item holding ``wanted``."""
    *sequences, leaf = path
    level = [header]
    for tag in sequences:
        level = [item for ds in level if tag in ds for item in ds[tag].value]
    return any(leaf in ds and str(ds[leaf].value).rstrip(" ") == wanted for ds in level)


@pytest.mark.parametrize(
    ("key", "path", "value"),
    [
        ("RequestAttributesSequence.ScheduledProcedureStepID", (0x00400275, 0x00400009), "A10029316691"),
        ("00400275.00400009", (0x00400275, 0x00400009), "3964225"),
        (
            "RequestAttributesSequence.ScheduledProtocolCodeSequence.CodeValue",
            (0x00400275, 0x00400008, 0x00080100),
            "CTTETE",
        ),
    ],
)
def test_matching_inside_sequences(
    client: DICOMwebClient, headers: list[pydicom.Dataset], key: str, path: tuple[int, ...], value: str
) -> None:
    expected = {str(h.SOPInstanceUID) for h in headers if _with_item(h, path, value)}
    assert expected  # the samples hold such items
    answers = client.search_for_instances(search_filters={key: value})
    assert set(_uids(answers, "00080018")) == expected
    # the answer holds the sequence the key is in
    assert all(_with_item(pydicom.Dataset.from_json(a), path, value) for a in answers)


def test_wildcards_and_includefield_inside_sequences(client: DICOMwebClient, headers: list[pydicom.Dataset]) -> None:
    brainix = _brainix()
    filters = {"RequestAttributesSequence.ScheduledProcedureStepDescription": "IRM c*"}
    (study,) = client.search_for_studies(search_filters=filters)
    assert study["0020000D"]["Value"] == [brainix.StudyInstanceUID]
    assert study["00400275"]["Value"][0]["00400007"]["Value"] == ["IRM cérébrale, neuro-crâne"]
    filters = {"StudyInstanceUID": brainix.StudyInstanceUID}
    (plain,) = client.search_for_studies(search_filters=filters)
    assert "00400275" not in plain
    (more,) = client.search_for_studies(search_filters=filters, fields=["00400275.00400009"])
    assert more["00400275"]["Value"][0]["00400009"]["Value"] == ["A10029316691"]


def test_keys_of_one_sequence_match_in_one_item(isengard) -> None:
    """PS3.4 C.2.2.2.6: an item matches when all its keys do; items are not mixed."""
    items = []
    for step, procedure in (("S1", "P1"), ("S2", "P2")):
        item = pydicom.Dataset()
        item.ScheduledProcedureStepID, item.RequestedProcedureID = step, procedure
        items.append(item)
    server = isengard()
    source = next(sample("Brainix").rglob("*.dcm"))
    server.post("/instances", content=dicom_variant(source, RequestAttributesSequence=items)).raise_for_status()
    key = "RequestAttributesSequence."
    with server.client() as c:
        for query, found in (
            ({key + "ScheduledProcedureStepID": "S2"}, 1),
            ({key + "ScheduledProcedureStepID": "S1", key + "RequestedProcedureID": "P1"}, 1),
            ({key + "ScheduledProcedureStepID": "S1", key + "RequestedProcedureID": "P2"}, 0),
            ({key + "ScheduledProcedureStepID": "S?", key + "00401001": "P2"}, 1),
            ({key + "ScheduledProcedureStepID": "S3"}, 0),
        ):
            r = c.get("/dicom-web/instances", params=query)
            assert r.status_code == 200 and len(r.json()) == found, query
            # the same keys in /tools/find (an extension of Orthanc's body), which QIDO-RS is made of
            body = {"Level": "Instance", "Query": query}
            assert len(c.post("/tools/find", json=body).json()) == found, query
        assert_orthanc_error(c.get("/dicom-web/instances", params={"PatientName.PatientID": "1"}), 400)
        assert_orthanc_error(c.post("/tools/find", json={"Level": "Study", "Query": {"Foo.PatientID": "1"}}), 400)
