"""/{level}/{id}/module, /studies/{id}/module-patient and /series/{id}/ordered-slices, against Orthanc's answers.

The expected key sets, values and slice orders of the samples were read from a reference Orthanc holding them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from isengard.model import DicomIdentifiers, ResourceType
from isengard.testing import ServerProcess, sample

SAMPLES = ("Brainix", "Knee", "Comunix", "Beaufix", "Series", "Phenix")

BRAINIX_INSTANCE = "8dddbd75-f4095768-6e66f851-22305751-18782bdd"  # Brainix/Flair/IM-0001-0005.dcm
BRAINIX_SERIES = "1e2c125c-411b8e86-3f4fe68e-a7584dd3-c6da78f0"
BRAINIX_STUDY = "27f7126f-4f66fb14-03f4081b-f9341db2-53925988"
BRAINIX_PATIENT = "16738bc3-e47ed42a-43ce044c-a3414a45-cb069bd0"
GENERATED_PATIENT = "SLICES"


def dicom(series: str, sop: str, **tags: Any) -> bytes:
    """A small real DICOM file of one series of the generated study."""
    ds = Dataset()
    ds.PatientID, ds.PatientName = GENERATED_PATIENT, "Slices^Test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1", series, sop
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", "OT"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, sop
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def series_id(series: str) -> str:
    return DicomIdentifiers(GENERATED_PATIENT, "1.2.826.0.1.3680043.10.1", series, "").public_id(ResourceType.SERIES)


def instance_id(series: str, sop: str) -> str:
    ids = DicomIdentifiers(GENERATED_PATIENT, "1.2.826.0.1.3680043.10.1", series, sop)
    return ids.public_id(ResourceType.INSTANCE)


MULTIFRAME = "1.2.826.0.1.3680043.10.1.1"  # stored 3, 1, 2; frames 4, 1, 2
UNORDERED = "1.2.826.0.1.3680043.10.1.2"  # neither positions nor instance numbers
GEOMETRY = "1.2.826.0.1.3680043.10.1.3"  # positions contradict the instance numbers
GENERATED = [
    (MULTIFRAME, "1.2.826.0.1.3680043.10.1.1.3", {"InstanceNumber": 3, "NumberOfFrames": 4}),
    (MULTIFRAME, "1.2.826.0.1.3680043.10.1.1.1", {"InstanceNumber": 1}),
    (MULTIFRAME, "1.2.826.0.1.3680043.10.1.1.2", {"InstanceNumber": 2, "NumberOfFrames": 2}),
    (UNORDERED, "1.2.826.0.1.3680043.10.1.2.1", {}),
    (UNORDERED, "1.2.826.0.1.3680043.10.1.2.2", {}),
    *[
        (GEOMETRY, f"1.2.826.0.1.3680043.10.1.3.{n}", {"InstanceNumber": n, "ImagePositionPatient": [0, 0, z],
         "ImageOrientationPatient": [1, 0, 0, 0, -1, 0]})
        for n, z in [(1, 5.0), (2, 1.0), (3, 3.0)]
    ],
]  # fmt: skip


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[httpx.Client]:
    with module_server.client() as c:
        for folder in SAMPLES:
            for path in sorted(sample(folder).rglob("*.dcm")):
                assert c.post("/instances", content=path.read_bytes()).status_code == 200
        for series, sop, tags in GENERATED:
            assert c.post("/instances", content=dicom(series, sop, **tags)).status_code == 200
        yield c


def get(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        (f"/instances/{BRAINIX_INSTANCE}/module", ["InstanceCreationDate", "InstanceCreationTime",
         "InstanceCreatorUID", "InstanceNumber", "SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet"]),
        (f"/series/{BRAINIX_SERIES}/module", ["Modality", "PatientPosition", "PerformedProcedureStepDescription",
         "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
         "PerformedProtocolCodeSequence", "ProtocolName", "ReferencedPerformedProcedureStepSequence",
         "RequestAttributesSequence", "SeriesDate", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
         "SeriesTime"]),
        (f"/studies/{BRAINIX_STUDY}/module", ["AccessionNumber", "ProcedureCodeSequence", "ReferencedStudySequence",
         "ReferringPhysicianName", "StudyDate", "StudyDescription", "StudyID", "StudyInstanceUID", "StudyTime"]),
        (f"/studies/{BRAINIX_STUDY}/module-patient", ["PatientBirthDate", "PatientID", "PatientName", "PatientSex"]),
        (f"/patients/{BRAINIX_PATIENT}/module", ["PatientBirthDate", "PatientID", "PatientName", "PatientSex"]),
    ],
)  # fmt: skip
def test_modules_hold_what_orthanc_shows(client, path, keys):
    assert sorted(get(client, path + "?simplify")) == keys


def test_module_formats(client):
    assert get(client, f"/instances/{BRAINIX_INSTANCE}/module?short") == {
        "0008,0005": "ISO_IR 100",
        "0008,0012": "20061201",
        "0008,0013": "145321.000000",
        "0008,0014": "1.3.46.670589.11.8743.5",
        "0008,0016": "1.2.840.10008.5.1.4.1.1.4",
        "0008,0018": "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114314040547",
        "0020,0013": "5",
    }
    full = get(client, f"/series/{BRAINIX_SERIES}/module")
    assert full["0008,103e"] == {"Name": "SeriesDescription", "Type": "String", "Value": "sT2W/FLAIR"}
    protocol = full["0040,0260"]
    assert (protocol["Name"], protocol["Type"]) == ("PerformedProtocolCodeSequence", "Sequence")
    assert protocol["Value"][0]["0008,0100"] == {"Name": "CodeValue", "Type": "String", "Value": "IRMCEREB"}
    simplified = get(client, f"/series/{BRAINIX_SERIES}/module?simplify")
    assert simplified["PerformedProtocolCodeSequence"] == [
        {
            "CodeMeaning": "IRM cérébrale, neuro-crâne",
            "CodeValue": "IRMCEREB",
            "CodingSchemeDesignator": "XPLORE",
            "ContextGroupExtensionFlag": "N",
        }
    ]
    short = get(client, f"/series/{BRAINIX_SERIES}/module?short")
    assert short["0040,0260"] == [{"0008,0100": "IRMCEREB", "0008,0102": "XPLORE", "0008,0104":
        "IRM cérébrale, neuro-crâne", "0008,010b": "N"}]  # fmt: skip
    assert set(short) == set(full)


@pytest.mark.parametrize(
    ("patient", "series", "study_tags", "series_tags"),
    [
        ("KNEE", "bbf7a453-0d34251a-03663b55-46bb31b9-ffd74c59",
         "0008,0020 0008,0030 0008,0050 0008,0090 0008,1030 0008,1032 0020,000d 0020,0010",
         "0008,0021 0008,0031 0008,0060 0008,103e 0008,1111 0018,0015 0018,1030 0018,5100 0020,000e 0020,0011 "
         "0040,0244 0040,0245 0040,0253 0040,0254 0040,0260 0040,0275 0040,0280"),
        ("COMUNIX", "7124dba7-09803f33-98b73826-33f14632-ea842d29",
         "0008,0020 0008,0030 0008,0050 0008,0090 0008,1030 0008,1110 0020,000d 0020,0010",
         "0008,0021 0008,0031 0008,0060 0008,103e 0008,1111 0018,0015 0018,1030 0018,5100 0020,000e 0020,0011 "
         "0040,0244 0040,0245 0040,0253 0040,0254 0040,0275"),
        ("PHENIX", "37836232-d13a2350-fa1dedc5-962b31aa-010f8e52",
         "0008,0020 0008,0030 0008,0050 0008,0090 0008,1030 0008,1032 0020,000d 0020,0010",
         "0008,0060 0008,1111 0018,1030 0018,5100 0020,000e 0020,0011 0040,0253 0040,0254 0040,0260 0040,0275"),
    ],
)  # fmt: skip
def test_study_and_series_modules_of_other_samples(client, patient, series, study_tags, series_tags):
    [study] = client.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": patient}}).json()
    assert series in get(client, f"/studies/{study}")["Series"]
    assert sorted(get(client, f"/studies/{study}/module?short")) == study_tags.split()
    assert sorted(get(client, f"/series/{series}/module?short")) == series_tags.split()


def test_patient_module_of_a_study_has_two_routes(client):
    module = get(client, f"/studies/{BRAINIX_STUDY}/module-patient")
    assert module == get(client, f"/studies/{BRAINIX_STUDY}/patient-module")
    assert module == get(client, f"/patients/{BRAINIX_PATIENT}/module")
    assert module["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "BRAINIX"}


@pytest.mark.parametrize(
    "path",
    [
        f"/series/{BRAINIX_STUDY}/module",  # a study is not a series
        "/studies/nope/module",
        "/studies/nope/module-patient",
        "/instances/nope/module",
        f"/series/{BRAINIX_STUDY}/ordered-slices",
    ],
)
def test_unknown_resources_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["OrthancStatus"] == 17


@pytest.mark.parametrize(
    ("series", "kind", "order"),
    [
        (BRAINIX_SERIES, "Volume", "fa1fc64f f5701efb 3b2a215c 6059d07c 99264275 40df6ac1 08ff3a1a 6fe353dd 3ad70bbe "
         "9058e01a 24ea828f 5ec70f9d 59ad98a9 fccbc555 bda7dd9e 4cf245ed 144ca294 8dddbd75 f32ec17d 2db53a93 bbd4d3da "
         "4dc71dc0"),
        ("6de73705-c4e65c1b-9d9ea1b5-cabcd8e7-f15e4285", "Volume", "48343ae0 5ad1ef31 ecca2211 a93ba907 6799ef99 "
         "87e038e2 6c7bf7c4 ead04b52 d776bdcc 8d40cb78 ea738abb 0793962c 5a89b014 9aef5ea4 b0584770 a395334d 8b7292be "
         "e661e1d5 4cb79218 82185a3d f4a27d98 d14247ee 8c95c20a c8df6478"),
        ("7124dba7-09803f33-98b73826-33f14632-ea842d29", "Volume", "c4b008ab ee693caa"),
        ("318603c5-03e8cffc-a82b6ee1-3ccd3c1e-18d7e3bb", "Volume", "46cf2312 86aa0163"),
        # two slices at the same position: ordered by instance number
        ("9938736f-4e08335a-37026afa-8e3d0d91-60eb8f19", "Sequence", "ef91e322 97c93aa9"),
        ("ce25ecb6-ed79d004-5ae43ca7-3fc89bc5-67511614", "Sequence", "5d921403 ff9f0b2f 681b4ce6 300b4209 d62836ef"),
        ("37836232-d13a2350-fa1dedc5-962b31aa-010f8e52", "Sequence", "6582b1c0"),  # one instance
    ],
)  # fmt: skip
def test_ordered_slices_match_orthanc(client, series, kind, order):
    answer = get(client, f"/series/{series}/ordered-slices")
    assert answer["Type"] == kind
    assert [i[:8] for i, first, count in answer["SlicesShort"]] == order.split()
    assert all((first, count) == (0, 1) for _, first, count in answer["SlicesShort"])
    ids = [i for i, _, _ in answer["SlicesShort"]]
    assert answer["Dicom"] == [f"/instances/{i}/file" for i in ids]
    assert answer["Slices"] == [f"/instances/{i}/frames/0" for i in ids]


def test_multiframe_instances_give_one_slice_per_frame(client):
    answer = get(client, f"/series/{series_id(MULTIFRAME)}/ordered-slices")
    ids = [instance_id(MULTIFRAME, f"{MULTIFRAME}.{n}") for n in (1, 2, 3)]
    assert answer == {
        "Dicom": [f"/instances/{i}/file" for i in ids],
        "Slices": [f"/instances/{ids[0]}/frames/0"]
        + [f"/instances/{ids[1]}/frames/{f}" for f in range(2)]
        + [f"/instances/{ids[2]}/frames/{f}" for f in range(4)],
        "SlicesShort": [[ids[0], 0, 1], [ids[1], 0, 2], [ids[2], 0, 4]],
        "Type": "Sequence",
    }


def test_positions_along_the_normal_beat_instance_numbers(client):
    answer = get(client, f"/series/{series_id(GEOMETRY)}/ordered-slices")
    assert answer["Type"] == "Volume"
    # the normal of rows (1,0,0) and columns (0,-1,0) points to -z: z = 5, 3, 1 are instances 1, 3, 2
    expected = [instance_id(GEOMETRY, f"{GEOMETRY}.{n}") for n in (1, 3, 2)]
    assert [i for i, _, _ in answer["SlicesShort"]] == expected


def test_a_series_without_geometry_nor_numbers_cannot_be_ordered(client):
    response = client.get(f"/series/{series_id(UNORDERED)}/ordered-slices")
    assert response.status_code == 500
    error = response.json()
    assert (error["OrthancStatus"], error["Message"]) == (2040, "Unable to order the slices of the series")
    assert client.get("/system").status_code == 200
