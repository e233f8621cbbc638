"""C-FIND against the DICOM server, compared with what Orthanc answers for the same files and queries.

``data/orthanc-cfind.json`` holds Orthanc 1.10.1's answers to ``QUERIES`` over ``DATA_SET``. To record them again,
load those files into an Orthanc that knows this test's AET as a modality, then run::

    python tests/test_dicom_find.py --record 127.0.0.1:4242

Orthanc answers in its DefaultEncoding (Latin-1 by default), dropping what Latin-1 cannot write; Isengard always
answers in UTF-8 ("ISO_IR 192"). The comparison therefore drops those characters from Isengard's answers too,
and the tests at the end check that they do arrive.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from isengard.testing import ServerProcess, sample

REFERENCE = Path(__file__).parent / "data" / "orthanc-cfind.json"
AET = "ORTHANC"  # as the reference, so that RetrieveAETitle compares
FINDER = "ISENGARD_TESTS"
SUCCESS, PENDING, MATCHING_TERMINATED, UNABLE_TO_PROCESS = 0x0000, 0xFF00, 0xFE00, 0xC000
MODELS = {"patient": PatientRootQueryRetrieveInformationModelFind, "study": StudyRootQueryRetrieveInformationModelFind}
DATA_SET = ["Brainix", "Comunix", "PatientWith2studies", "Knix", "Phenix", "Beaufix", "Encodings/Lena-*.dcm"]
BRAINIX_STUDY = "2.16.840.1.113669.632.20.1211.10000357775"
COMUNIX_STUDY = "1.2.840.113745.101000.1008000.38048.4626.5933732"
BRAINIX_FLAIR = "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114285654497"
KNIX_SERIES = "1.2.840.113619.2.176.2025.1499492.7391.1171285944.388"

#: (information model, identifier): the queries whose answers must be Orthanc's.
QUERIES: list[tuple[str, dict[str, Any]]] = [
    # patient level: universal, case-insensitive PN, wildcards, ranges, lists, computed keys
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientName": "", "PatientID": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientName": "brainix", "PatientID": "", "PatientSex": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientName": "*NIX", "NumberOfPatientRelatedStudies": "",
                 "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientName": "b?ainix", "PatientBirthDate": "19400101-19500101"}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientBirthDate": "-19450101", "PatientName": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientID": "5Yp0E\\TEST_1\\nobody", "PatientName": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": "TEST-*", "OtherPatientIDs": ""}),
    ("patient", {"QueryRetrieveLevel": "PATIENT", "PatientID": "latin1", "PatientName": "",
                 "PatientComments": ""}),
    # study level, both roots
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyDate": "", "StudyInstanceUID": "", "PatientName": "",
               "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": "", "NumberOfStudyRelatedSeries": "",
               "AccessionNumber": "", "StudyDescription": "", "SOPClassesInStudy": ""}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "ModalitiesInStudy": "PT"}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "ModalitiesInStudy": "MR\\PT"}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "StudyDate": "20060101-"}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "StudyDate": "-20060101"}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "StudyDate": "20040101-20061231",
               "StudyTime": ""}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"{BRAINIX_STUDY}\\{COMUNIX_STUDY}",
               "PatientID": "", "StudyDescription": ""}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "AccessionNumber": "1234*"}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "Modality": "MR"}),  # a series tag: nothing
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "SeriesInstanceUID": ""}),
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "PatientName": "PHENIX",
               "ReferencedStudySequence": []}),
    ("patient", {"QueryRetrieveLevel": "STUDY", "PatientID": "TEST_1", "StudyInstanceUID": "",
                 "StudyDescription": "", "PatientName": ""}),
    ("patient", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "InstitutionName": ""}),
    # series level
    ("study", {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": BRAINIX_STUDY, "SeriesInstanceUID": "",
               "Modality": "", "NumberOfSeriesRelatedInstances": "", "SeriesDescription": "", "SeriesNumber": ""}),
    ("study", {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "Modality": "CT\\PT", "PatientName": ""}),
    ("study", {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "Modality": "", "RepetitionTime": "",
               "PatientName": "BRAINIX"}),
    ("study", {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "Modality": "", "EchoTime": "20"}),
    ("study", {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "SeriesDescription": "*flair*",
               "NumberOfStudyRelatedInstances": ""}),
    ("patient", {"QueryRetrieveLevel": "SERIES", "PatientID": "5Yp0E", "StudyInstanceUID": BRAINIX_STUDY,
                 "SeriesInstanceUID": "", "BodyPartExamined": ""}),
    # instance level
    ("study", {"QueryRetrieveLevel": "IMAGE", "SeriesInstanceUID": "", "SOPInstanceUID": "", "InstanceNumber": "1",
               "ImageComments": "", "SOPClassUID": ""}),
    ("study", {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": "", "Rows": "", "Columns": "", "PatientName": "KNIX",
               "SliceThickness": "", "InstanceNumber": "1\\2\\3"}),
    ("study", {"QueryRetrieveLevel": "IMAGE", "SeriesInstanceUID": BRAINIX_FLAIR, "SOPInstanceUID": "",
               "InstanceNumber": "", "ImagePositionPatient": "", "AcquisitionNumber": ""}),
    ("patient", {"QueryRetrieveLevel": "IMAGE", "PatientID": "ozp00SjY2xG", "SeriesInstanceUID": KNIX_SERIES,
                 "SOPInstanceUID": "", "InstanceNumber": "", "ImageType": "ORIGINAL*"}),
    # refused: a wildcard on a UID
    ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.*"}),
]  # fmt: skip


def data_set_files() -> list[Path]:
    files = []
    for item in DATA_SET:
        folder, _, pattern = item.partition("/")
        files += sorted(p for p in sample(folder).rglob(pattern or "*") if p.is_file())
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"DicomAet": AET, "DicomModalities": {"tests": [FINDER, "127.0.0.1", 104]}}
    srv = ServerProcess(tmp_path_factory.mktemp("dicom-find"), config).start()
    srv.upload(*data_set_files())
    yield srv
    srv.stop()


# -- a C-FIND client ------------------------------------------------------------------------------------------
def text(elem: Any) -> str:
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def c_find(
    address: tuple[str, int], model: str, keys: dict[str, Any], *, aet: str = FINDER, called: str = AET
) -> tuple[list[int], list[Dataset]]:
    """All the statuses and answers of one C-FIND."""
    query = Dataset()
    with warnings.catch_warnings():  # queries hold what values may not: wildcards, empty numbers
        warnings.simplefilter("ignore")
        for keyword, value in keys.items():
            setattr(query, keyword, value)
    ae = AE(ae_title=aet)
    ae.add_requested_context(MODELS[model])
    assoc = ae.associate(*address, ae_title=called)
    assert assoc.is_established
    statuses, answers = [], []
    try:
        for status, identifier in assoc.send_c_find(query, MODELS[model]):
            statuses.append(int(status.Status))
            if identifier is not None:
                answers.append(identifier)
    finally:
        assoc.release()
    return statuses, answers


def comparable(statuses: list[int], answers: list[Dataset], *, latin1: bool = False) -> dict[str, Any]:
    """Final status and answers as sorted keyword -> text maps (SpecificCharacterSet aside)."""

    def value(elem: Any) -> str:
        out = text(elem)
        return out.encode("latin-1", "ignore").decode("latin-1") if latin1 else out

    items = [{e.keyword: value(e) for e in a if e.keyword != "SpecificCharacterSet"} for a in answers]
    return {"status": statuses[-1], "answers": sorted(items, key=lambda d: json.dumps(d, sort_keys=True))}


def local(server: ServerProcess) -> tuple[str, int]:
    return ("127.0.0.1", int(server.config["DicomPort"]))


# -- the comparison with Orthanc ------------------------------------------------------------------------------
def reference() -> dict[str, Any]:
    return {json.dumps([r["model"], r["keys"]]): r["answer"] for r in json.loads(REFERENCE.read_text())}


@pytest.mark.parametrize(("model", "keys"), QUERIES, ids=[f"{m}-{k['QueryRetrieveLevel']}-{i}" for i, (m, k) in
                                                          enumerate(QUERIES)])  # fmt: skip
def test_answers_are_orthanc_answers(server: ServerProcess, model: str, keys: dict[str, Any]) -> None:
    expected = reference()[json.dumps([model, keys])]
    assert comparable(*c_find(local(server), model, keys), latin1=True) == expected


def test_answers_hold_values_of_every_vr_as_the_file_has_them(server: ServerProcess) -> None:
    original = pydicom.dcmread(sample("Phenix", "IM-0001-0001.dcm"))
    present = [
        "Rows",
        "PixelSpacing",
        "WindowCenter",
        "ImagePositionPatient",
        "PatientAge",
        "RescaleSlope",
        "XRayTubeCurrent",
        "KVP",
        "ImageType",
        "StudyDate",
        "ContentTime",
    ]
    absent = ["SmallestImagePixelValue", "FrameIncrementPointer", "RealWorldValueLastValueMapped"]  # US or SS, AT
    keys = {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": original.SOPInstanceUID}
    _, [answer] = c_find(local(server), "study", {**keys, **dict.fromkeys(present + absent, "")})
    assert {k: answer.get(k) for k in present} == {k: original.get(k) for k in present}
    assert {k: answer[k].value for k in absent} == dict.fromkeys(absent, None)  # answered, empty


# -- character sets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patient_id", "name", "spelling"),
    [
        ("greek", "Test-Θ", "TEST-θ"),
        ("cyrillic", "Test-Дћ", "test-дЋ"),
        ("shift-jis", "Test-ДΘﾈ", "test-дθﾈ"),
        ("utf8", "Test-éüäöòДΘĝדصķћ๛ﾈİ", "Test-éüäöòДΘĝדصķћ๛ﾈİ"),
    ],
)
def test_names_come_back_in_utf8(server: ServerProcess, patient_id: str, name: str, spelling: str) -> None:
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": patient_id, "PatientName": ""}
    statuses, [answer] = c_find(local(server), "patient", keys)
    assert statuses == [PENDING, SUCCESS]
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == name
    # and the name finds its patient, case-insensitively in any alphabet
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": spelling}
    _, answers = c_find(local(server), "patient", {"SpecificCharacterSet": "ISO_IR 192", **keys})
    assert [a.PatientID for a in answers] == [patient_id]


def test_query_in_another_character_set(server: ServerProcess) -> None:
    """The identifier is read in its own SpecificCharacterSet (ISO_IR 126 is Greek)."""
    keys = {"SpecificCharacterSet": "ISO_IR 126", "QueryRetrieveLevel": "PATIENT", "PatientName": "Test-Θ"}
    _, answers = c_find(local(server), "patient", {**keys, "PatientID": ""})
    assert [(a.PatientID, str(a.PatientName)) for a in answers] == [("greek", "Test-Θ")]


def test_findscu_reads_utf8_answers(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        ["findscu", "-P", "-aet", FINDER, "-aec", AET, "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=cyrillic",
         "-k", "PatientName", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "-X", "-od",
         str(tmp_path), "127.0.0.1", str(server.config["DicomPort"])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [path] = tmp_path.glob("rsp*.dcm")
    answer = pydicom.dcmread(path)
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Test-Дћ"
    assert answer.NumberOfStudyRelatedInstances == 1


# -- options --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"CaseSensitivePN": True, "LimitFindResults": 2, "LimitFindInstances": 3, "DicomAlwaysAllowFind": True}
    srv = ServerProcess(tmp_path_factory.mktemp("dicom-find-tuned"), config).start()
    srv.upload(*sample("Brainix", "Flair").iterdir(), *sample("Comunix").rglob("*.dcm"), *sample("Phenix").iterdir())
    yield srv
    srv.stop()


def test_case_sensitive_pn(tuned: ServerProcess) -> None:
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}
    assert c_find(local(tuned), "patient", {**keys, "PatientName": "brainix"})[1] == []
    assert len(c_find(local(tuned), "patient", {**keys, "PatientName": "BRAINIX"})[1]) == 1
    assert len(c_find(local(tuned), "patient", {**keys, "PatientName": "BR*"})[1]) == 1


def test_always_allow_find_answers_unknown_aets(tuned: ServerProcess) -> None:
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": "BRAINIX"}
    statuses, answers = c_find(local(tuned), "study", keys, aet="NOBODY_KNOWS_ME")
    assert statuses[-1] == SUCCESS and len(answers) == 1


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, 2),
        ({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}, 2),
        ({"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": ""}, 3),
        ({"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": "", "ImageType": "ORIGINAL*"}, 3),  # matched in files
    ],
)
def test_limits_cut_answers_and_say_so(tuned: ServerProcess, keys: dict[str, str], expected: int) -> None:
    """As Orthanc: the answers up to the limit, then 0xFE00 (matching terminated) instead of success."""
    statuses, answers = c_find(local(tuned), "study", keys)
    assert len(answers) == expected
    assert statuses == [PENDING] * expected + [MATCHING_TERMINATED]


def test_answers_within_the_limit_are_complete(tuned: ServerProcess) -> None:
    keys = {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "Modality": "MR\\PT"}
    statuses, answers = c_find(local(tuned), "study", keys)
    assert len(answers) == 2 and statuses[-1] == SUCCESS  # exactly the limit: nothing was left out


def record(address: tuple[str, int], called: str) -> None:
    records = []
    for model, keys in QUERIES:
        answer = comparable(*c_find(address, model, keys, called=called))
        records.append({"model": model, "keys": keys, "answer": answer})
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"recorded {len(records)} queries in {REFERENCE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Record Orthanc's C-FIND answers to QUERIES.")
    parser.add_argument("--record", required=True, metavar="HOST:PORT", help="an Orthanc holding DATA_SET")
    parser.add_argument("--called", default="ORTHANC", help="its DicomAet")
    args = parser.parse_args()
    host, _, port = args.record.rpartition(":")
    record((host, int(port)), args.called)
    sys.exit(0)
