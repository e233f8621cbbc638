"""WADO-RS and WADO-URI with the real dicomweb-client (and httpx for headers and errors)."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from isengard.testing import ServerProcess, assert_orthanc_error, sample

JPEG_FILE = ("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm")


def _ids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def multiframe_ids(multiframe: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(multiframe), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_retrieve_study_streams_every_instance(client: DICOMwebClient) -> None:
    files = sorted(sample("Brainix").rglob("*.dcm"))
    study, _, _ = _ids(files[0])
    datasets = client.retrieve_study(study)
    expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert {str(ds.SOPInstanceUID) for ds in datasets} == expected
    assert len(datasets) == len(files)


def test_retrieve_series_and_instance(client: DICOMwebClient) -> None:
    path = sorted(sample("Comunix", "Pet").glob("*.dcm"))[0]
    study, series, instance = _ids(path)
    assert len(client.retrieve_series(study, series)) == 2
    ds = client.retrieve_instance(study, series, instance)
    original = pydicom.dcmread(path)
    assert ds.SOPInstanceUID == instance
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_explicit_little_endian_is_the_default_and_star_keeps_the_stored_syntax(
    client: DICOMwebClient, loaded: ServerProcess
) -> None:
    path = sample(*JPEG_FILE)
    study, series, instance = _ids(path)
    explicit = client.retrieve_instance(
        study, series, instance, media_types=(("application/dicom", ExplicitVRLittleEndian),)
    )
    assert explicit.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    stored = client.retrieve_instance(study, series, instance)  # dicomweb-client asks transfer-syntax=* by default
    assert stored.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert stored.PixelData == pydicom.dcmread(path).PixelData
    url = f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{instance}"
    for accept in (None, 'multipart/related; type="application/dicom"', "*/*"):
        r = httpx.get(url, headers={"Accept": accept} if accept else {})
        assert b"Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n" in r.content[:200], accept


def test_parts_name_their_transfer_syntax(loaded: ServerProcess) -> None:
    study, series, instance = _ids(sample(*JPEG_FILE))
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    r = httpx.get(
        f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{instance}", headers={"Accept": accept}
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    assert b"Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50\r\n" in r.content[:200]


def test_series_metadata_is_the_headers_with_bulk_data_uris(client: DICOMwebClient) -> None:
    files = sorted(sample("Brainix", "Flair").glob("*.dcm"))
    study, series, _ = _ids(files[0])
    metadata = client.retrieve_series_metadata(study, series)
    assert len(metadata) == len(files)
    first = pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda uri: b"")
    original = pydicom.dcmread(files[0], stop_before_pixels=True)
    by_uid = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert {m["00080018"]["Value"][0] for m in metadata} == by_uid
    assert first.StudyInstanceUID == original.StudyInstanceUID
    assert not any(key.startswith("0002") for key in metadata[0])
    pixel = metadata[0]["7FE00010"]
    assert "Value" not in pixel and "InlineBinary" not in pixel
    assert pixel["BulkDataURI"].endswith(f"/instances/{metadata[0]['00080018']['Value'][0]}/bulk/7fe00010")
    assert metadata[0]["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "BRAINIX"}]}


def test_series_metadata_streams_gzip_encoded(loaded: ServerProcess) -> None:
    """HttpCompressionEnabled (default true): the streamed metadata is compressed as it streams."""
    study, series, _ = _ids(sorted(sample("Brainix", "Flair").glob("*.dcm"))[0])
    path = f"/dicom-web/studies/{study}/series/{series}/metadata"
    with httpx.Client(base_url=loaded.url, timeout=60) as client:
        with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as zipped:
            wire = b"".join(zipped.iter_raw())
        plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert json.loads(gzip.decompress(wire)) == plain.json()
    assert len(wire) * 10 < len(plain.content)


def test_bulk_data_uri_answers_the_pixel_data(client: DICOMwebClient) -> None:
    path = sorted(sample("Brainix", "Flair").glob("*.dcm"))[0]
    study, series, instance = _ids(path)
    metadata = client.retrieve_instance_metadata(study, series, instance)
    uri = metadata["7FE00010"]["BulkDataURI"]
    # dicomweb-client sends "Host: 127.0.0.1" without the port, and URIs are built from the Host header
    assert uri.startswith("http://127.0.0.1/dicom-web/studies/")
    (pixels,) = client.retrieve_bulkdata(uri.replace("http://127.0.0.1", client.base_url.removesuffix("/dicom-web")))
    assert pixels == pydicom.dcmread(path).PixelData


def test_study_metadata_in_main_dicom_tags_mode(isengard: object, multiframe: bytes) -> None:
    server = isengard({"DicomWeb": {"StudiesMetadata": "MainDicomTags"}})  # type: ignore[operator]
    with server.client() as c:
        assert c.post("/instances", content=multiframe).status_code == 200
    ds = pydicom.dcmread(io.BytesIO(multiframe), stop_before_pixels=True)
    (item,) = DICOMwebClient(url=f"{server.url}/dicom-web").retrieve_study_metadata(str(ds.StudyInstanceUID))
    assert item["00100010"]["Value"] == [{"Alphabetic": "MULTI^FRAME"}]
    assert item["00280008"] == {"vr": "IS", "Value": [3]}
    assert "00280010" not in item  # Rows is no main tag: the files were not read


def test_frames_are_uncompressed_bytes(client: DICOMwebClient, multiframe: bytes, multiframe_ids: tuple) -> None:
    pixels = pydicom.dcmread(io.BytesIO(multiframe)).pixel_array
    frames = client.retrieve_instance_frames(*multiframe_ids, frame_numbers=[3, 1])
    assert frames == [pixels[2].tobytes(), pixels[0].tobytes()]


def test_single_native_frames_are_the_stored_frames(
    loaded: ServerProcess, sample_files: list[Path], multiframe_ids: tuple
) -> None:
    """A single frame of native pixel data is read alone from its file (Store.read_native_frame): the bytes of
    /instances/{id}/frames/{n}/raw, which cuts it from the whole file parsed by pydicom, in each native syntax."""
    cases = [(multiframe_ids, number) for number in (1, 2, 3)]
    for path in sample_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if not UID(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)).is_encapsulated:
            cases.append(((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)), 1))
    syntaxes = set()
    with loaded.client() as c:
        for (study, series, instance), number in cases:
            (found,) = c.post("/tools/lookup", content=instance).json()
            raw = c.get(f"/instances/{found['ID']}/frames/{number - 1}/raw")
            url = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{number}"
            frame = c.get(url, headers={"Accept": "application/octet-stream"})
            assert frame.status_code == raw.status_code, url
            if raw.status_code == 200:
                assert frame.content == raw.content, url
                syntaxes.add(c.get(f"/instances/{found['ID']}/metadata/TransferSyntax").text)
    assert syntaxes >= {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}


def test_big_endian_frames_are_swapped(isengard: Callable[..., ServerProcess], multiframe: bytes) -> None:
    """16-bit samples stored big endian come little endian (as Orthanc answers), read alone from the file too."""
    ds = pydicom.dcmread(io.BytesIO(multiframe))
    values = (np.arange(2 * ds.Rows * ds.Columns, dtype=np.uint16) * 7 + 1).reshape(2, ds.Rows, ds.Columns)
    ds.NumberOfFrames, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 16, 16, 15
    ds.PixelData, ds["PixelData"].VR = values.astype(">u2").tobytes(), "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    server = isengard()
    with server.client() as c:
        found = c.post("/instances", content=out.getvalue()).json()
        base = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        for number in (1, 2):
            frame = c.get(f"{base}/frames/{number}", headers={"Accept": "application/octet-stream"})
            assert frame.content == values[number - 1].astype("<u2").tobytes()
            assert frame.content == c.get(f"/instances/{found['ID']}/frames/{number - 1}/raw").content


def test_compressed_frames_are_decompressed_unless_star(client: DICOMwebClient) -> None:
    path = sample(*JPEG_FILE)
    original = pydicom.dcmread(path)
    (raw,) = client.retrieve_instance_frames(*_ids(path), frame_numbers=[1])
    assert len(raw) == original.Rows * original.Columns * original.SamplesPerPixel
    (jpeg,) = client.retrieve_instance_frames(
        *_ids(path), frame_numbers=[1], media_types=(("application/octet-stream", "*"),)
    )
    assert jpeg[:2] == b"\xff\xd8"


def test_frames_in_their_stored_compressed_media_type(client: DICOMwebClient, loaded: ServerProcess) -> None:
    """wsidicom's tile requests: image/jpeg with JPEG Baseline fits a file stored so; another syntax is a 406."""
    path = sample(*JPEG_FILE)
    (jpeg,) = client.retrieve_instance_frames(
        *_ids(path), frame_numbers=[1], media_types=(("image/jpeg", JPEGBaseline8Bit),)
    )
    assert jpeg[:2] == b"\xff\xd8"
    study, series, instance = _ids(path)
    url = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/1"
    with loaded.client() as c:
        r = c.get(url, headers={"Accept": 'multipart/related; type="image/jpeg"'})
        assert r.headers["Content-Type"].startswith('multipart/related; type="image/jpeg"') and _pictures(r) == [jpeg]
        accept = 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.90'
        assert_orthanc_error(c.get(url, headers={"Accept": accept}), 406)


def test_frame_out_of_range_is_400(loaded: ServerProcess, multiframe_ids: tuple) -> None:
    study, series, instance = multiframe_ids
    base = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}"
    with loaded.client() as c:
        assert_orthanc_error(c.get(f"{base}/frames/4"), 400)
        assert_orthanc_error(c.get(f"{base}/frames/0"), 400)
        assert_orthanc_error(c.get(f"{base}/frames/a"), 400)


def test_rendered_and_thumbnail(client: DICOMwebClient, loaded: ServerProcess, multiframe_ids: tuple) -> None:
    study, series, instance = _ids(sorted(sample("Brainix", "Flair").glob("*.dcm"))[0])
    jpeg = client.retrieve_instance_rendered(study, series, instance)
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    png = client.retrieve_instance_rendered(study, series, instance, media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    base = f"{loaded.url}/dicom-web/studies/{study}"
    r = httpx.get(f"{base}/series/{series}/instances/{instance}/rendered", params={"viewport": "64,64"})
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    r = httpx.get(f"{base}/thumbnail")
    assert r.headers["Content-Type"] == "image/jpeg" and max(Image.open(io.BytesIO(r.content)).size) == 128
    first = httpx.get(f"{base}/series/{series}/instances/{instance}/frames/1/rendered")  # no redirect: answered
    assert first.status_code == 200 and first.content == jpeg
    study, series, instance = multiframe_ids
    frame = client.retrieve_instance_frames_rendered(study, series, instance, frame_numbers=[2])
    picture = np.asarray(Image.open(io.BytesIO(frame)).convert("L"))
    assert picture.shape == (4, 5)


def _pictures(response: httpx.Response) -> list[bytes]:
    """The parts of a multipart/related answer of pictures."""
    boundary = response.headers["Content-Type"].split("boundary=")[1].encode()
    return [part.split(b"\r\n\r\n", 1)[1][:-2] for part in response.content.split(b"--" + boundary)[1:-1]]


def _instances_by_index(c: httpx.Client, series: str) -> list[dict]:
    """The instances of a series (Orthanc's JSON), in IndexInSeries order."""
    (found,) = c.post("/tools/lookup", content=series).json()
    instances = c.get(f"/series/{found['ID']}/instances").json()
    return sorted(instances, key=lambda i: i["IndexInSeries"])


def test_rendered_series_and_study_stream_every_frame_in_order(loaded: ServerProcess, multiframe_ids: tuple) -> None:
    study, series, _ = _ids(sorted(sample("Brainix", "Flair").glob("*.dcm"))[0])
    base = f"/dicom-web/studies/{study}"
    with loaded.client() as c:
        ordered = _instances_by_index(c, series)
        r = c.get(f"{base}/series/{series}/rendered", params={"viewport": "32,32"})
        assert r.status_code == 200 and r.headers["Content-Type"].startswith('multipart/related; type="image/jpeg"')
        pictures = _pictures(r)
        assert len(pictures) == len(ordered) == 22
        for position in (0, 21):
            uid = ordered[position]["MainDicomTags"]["SOPInstanceUID"]
            single = c.get(f"{base}/series/{series}/instances/{uid}/rendered", params={"viewport": "32,32"})
            assert pictures[position] == single.content
        png = c.get(f"{base}/rendered", headers={"Accept": 'multipart/related; type="image/png"'})
        assert png.headers["Content-Type"].startswith('multipart/related; type="image/png"')
        assert len(_pictures(png)) == 44 and all(Image.open(io.BytesIO(p)).format == "PNG" for p in _pictures(png))
        # every frame of a multi-frame instance
        study, series, instance = multiframe_ids
        frames = _pictures(c.get(f"/dicom-web/studies/{study}/rendered", headers={"Accept": "*/*"}))
        path = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames"
        assert frames == [c.get(f"{path}/{n}/rendered").content for n in (1, 2, 3)]


def test_rendered_series_as_one_picture_is_orthancs(loaded: ServerProcess) -> None:
    """Orthanc's plugin 1.7: a single image/png (or jpeg) of the instance with the smallest Orthanc id."""
    study, series, _ = _ids(sorted(sample("Brainix", "Flair").glob("*.dcm"))[0])
    base = f"/dicom-web/studies/{study}"
    with loaded.client() as c:
        first = min(_instances_by_index(c, series), key=lambda i: i["ID"])["MainDicomTags"]["SOPInstanceUID"]
        expected = c.get(f"{base}/series/{series}/instances/{first}/rendered", headers={"Accept": "image/png"})
        r = c.get(f"{base}/series/{series}/rendered", headers={"Accept": "image/png"})
        assert r.headers["Content-Type"] == "image/png" and r.content == expected.content
        assert c.get(f"{base}/rendered", headers={"Accept": "image/jpeg"}).headers["Content-Type"] == "image/jpeg"
        assert_orthanc_error(c.get(f"{base}/rendered", headers={"Accept": "application/dicom"}), 406)
        assert_orthanc_error(c.get("/dicom-web/studies/1.2.3/rendered"), 404)


def test_thumbnail_of_a_series_is_its_middle_instance(loaded: ServerProcess) -> None:
    study, series, _ = _ids(sorted(sample("Brainix", "Flair").glob("*.dcm"))[0])
    base = f"/dicom-web/studies/{study}/series/{series}"
    with loaded.client() as c:
        middle = _instances_by_index(c, series)[11]["MainDicomTags"]["SOPInstanceUID"]
        expected = c.get(f"{base}/instances/{middle}/thumbnail").content
        assert c.get(f"{base}/thumbnail").content == expected
        assert max(Image.open(io.BytesIO(expected)).size) == 128


def test_unknown_uids_are_404(loaded: ServerProcess) -> None:
    study, series, instance = _ids(sample(*JPEG_FILE))
    with loaded.client() as c:
        assert_orthanc_error(c.get("/dicom-web/studies/1.2.3"), 404)
        assert_orthanc_error(c.get(f"/dicom-web/studies/{study}/series/1.2.3/metadata"), 404)
        assert_orthanc_error(c.get(f"/dicom-web/studies/1.2.3/series/{series}/instances/{instance}"), 404)


def test_unacceptable_media_types_are_406(loaded: ServerProcess) -> None:
    study, series, instance = _ids(sample(*JPEG_FILE))
    base = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}"
    with loaded.client() as c:
        assert_orthanc_error(c.get(base, headers={"Accept": "image/jpeg"}), 406)
        assert_orthanc_error(
            c.get(base, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3'}), 406
        )
        assert_orthanc_error(c.get(f"{base}/metadata", headers={"Accept": "application/pdf"}), 406)
        assert_orthanc_error(c.get(f"{base}/frames/1", headers={"Accept": "application/dicom"}), 406)
        assert_orthanc_error(c.get(f"{base}/rendered", headers={"Accept": "image/gif"}), 406)


def test_wado_uri(loaded: ServerProcess) -> None:
    path = sample(*JPEG_FILE)
    study, series, instance = _ids(path)
    params = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": instance}
    with loaded.client() as c:
        picture = c.get("/wado", params=params)
        assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/jpeg"
        png = c.get("/wado", params={**params, "contentType": "image/png", "rows": "32", "columns": "32"})
        assert Image.open(io.BytesIO(png.content)).size == (32, 24)  # fit in rows x columns, aspect kept
        dicom = c.get("/wado", params={**params, "contentType": "application/dicom"})
        assert dicom.content == path.read_bytes()
        converted = c.get(
            "/wado", params={**params, "contentType": "application/dicom", "transferSyntax": ExplicitVRLittleEndian}
        )
        assert pydicom.dcmread(io.BytesIO(converted.content)).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert_orthanc_error(c.get("/wado", params={**params, "requestType": "X"}), 400)
        assert_orthanc_error(c.get("/wado", params={**params, "studyUID": "1.2.3"}), 404)
