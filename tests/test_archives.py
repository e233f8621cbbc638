"""ZIP archives and DICOM media: names and order compared with a scratch Orthanc fed the same samples, files
byte-identical to the stored ones, DICOMDIR read back by dcmtk and pydicom, jobs, transcoding, errors."""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.fileset import FileSet

from isengard.testing import ServerProcess, assert_orthanc_error, reference_orthanc, require_tool, sample

JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
SAMPLES = [
    *sorted(sample("Brainix").rglob("*.dcm")),
    *sorted(sample("Knee").rglob("*.dcm"))[:8],
    *sorted(sample("Comunix").rglob("*.dcm")),
    *sorted(sample("PatientWith2studies").glob("*.dcm")),
    sample("Phenix", "IM-0001-0001.dcm"),
    *sorted(sample("Beaufix").glob("*.dcm")),
    sample("Encodings", "Lena-latin1.dcm"),
    sample("Encodings", "Lena-shift-jis.dcm"),
    *sorted(sample("HierarchicalAnonymization", "2019-03-28").glob("*.dcm")),
    sample("HierarchicalAnonymization", "RTH", "RT.dcm"),
    sample("HierarchicalAnonymization", "StructuredReports", "IM631"),
]
#: Record types of files other than images, which Orthanc writes as IMAGE records (see docs/compatibility.md).
NON_IMAGE_RECORDS = {"PRESENTATION", "RT STRUCTURE SET", "SR DOCUMENT", "KEY OBJECT DOC", "ENCAP DOC"}


def _upload(url: str, auth: tuple[str, str] | None = None) -> None:
    with httpx.Client(base_url=url, auth=auth, timeout=60) as c:
        for path in SAMPLES:
            c.post("/instances", content=path.read_bytes()).raise_for_status()


@pytest.fixture(scope="module")
def server(module_server: ServerProcess) -> ServerProcess:
    _upload(module_server.url, module_server.auth)
    return module_server


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Debian's Orthanc 1.10.1 holding the same samples: the reference for names, order and records."""
    with reference_orthanc(tmp_path_factory.mktemp("orthanc")) as o:
        _upload(o.url)
        with httpx.Client(base_url=o.url, timeout=60) as client:
            yield client


def _zip(response: httpx.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


def _reference(orthanc: httpx.Client, path: str, body: Any = None) -> zipfile.ZipFile | None:
    """Orthanc's archive, or ``None`` where Orthanc fails to make it (its DICOMDIR writer refuses some files)."""
    response = orthanc.get(path) if body is None else orthanc.post(path, json=body)
    try:
        return zipfile.ZipFile(io.BytesIO(response.content))
    except zipfile.BadZipFile:
        return None


def _records(archive: zipfile.ZipFile) -> list[tuple[str, list[str], str]]:
    """(type, keys, referenced file) of each record of the DICOMDIR, in order."""
    dicomdir = pydicom.dcmread(io.BytesIO(archive.read("DICOMDIR")))
    return [
        (
            r.DirectoryRecordType,
            sorted(e.keyword for e in r if e.keyword != "SpecificCharacterSet"),
            "/".join(r.get("ReferencedFileID", [])),
        )
        for r in dicomdir.DirectoryRecordSequence
    ]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_archive_and_media_names_match_orthanc(server: ServerProcess, orthanc: httpx.Client) -> None:
    with server.client() as c:
        for collection in ("patients", "studies", "series"):
            ids = orthanc.get(f"/{collection}").json()
            assert sorted(c.get(f"/{collection}").json()) == sorted(ids)
            for public_id in ids:
                for kind in ("archive", "media"):
                    mine = _zip(c.get(f"/{collection}/{public_id}/{kind}"))
                    reference = _reference(orthanc, f"/{collection}/{public_id}/{kind}")
                    if reference is not None:
                        assert mine.namelist() == reference.namelist(), (collection, public_id, kind)


def test_dicomdir_records_match_orthanc(server: ServerProcess, orthanc: httpx.Client) -> None:
    with server.client() as c:
        for study in orthanc.get("/studies").json():
            for query in ("", "?extended"):
                mine = _records(_zip(c.get(f"/studies/{study}/media{query}")))
                found = _reference(orthanc, f"/studies/{study}/media{query}")
                if found is None:
                    continue
                reference = _records(found)
                assert len(mine) == len(reference)
                for ours, theirs in zip(mine, reference, strict=True):
                    if ours[0] in NON_IMAGE_RECORDS:  # a record of its own type, with that type's keys
                        assert theirs[0] == "IMAGE" and ours[2] == theirs[2]
                    else:  # Orthanc leaves out an empty PatientID, a key pydicom's FileSet needs
                        assert ours == theirs or (ours[0] == "PATIENT" and "PatientID" not in theirs[1])
                        assert ours[0] != "PATIENT" or "PatientID" in ours[1]


def test_every_file_is_the_stored_file(server: ServerProcess) -> None:
    with server.client() as c:
        for patient in c.get("/patients").json():
            instances = [i["ID"] for i in c.get(f"/patients/{patient}/instances").json()]
            stored = {_md5(c.get(f"/instances/{i}/file").content) for i in instances}
            for kind in ("archive", "media"):
                archive = _zip(c.get(f"/patients/{patient}/{kind}"))
                files = [n for n in archive.namelist() if n != "DICOMDIR"]
                assert len(files) == len(stored)
                assert {_md5(archive.read(n)) for n in files} == stored


def test_dicomdir_is_read_by_dcmtk_and_pydicom(server: ServerProcess, tmp_path: Path) -> None:
    dcmdump = require_tool("dcmdump")
    with server.client() as c:
        resources = c.get("/patients").json()
        archive = _zip(c.post("/tools/create-media-extended", json={"Resources": resources}))
    archive.extractall(tmp_path)
    dump = subprocess.run([dcmdump, str(tmp_path / "DICOMDIR")], capture_output=True, encoding="latin-1", check=False)
    assert dump.returncode == 0, dump.stderr
    assert not [line for line in (dump.stdout + dump.stderr).splitlines() if line.startswith(("E:", "W:"))]
    assert "MediaStorageDirectoryStorage" in dump.stdout
    fileset = FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))
    instances = list(fileset)
    assert len(instances) == len(archive.namelist()) - 1 == len(SAMPLES)
    for instance in instances:
        assert Path(instance.path).is_file()
        referenced = pydicom.dcmread(instance.path, stop_before_pixels=True)
        assert referenced.SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
    patients = fileset.find_values("PatientID")
    assert "5Yp0E" in patients
    assert all(len(part) <= 8 for name in archive.namelist() for part in name.split("/"))


def test_dicomdir_keeps_the_bytes_of_other_character_sets(server: ServerProcess) -> None:
    source = pydicom.dcmread(sample("Encodings", "Lena-shift-jis.dcm"), stop_before_pixels=True)
    with server.client() as c:
        [found] = [r for r in c.post("/tools/lookup", content=source.SOPInstanceUID).json() if r["Type"] == "Instance"]
        patient = c.get(f"/instances/{found['ID']}/patient").json()["ID"]
        dicomdir = pydicom.dcmread(io.BytesIO(_zip(c.get(f"/patients/{patient}/media")).read("DICOMDIR")))
    record = dicomdir.DirectoryRecordSequence[0]
    assert record.SpecificCharacterSet == source.SpecificCharacterSet
    assert record.get_item(0x00100010).value == source.get_item(0x00100010).value  # the very bytes
    assert str(record.PatientName) == str(source.PatientName)


def test_asynchronous_archive_is_a_job(server: ServerProcess) -> None:
    with server.client() as c:
        patient = c.get("/patients").json()[0]
        synchronous = _zip(c.get(f"/patients/{patient}/archive"))
        for kind, job_type in (("archive", "Archive"), ("media", "Media")):
            started = c.post(f"/patients/{patient}/{kind}", json={"Asynchronous": True, "Priority": 3}).json()
            job = _finished(c, started["ID"])
            assert job["Type"] == job_type and job["Priority"] == 3
            content = job["Content"]
            instances = [i["ID"] for i in c.get(f"/patients/{patient}/instances").json()]
            assert content["InstancesCount"] == len(instances)
            size = sum(c.get(f"/instances/{i}/attachments/dicom/size").json() for i in instances)
            assert content["UncompressedSize"] == str(size)
            assert content["UncompressedSizeMB"] == size // 2**20
            output = c.get(f"/jobs/{started['ID']}/archive")
            assert output.headers["content-disposition"] == 'filename="archive.zip"'
            assert content["ArchiveSize"] == str(len(output.content))
            archive = _zip(output)
            if kind == "archive":
                assert archive.namelist() == synchronous.namelist()
                assert [archive.read(n) for n in archive.namelist()] == [
                    synchronous.read(n) for n in archive.namelist()
                ]
            else:
                assert archive.namelist()[-1] == "DICOMDIR"


def _finished(c: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            assert job["State"] == "Success", job
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_unknown_resources_and_bad_bodies(server: ServerProcess) -> None:
    with server.client() as c:
        study = c.get("/studies").json()[0]
        assert_orthanc_error(c.get("/studies/nope/archive"), 404, "Unknown resource")
        assert_orthanc_error(c.get(f"/patients/{study}/media"), 404, "Unknown resource")
        assert_orthanc_error(c.post("/tools/create-archive", json={"Resources": [study, "nope"]}), 404)
        assert_orthanc_error(c.get(f"/tools/create-media?resources={study},nope"), 404)
        assert_orthanc_error(c.post("/tools/create-archive", json={}), 400, "Bad file format")
        assert_orthanc_error(c.post("/tools/create-archive", json={"Resources": study}), 400, "Bad file format")
        bad_syntax = c.post("/tools/create-archive", json={"Resources": [study], "Transcode": "nope"})
        assert_orthanc_error(bad_syntax, 400, "Parameter out of range")
        assert_orthanc_error(c.get(f"/studies/{study}/archive?transcode=1.2.3"), 400, "Parameter out of range")
        assert _zip(c.post("/tools/create-archive", json=[])).namelist() == []


def test_create_archive_mixes_levels_as_orthanc(server: ServerProcess, orthanc: httpx.Client) -> None:
    patients = orthanc.get("/patients").json()
    first, second, third = patients[0], patients[1], patients[2]
    series = orthanc.get(f"/patients/{second}/series").json()[0]["ID"]
    instance = orthanc.get(f"/patients/{third}/instances").json()[0]["ID"]
    inner_study = orthanc.get(f"/patients/{first}/studies").json()[0]["ID"]
    resources = [instance, first, series, inner_study, instance]
    with server.client() as c:
        for route in ("/tools/create-archive", "/tools/create-media"):
            mine = _zip(c.post(route, json={"Resources": resources}))
            reference = _reference(orthanc, route, {"Resources": resources})
            assert reference is not None and mine.namelist() == reference.namelist(), route
        # Orthanc 1.12's GET form, and a name of the client's choosing
        response = c.get(f"/tools/create-archive?resources={','.join(resources)}&filename=mine.zip")
        assert response.headers["content-disposition"] == 'filename="mine.zip"'
        posted = _zip(c.post("/tools/create-archive", json={"Resources": resources}))
        assert _zip(response).namelist() == posted.namelist()
        assert posted.namelist()[0].count("/") == 3


def test_transcoding_in_archive_and_media(server: ServerProcess) -> None:
    with server.client() as c:
        series = next(
            s["ID"]
            for s in c.get("/series?expand").json()
            if s["MainDicomTags"].get("SeriesDescription") == "sT2W/FLAIR"
        )
        response = c.get(f"/series/{series}/archive?transcode={JPEG_LOSSLESS}&filename=flair.zip")
        assert response.headers["content-disposition"] == 'filename="flair.zip"'
        archive = _zip(response)
        for name in archive.namelist():
            assert pydicom.dcmread(io.BytesIO(archive.read(name))).file_meta.TransferSyntaxUID == JPEG_LOSSLESS
        media = _zip(c.post(f"/series/{series}/media", json={"Transcode": JPEG_LOSSLESS, "Filename": "m.zip"}))
        dicomdir = pydicom.dcmread(io.BytesIO(media.read("DICOMDIR")))
        images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
        assert len(images) == len(archive.namelist())
        assert {r.ReferencedTransferSyntaxUIDInFile for r in images} == {JPEG_LOSSLESS}
        first = pydicom.dcmread(io.BytesIO(media.read("IMAGES/IM0")))
        assert first.file_meta.TransferSyntaxUID == JPEG_LOSSLESS
        assert first.pixel_array.shape == (first.Rows, first.Columns)
