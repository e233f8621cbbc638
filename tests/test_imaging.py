"""Frames as pictures through the REST API, compared with Orthanc's answers.

The references are PNGs shipped with the samples (Formats/Brainix.png is Orthanc's image-uint16 of Brainix/Epi,
TransferSyntaxes/1.2.840.10008.1.2.4.50.png its preview) and answers of Orthanc 1.10.1 recorded in
tests/reference/imaging (record.py). Decoders of lossy JPEG differ by a unit here and there, hence a tolerance
on the mean absolute difference for those; everything else must be identical.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pyorthanc
import pytest
from PIL import Image

from isengard.testing import ServerProcess, assert_orthanc_error, sample

REFERENCE = Path(__file__).parent / "reference" / "imaging"
sys.path.insert(0, str(REFERENCE))
import synthetic  # noqa: E402

SAMPLES = {
    "brainix": "Brainix/Epi/IM-0001-0001.dcm",
    "phenix": "Phenix/IM-0001-0001.dcm",
    "issue44": "Issue44/Monochrome1-Jpeg.dcm",
    "sr": "HierarchicalAnonymization/StructuredReports/IM0",
    "cr-no-pixels": "HierarchicalAnonymization/2019-03-28/CR000000.dcm",
    "formats-jpeg": "Formats/Jpeg.dcm",
    "formats-jpeg-lossless": "Formats/JpegLossless.dcm",
    "formats-rle": "Formats/Rle.dcm",
    "formats-jp2k-ybr-ict": "Formats/jp2k91YBR-ICT.dcm",
}
SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]
UNKNOWN_ID = "0badc0de-00000000-00000000-00000000-00000000"


@pytest.fixture(scope="module")
def ids(module_server: ServerProcess) -> dict[str, str]:
    """Orthanc identifiers of every file the tests use, by short name (transfer syntaxes by UID)."""
    found: dict[str, str] = {}
    with module_server.client() as client:
        files = {name: sample(*path.split("/")).read_bytes() for name, path in SAMPLES.items()}
        files |= {uid: sample("TransferSyntaxes", f"{uid}.dcm").read_bytes() for uid in SYNTAXES}
        files |= {name: synthetic.build(name) for name in synthetic.NAMES}
        for name, data in files.items():
            answer = client.post("/instances", content=data)
            answer.raise_for_status()
            found[name] = answer.json()["ID"]
    return found


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[httpx.Client]:
    with module_server.client() as c:
        yield c


def picture(response: httpx.Response, content_type: str = "image/png") -> np.ndarray:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == content_type
    return np.array(Image.open(io.BytesIO(response.content)))


def reference(name: str) -> np.ndarray:
    return np.array(Image.open(REFERENCE / f"{name}.png"))


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# -- frames ---------------------------------------------------------------------------------------------------


def test_frame_lists(client: httpx.Client, ids: dict[str, str]) -> None:
    assert client.get(f"/instances/{ids['multiframe-rle']}/frames").json() == [0, 1, 2]
    assert client.get(f"/instances/{ids['brainix']}/frames").json() == [0]
    assert client.get(f"/instances/{ids['sr']}/frames").json() == [0]  # as Orthanc, even without pixel data
    children = client.get(f"/instances/{ids['brainix']}/frames/0").json()
    assert {"preview", "rendered", "image-uint16", "raw", "matlab", "numpy"} <= set(children)
    assert_orthanc_error(client.get(f"/instances/{UNKNOWN_ID}/frames"), 404, "Unknown resource")


@pytest.mark.parametrize("name", ["multiframe-raw", "multiframe-rle"])
def test_multiframe_values_of_each_frame(client: httpx.Client, ids: dict[str, str], name: str) -> None:
    for k in range(synthetic.FRAMES):
        values = picture(client.get(f"/instances/{ids[name]}/frames/{k}/image-uint16"))
        assert values.dtype == np.uint16
        assert np.array_equal(values, synthetic.frame_values(k))
    assert np.array_equal(picture(client.get(f"/instances/{ids[name]}/image-uint16")), synthetic.frame_values(0))


def test_multiframe_jpeg_frames(client: httpx.Client, ids: dict[str, str]) -> None:
    for k in range(synthetic.FRAMES):
        values = picture(client.get(f"/instances/{ids['multiframe-jpeg']}/frames/{k}/image-uint8"))
        assert mean_difference(values, synthetic.gray8(k)) < 2.0  # JPEG quality 95
    single = picture(client.get(f"/instances/{ids['fragmented-jpeg']}/image-uint8"))
    assert mean_difference(single, picture(client.get(f"/instances/{ids['multiframe-jpeg']}/image-uint8"))) == 0


def test_frame_out_of_range(client: httpx.Client, ids: dict[str, str]) -> None:
    for route in ("preview", "rendered", "image-uint16", "numpy", "matlab"):
        assert_orthanc_error(client.get(f"/instances/{ids['multiframe-rle']}/frames/3/{route}"), 404)
    assert_orthanc_error(client.get(f"/instances/{ids['brainix']}/frames/1/preview"), 404)
    body = assert_orthanc_error(client.get(f"/instances/{ids['multiframe-raw']}/frames/3/raw"), 400)
    assert body["OrthancError"] == "Parameter out of range"
    assert_orthanc_error(client.get(f"/instances/{ids['brainix']}/frames/x/preview"), 404)


def test_unknown_instance(client: httpx.Client) -> None:
    for route in ("preview", "rendered", "frames/0/image-uint8", "frames/0/raw", "numpy", "matlab"):
        assert_orthanc_error(client.get(f"/instances/{UNKNOWN_ID}/{route}"), 404, "Unknown resource")


# -- against Orthanc's pictures -------------------------------------------------------------------------------


def test_uint16_matches_the_brainix_reference(client: httpx.Client, ids: dict[str, str]) -> None:
    truth = np.array(Image.open(sample("Formats", "Brainix.png")))
    for name in ("brainix", "formats-jpeg", "formats-jpeg-lossless", "formats-rle"):  # the same image, lossless
        assert np.array_equal(picture(client.get(f"/instances/{ids[name]}/image-uint16")), truth), name


@pytest.mark.parametrize(
    ("recording", "name", "route"),
    [
        ("brainix-preview", "brainix", "preview"),
        ("brainix-rendered", "brainix", "rendered"),
        ("signed-ct-rendered-w160-smooth", "1.2.840.10008.1.2.4.70", "rendered?width=160&smooth=1"),
        ("phenix-rendered-lung-w128", "phenix", "rendered?window-center=-600&window-width=1600&width=128"),
        ("slope-rendered-h128", "1.2.840.10008.1.2.4.57", "rendered?height=128"),
        ("palette-preview", "palette", "preview"),
        ("signed-rescale-frame1-rendered", "signed-rescale", "frames/1/rendered"),
        ("monochrome1-12bit-rendered", "monochrome1-12bit", "rendered"),
        ("monochrome1-12bit-preview", "monochrome1-12bit", "preview"),
    ],
)
def test_identical_to_orthanc(client: httpx.Client, ids: dict[str, str], recording: str, name: str, route: str) -> None:
    assert np.array_equal(picture(client.get(f"/instances/{ids[name]}/{route}")), reference(recording))


def test_jpeg_color_preview_close_to_reference(client: httpx.Client, ids: dict[str, str]) -> None:
    mine = picture(client.get(f"/instances/{ids['1.2.840.10008.1.2.4.50']}/preview"))
    truth = np.array(Image.open(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.50.png")).convert("RGB"))
    assert mine.shape == (480, 640, 3)
    assert mean_difference(mine, truth) < 0.2


def test_monochrome1_is_inverted(client: httpx.Client, ids: dict[str, str]) -> None:
    base = f"/instances/{ids['issue44']}"
    rendered = picture(client.get(f"{base}/rendered?width=200"))
    assert rendered.shape == (243, 200)
    assert mean_difference(rendered, reference("monochrome1-jpeg-rendered-w200")) < 0.2
    stored = picture(client.get(f"{base}/image-uint8"))  # not inverted: the stored values
    preview = picture(client.get(f"{base}/preview"))
    stretched = np.floor(stored.astype(np.float64) * 255 / stored.max() + 0.5)
    assert mean_difference(preview, 255 - stretched) < 0.1
    assert preview[0, 0] < 20 < stored[0, 0]  # a bright corner stored, dark once inverted


def test_signed_ct(client: httpx.Client, ids: dict[str, str]) -> None:
    base = f"/instances/{ids['1.2.840.10008.1.2.4.70']}"
    stored = pydicom.dcmread(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.70.dcm")).pixel_array
    assert stored.min() < 0
    int16 = picture(client.get(f"{base}/image-int16")).view(np.int16)  # two's complement in a 16-bit PNG
    assert np.array_equal(int16, stored)
    assert np.array_equal(picture(client.get(f"{base}/image-uint16")), np.clip(stored, 0, None))
    preview = picture(client.get(f"{base}/preview"))
    assert preview[stored == stored.min()].max() == 0 and preview[stored == stored.max()].min() == 255


def test_signed_multiframe_rendered_with_rescale(client: httpx.Client, ids: dict[str, str]) -> None:
    rendered = picture(client.get(f"/instances/{ids['signed-rescale']}/frames/0/rendered"))
    modality = synthetic.signed_values(0).astype(np.float64) * 2 - 100  # window 0 / 400 from the tags
    assert np.array_equal(rendered, np.floor(np.clip((modality + 200) * 255 / 400, 0, 255)))


# -- decoding every transfer syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize("uid", SYNTAXES)
def test_every_transfer_syntax_decodes(client: httpx.Client, ids: dict[str, str], uid: str) -> None:
    ds = pydicom.dcmread(sample("TransferSyntaxes", f"{uid}.dcm"), stop_before_pixels=True, force=True)
    preview = picture(client.get(f"/instances/{ids[uid]}/preview"))
    assert preview.shape[:2] == (ds.Rows, ds.Columns) and preview.dtype == np.uint8
    if ds.SamplesPerPixel == 1:
        assert (preview.min(), preview.max()) == (0, 255)  # stretched
    else:
        rgb = pydicom.dcmread(sample("TransferSyntaxes", f"{uid}.dcm")).pixel_array
        assert mean_difference(preview, rgb) < 0.5


def test_jpeg2000_lossless_equals_rle(client: httpx.Client, ids: dict[str, str]) -> None:
    j2k = picture(client.get(f"/instances/{ids['1.2.840.10008.1.2.4.90']}/image-int16"))
    rle = picture(client.get(f"/instances/{ids['1.2.840.10008.1.2.5']}/image-int16"))
    assert np.array_equal(j2k, rle)


def test_color_frames(client: httpx.Client, ids: dict[str, str]) -> None:
    ybr = picture(client.get(f"/instances/{ids['ybr-full']}/preview"))  # uncompressed YBR_FULL: Orthanc 1.10 fails
    assert mean_difference(ybr, synthetic.rgb_values()) < 1.0
    jp2k = picture(client.get(f"/instances/{ids['formats-jp2k-ybr-ict']}/rendered?width=166"))
    assert jp2k.shape == (97, 166, 3)
    body = assert_orthanc_error(client.get(f"/instances/{ids['ybr-full']}/image-uint8"), 415)
    assert body["OrthancError"] == "Incompatible format of the images"


def test_without_pixel_data(client: httpx.Client, ids: dict[str, str]) -> None:
    for name in ("sr", "cr-no-pixels"):
        for route in ("preview", "rendered", "frames/0/image-uint16", "numpy"):
            assert_orthanc_error(client.get(f"/instances/{ids[name]}/{route}"), 415)
        body = assert_orthanc_error(client.get(f"/instances/{ids[name]}/frames/0/raw"), 400, "Bad file format")
        assert "raw frame" in body["Details"]


def test_compressed_storage(isengard: Callable[..., ServerProcess]) -> None:
    compressed = isengard({"StorageCompression": True})
    [stored] = compressed.upload(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.70.dcm"))
    assert compressed.get(f"/instances/{stored['ID']}/attachments/dicom/is-compressed").text.strip() == "1"
    route = f"/instances/{stored['ID']}/rendered?width=160&smooth=1"
    assert np.array_equal(picture(compressed.get(route)), reference("signed-ct-rendered-w160-smooth"))


def test_placeholder_instead_of_415_on_request(client: httpx.Client, ids: dict[str, str]) -> None:
    placeholder = picture(client.get(f"/instances/{ids['sr']}/preview?returnUnsupportedImage"))
    assert placeholder.shape == (128, 128)
    assert_orthanc_error(client.get(f"/instances/{ids['brainix']}/frames/1/preview?returnUnsupportedImage"), 404)


def test_pyorthanc_client(module_server: ServerProcess, ids: dict[str, str]) -> None:
    orthanc = pyorthanc.Orthanc(module_server.url)
    assert orthanc.get_instances_id_frames(ids["multiframe-raw"]) == [0, 1, 2]
    png = orthanc.get_instances_id_frames_frame_rendered(1, ids["multiframe-raw"], params={"width": 30})
    assert np.array(Image.open(io.BytesIO(png))).shape == (20, 30)
    jpeg = orthanc.get_instances_id_preview(ids["phenix"], headers={"Accept": "image/jpeg"})
    assert jpeg.startswith(b"\xff\xd8")


# -- formats and arguments ------------------------------------------------------------------------------------


def test_jpeg_on_request(client: httpx.Client, ids: dict[str, str]) -> None:
    url = f"/instances/{ids['brainix']}/preview"
    png = picture(client.get(url))
    jpeg = picture(client.get(url, headers={"Accept": "image/jpeg"}), "image/jpeg")
    assert mean_difference(jpeg, png) < 1.0
    small = client.get(url + "?quality=10", headers={"Accept": "image/jpeg"})
    large = client.get(url + "?quality=100", headers={"Accept": "image/jpeg"})
    assert len(small.content) < len(large.content)
    # Orthanc's negotiation: the most specific range wins over q, then the first listed; */* means PNG
    assert client.get(url, headers={"Accept": "image/*;q=0.9, image/jpeg;q=0.8"}).headers["content-type"] == (
        "image/jpeg"
    )
    assert client.get(url, headers={"Accept": "image/webp, */*"}).headers["content-type"] == "image/png"
    for quality in ("0", "101", "x"):
        assert_orthanc_error(client.get(url + f"?quality={quality}"), 400, "Parameter out of range")


def test_not_acceptable(client: httpx.Client, ids: dict[str, str]) -> None:
    body = assert_orthanc_error(
        client.get(f"/instances/{ids['brainix']}/preview", headers={"Accept": "text/html"}), 406
    )
    assert body["OrthancStatus"] == 34
    sixteen = client.get(f"/instances/{ids['brainix']}/image-uint16", headers={"Accept": "image/jpeg"})
    assert_orthanc_error(sixteen, 406)


def test_pam(client: httpx.Client, ids: dict[str, str]) -> None:
    answer = client.get(
        f"/instances/{ids['1.2.840.10008.1.2.4.70']}/image-int16", headers={"Accept": "image/x-portable-arbitrarymap"}
    )
    assert answer.headers["content-type"] == "image/x-portable-arbitrarymap"
    header = b"P7\nWIDTH 512\nHEIGHT 400\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n"
    assert answer.content.startswith(header)
    values = np.frombuffer(answer.content[len(header) :], dtype=">i2").reshape(400, 512)
    stored = pydicom.dcmread(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.70.dcm")).pixel_array
    assert np.array_equal(values, stored)


def test_rendered_arguments(client: httpx.Client, ids: dict[str, str]) -> None:
    base = f"/instances/{ids['multiframe-raw']}/frames/2/rendered"
    values = synthetic.frame_values(2).astype(np.float64)
    windowed = picture(client.get(base + "?window-center=2300&window-width=200"))
    assert np.array_equal(windowed, np.floor(np.clip((values - 2200) * 255 / 200, 0, 255)))
    fitted = picture(client.get(base + "?window-center=2300&window-width=200&width=30&height=30"))
    assert fitted.shape == (20, 30)  # the 40x60 frame fits the box, same aspect ratio
    assert np.array_equal(fitted, windowed[1::2, 1::2])  # nearest neighbour at the centres of the target pixels
    assert picture(client.get(base + "?width=120")).shape == (80, 120)  # upscaled too
    for bad in ("window-center=x", "window-width=nan", "width=-1", "height=big"):
        assert_orthanc_error(client.get(f"{base}?{bad}"), 400)


# -- raw frames and arrays ------------------------------------------------------------------------------------


def test_raw_frames(client: httpx.Client, ids: dict[str, str]) -> None:
    raw = client.get(f"/instances/{ids['multiframe-raw']}/frames/1/raw")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == synthetic.frame_values(1).tobytes()
    big_endian = client.get(f"/instances/{ids['big-endian']}/frames/0/raw")
    assert big_endian.content == synthetic.frame_values(1).astype("<u2").tobytes()  # little-endian, as Orthanc
    jpeg = client.get(f"/instances/{ids['fragmented-jpeg']}/frames/0/raw")  # two fragments joined
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content.startswith(b"\xff\xd8")
    assert np.array(Image.open(io.BytesIO(jpeg.content))).shape == (synthetic.ROWS, synthetic.COLUMNS)
    j2k = client.get(f"/instances/{ids['1.2.840.10008.1.2.4.90']}/frames/0/raw")
    assert j2k.headers["content-type"] == "image/jp2" and j2k.content.startswith(b"\xff\x4f\xff\x51")
    rle = client.get(f"/instances/{ids['multiframe-rle']}/frames/2/raw.gz")
    assert rle.headers["content-type"] == "application/gzip"


def test_series_numpy_is_orthancs_volume(isengard) -> None:
    """The slices in /ordered-slices order, stacked: the same arrays as Orthanc 1.10.1 answers for Brainix/Flair."""
    server = isengard()
    server.upload(*sorted(sample("Brainix", "Flair").iterdir()))
    with server.client() as client:
        (series,) = client.get("/series").json()
        volume = np.load(io.BytesIO(client.get(f"/series/{series}/numpy").content))
        stored = np.load(io.BytesIO(client.get(f"/series/{series}/numpy?rescale=0&compress").content))["arr_0"]
        first = client.get(f"/series/{series}/ordered-slices").json()["Dicom"][0].removesuffix("/file")
        assert np.array_equal(volume[0], np.load(io.BytesIO(client.get(f"{first}/numpy").content))[0])
        assert_orthanc_error(client.get("/series/nope/numpy"), 404)
    assert volume.shape == stored.shape == (22, 288, 288, 1)
    assert (volume.dtype, stored.dtype) == (np.float32, np.uint16)
    # SHA-256 of the arrays Orthanc 1.10.1 answers for /series/{id}/numpy, without and with ?rescale=0.
    assert hashlib.sha256(volume.tobytes()).hexdigest().startswith("2f2f54cdad5295829bc025688b0b3a3a")
    assert hashlib.sha256(stored.tobytes()).hexdigest().startswith("02754b825c95ea0abf88ead9bd2952a7")


def test_numpy_and_matlab(client: httpx.Client, ids: dict[str, str]) -> None:
    base = f"/instances/{ids['signed-rescale']}"
    frame = np.load(io.BytesIO(client.get(f"{base}/frames/1/numpy").content))
    assert frame.dtype == np.float32 and frame.shape == (synthetic.ROWS, synthetic.COLUMNS, 1)
    assert np.array_equal(frame[:, :, 0], synthetic.signed_values(1) * 2.0 - 100)
    stored = np.load(io.BytesIO(client.get(f"{base}/frames/1/numpy?rescale=0").content))
    assert stored.dtype == np.int16 and np.array_equal(stored[:, :, 0], synthetic.signed_values(1))
    every = np.load(io.BytesIO(client.get(f"{base}/numpy?compress").content))["arr_0"]
    assert every.shape == (2, synthetic.ROWS, synthetic.COLUMNS, 1)
    text = client.get(f"/instances/{ids['multiframe-raw']}/frames/1/matlab").text
    assert text.startswith("double([ 1000 1010 1020 ") and "1590 ; 1001 1011 " in text and text.endswith(" ])")
