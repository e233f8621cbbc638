"""Isengard driven by pyorthanc, a real Orthanc client: upload, listing, finding, and its resource objects,
whose properties read the same answers the Orthanc reference gave (tests/reference)."""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pyorthanc import Instance, Orthanc, Patient, Series, Study, find, find_patients, find_series, find_studies, upload

from isengard.testing import ServerProcess, sample

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from reference_data import load

SAMPLES = ("Brainix/Flair/IM-0001-0001.dcm", "Brainix/Flair/IM-0001-0002.dcm", "Brainix/Epi/IM-0001-0001.dcm")
SAMPLES += ("Knee/T1/IM-0001-0001.dcm", "PatientWith2studies/TEST_1_study_1234.dcm")
SAMPLES += ("PatientWith2studies/TEST_1_study_2345.dcm",)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = ServerProcess(tmp_path_factory.mktemp("pyorthanc")).start()
    client = Orthanc(server.url)
    for path in SAMPLES:
        [instance] = upload(client, sample(path))
        assert isinstance(instance, Instance)
    yield client
    server.stop()


def recorded(level: str, rid: str) -> dict:
    return next(r for r in load(level) if r["ID"] == rid)


def test_listing_and_system(orthanc: Orthanc) -> None:
    assert orthanc.get_system()["ApiVersion"] >= load("system")["ApiVersion"]
    assert len(orthanc.get_patients()) == 3
    assert len(orthanc.get_studies()) == 4
    assert len(orthanc.get_instances()) == len(SAMPLES)
    stats = orthanc.get_statistics()
    assert (stats["CountPatients"], stats["CountInstances"]) == (3, len(SAMPLES))


def test_upload_of_a_folder_skips_what_is_stored(orthanc: Orthanc) -> None:
    instances = upload(orthanc, sample("Brainix", "Flair").parent / "Flair", check_before_upload=True)
    assert len(instances) == 22
    assert len(orthanc.get_series_id_instances(instances[0].series_identifier)) == 22


def test_patient_study_series_instance_objects(orthanc: Orthanc) -> None:
    [brainix] = find_patients(orthanc, query={"PatientName": "BRAINIX"})
    want = recorded("patients", brainix.identifier)
    assert isinstance(brainix, Patient)
    assert (brainix.name, brainix.patient_id, brainix.sex) == (
        want["MainDicomTags"]["PatientName"],
        want["MainDicomTags"]["PatientID"],
        want["MainDicomTags"]["PatientSex"],
    )
    assert brainix.protected is False
    [study] = brainix.studies
    assert isinstance(study, Study)
    assert study.uid == recorded("studies", study.identifier)["MainDicomTags"]["StudyInstanceUID"]
    assert study.parent_patient.identifier == brainix.identifier
    series = {s.description: s for s in study.series}
    assert all(isinstance(s, Series) for s in series.values())
    flair = recorded("series", series["sT2W/FLAIR"].identifier)
    assert sorted(i.identifier for i in series["sT2W/FLAIR"].instances) == sorted(flair["Instances"])
    assert series["sT2W/FLAIR"].modality == "MR"
    instance = series["sT2W/FLAIR"].instances[0]
    assert instance.main_dicom_tags == recorded("instances", instance.identifier)["MainDicomTags"]
    assert instance.parent_series.identifier == series["sT2W/FLAIR"].identifier
    assert instance.parent_study.identifier == study.identifier
    assert instance.parent_patient.identifier == brainix.identifier
    assert instance.simplified_tags["PatientName"] == "BRAINIX"


def test_dicom_file_content(orthanc: Orthanc) -> None:
    for path in SAMPLES:
        original = sample(path).read_bytes()
        sop = pydicom.dcmread(io.BytesIO(original), stop_before_pixels=True).SOPInstanceUID
        [found] = find_series(orthanc, query={"SeriesInstanceUID": pydicom.dcmread(sample(path)).SeriesInstanceUID})
        [instance] = [i for i in found.instances if i.uid == sop]
        content = instance.get_dicom_file_content()
        assert hashlib.md5(content).hexdigest() == load("attachments")[instance.identifier]["UncompressedMD5"]
        assert instance.get_pydicom().SOPInstanceUID == sop


def test_find_helpers(orthanc: Orthanc) -> None:
    studies = find_studies(orthanc, query={"PatientID": "TEST_1"})
    assert sorted(s.identifier for s in studies) == sorted(
        recorded("patients", studies[0].parent_patient.identifier)["Studies"]
    )
    assert [p.name for p in find(orthanc, patient_filter=lambda p: p.name == "Test")] == ["Test"]
    assert find_patients(orthanc, query={"PatientName": "NOBODY"}) == []


def test_labels_and_protection_through_objects(orthanc: Orthanc) -> None:
    [knee] = find_patients(orthanc, query={"PatientName": "KNEE"})
    knee.protected = True
    assert Patient(knee.identifier, orthanc).protected is True
    assert orthanc.get_patients_id(knee.identifier)["IsProtected"] is True
    knee.protected = False
    assert knee.protected is False
    study = knee.studies[0]
    study.add_label("reviewed")
    assert study.labels == ["reviewed"]
    assert [s.identifier for s in find_studies(orthanc, labels=["reviewed"])] == [study.identifier]
    study.remove_label("reviewed")
    assert study.labels == []
