"""The WSI tile server against Debian's Orthanc with orthanc-wsi 1.1 (libOrthancWSI), on the same series.

The series are made from samples/WSI by OrthancWSIDicomizer itself: JPEG tiles kept as stored (RGB, YCbCr,
grey), a pyramid re-encoded as JPEG, one as JPEG 2000, one uncompressed. Both servers get the same files;
pyramids must be equal, JPEG tiles byte-identical, decoded tiles equal pixel for pixel. Variants that
OrthancWSIDicomizer does not write (TILED_FULL, a sparse level with a hole) are made with pydicom.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from isengard.testing import (
    OrthancProcess,
    ServerProcess,
    assert_orthanc_error,
    reference_orthanc,
    require_tool,
    sample,
    unavailable,
)

WSI_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancWSI.so")

#: name -> (sample, OrthancWSIDicomizer options)
SLIDES: dict[str, tuple[str, list[str]]] = {
    "jpeg-ycbcr": ("LenaColorJpegYCbCr.tiff", []),
    "jpeg-rgb": ("LenaColorJpegRGB.tiff", []),
    "grey": ("LenaGrayscaleJpeg.tiff", []),
    "logo-jpeg": (
        "OrthancLogoJpeg.tiff",
        ["--compression=jpeg", "--pyramid=1", "--tile-width=256", "--tile-height=256"],
    ),
    "jpeg2000": ("Lena2x2.png", ["--compression=jpeg2000", "--pyramid=1"]),
    "raw": (
        "OrthancLogoJpeg.tiff",
        ["--compression=none", "--reencode=1", "--pyramid=1", "--tile-width=128", "--tile-height=128"],
    ),
}


def dicomize(source: Path, target: Path, options: list[str]) -> list[Path]:
    target.mkdir()
    command = [require_tool("OrthancWSIDicomizer", "to make whole-slide series"), f"--folder={target}", *options]
    subprocess.run([*command, str(source)], check=True, capture_output=True)
    return sorted(target.glob("*.dcm"))


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("slides")
    return {name: dicomize(sample("WSI", file), root / name, options) for name, (file, options) in SLIDES.items()}


@pytest.fixture(scope="module")
def series(module_server: ServerProcess, slides: dict[str, list[Path]]) -> dict[str, str]:
    """The series id of each slide, after uploading it to Isengard."""
    return {name: module_server.upload(*files)[0]["ParentSeries"] for name, files in slides.items()}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, slides: dict[str, list[Path]]) -> Iterator[OrthancProcess]:
    if not WSI_PLUGIN.exists():
        unavailable(f"{WSI_PLUGIN} is missing (Debian package orthanc-wsi; scripts/test installs it)")
    with reference_orthanc(tmp_path_factory.mktemp("orthanc"), {"Plugins": [str(WSI_PLUGIN)]}) as o:
        with httpx_client(o.url) as client:
            for files in slides.values():
                for path in files:
                    client.post("/instances", content=path.read_bytes()).raise_for_status()
        yield o


def httpx_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


@pytest.mark.parametrize("name", SLIDES)
def test_pyramid_is_orthancs(
    name: str, module_server: ServerProcess, orthanc: OrthancProcess, series: dict[str, str]
) -> None:
    ours = module_server.get(f"/wsi/pyramids/{series[name]}")
    with httpx_client(orthanc.url) as client:
        theirs = client.get(f"/wsi/pyramids/{series[name]}")
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json()


@pytest.mark.parametrize("name", SLIDES)
def test_every_tile_is_orthancs(
    name: str, module_server: ServerProcess, orthanc: OrthancProcess, series: dict[str, str]
) -> None:
    pyramid = module_server.get(f"/wsi/pyramids/{series[name]}").json()
    with module_server.client() as ours, httpx_client(orthanc.url) as theirs:
        for level, ((columns, rows), (width, height)) in enumerate(
            zip(pyramid["TilesCount"], pyramid["TilesSizes"], strict=True)
        ):
            for y in range(rows):
                for x in range(columns):
                    path = f"/wsi/tiles/{series[name]}/{level}/{x}/{y}"
                    mine, reference = ours.get(path), theirs.get(path)
                    assert mine.status_code == reference.status_code == 200, path
                    assert mine.headers["content-type"] == reference.headers["content-type"], path
                    if mine.headers["content-type"] == "image/jpeg":
                        assert mine.content == reference.content, path  # the stored frame, as it is
                    pixels = decoded(mine.content)
                    assert pixels.shape[:2] == (height, width), path
                    assert np.array_equal(pixels, decoded(reference.content)), path


def test_errors_are_orthancs(module_server: ServerProcess, orthanc: OrthancProcess, series: dict[str, str]) -> None:
    lena = series["jpeg-ycbcr"]
    phenix = module_server.upload(next(sample("Phenix").glob("*.dcm")))[0]["ParentSeries"]
    with httpx_client(orthanc.url) as client:
        client.post("/instances", content=next(sample("Phenix").glob("*.dcm")).read_bytes()).raise_for_status()
        cases = {
            "/wsi/pyramids/0123abcd-0000": (404, "Unknown resource"),
            f"/wsi/pyramids/{phenix}": (404, "Unknown resource"),  # not a whole-slide series
            f"/wsi/tiles/{phenix}/0/0/0": (404, "Unknown resource"),
            f"/wsi/tiles/{lena}/4/0/0": (400, "Parameter out of range"),
            f"/wsi/tiles/{lena}/-1/0/0": (400, "Parameter out of range"),
            f"/wsi/tiles/{lena}/0/-1/0": (400, "Parameter out of range"),
            f"/wsi/tiles/{lena}/0/8/0": (400, "Bad file format"),
            f"/wsi/tiles/{lena}/0/0/8": (400, "Bad file format"),
            f"/wsi/tiles/{lena}/a/0/0": (404, "Unknown resource"),
        }
        for path, (status, error) in cases.items():
            assert_orthanc_error(client.get(path), status, error)
            assert_orthanc_error(module_server.get(path), status, error)


def _variant(files: list[Path], target: Path, change: Any) -> list[Path]:
    """The series again under new UIDs, each instance changed by ``change(ds)``."""
    target.mkdir()
    series_uid, out = generate_uid(), []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        change(ds)
        out.append(target / path.name)
        ds.save_as(out[-1])
    return out


def test_tiled_full_serves_the_same_tiles(
    module_server: ServerProcess, slides: dict[str, list[Path]], series: dict[str, str], tmp_path: Path
) -> None:
    """The frames put row by row and their positions dropped, as TILED_FULL, give the same tiles (and without
    a Basic Offset Table, the frames are found by walking the pixel data)."""

    def tiled_full(ds: pydicom.Dataset) -> None:
        frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
        positions = [item.PlanePositionSlideSequence[0] for item in ds.PerFrameFunctionalGroupsSequence]
        order = sorted(
            range(len(frames)),
            key=lambda i: (
                positions[i].RowPositionInTotalImagePixelMatrix,
                positions[i].ColumnPositionInTotalImagePixelMatrix,
            ),
        )
        ds.PixelData = encapsulate([frames[i] for i in order], has_bot=False)  # frames found by walking
        del ds.PerFrameFunctionalGroupsSequence
        ds.DimensionOrganizationType = "TILED_FULL"

    files = _variant(slides["logo-jpeg"], tmp_path / "full", tiled_full)
    full = module_server.upload(*files)[0]["ParentSeries"]
    original = module_server.get(f"/wsi/pyramids/{series['logo-jpeg']}").json()
    pyramid = module_server.get(f"/wsi/pyramids/{full}").json()
    assert {**pyramid, "ID": None} == {**original, "ID": None}
    with module_server.client() as client:
        for level, (columns, rows) in enumerate(pyramid["TilesCount"]):
            for y in range(rows):
                for x in range(columns):
                    a = client.get(f"/wsi/tiles/{full}/{level}/{x}/{y}")
                    b = client.get(f"/wsi/tiles/{series['logo-jpeg']}/{level}/{x}/{y}")
                    assert a.status_code == 200 and a.content == b.content


def test_sparse_hole_is_background(module_server: ServerProcess, slides: dict[str, list[Path]], tmp_path: Path) -> None:
    """A TILED_SPARSE level without the frame of a tile answers a tile of the background colour (white); frames
    of two fragments each are read from the whole file."""

    def drop_first_frame(ds: pydicom.Dataset) -> None:
        count = int(ds.NumberOfFrames)
        if count < 2:
            return
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))[1:]
        ds.PixelData = encapsulate(frames, fragments_per_frame=2)  # the offset table's items are not frames
        ds.NumberOfFrames = count - 1
        ds.PerFrameFunctionalGroupsSequence = ds.PerFrameFunctionalGroupsSequence[1:]
        ds.DimensionOrganizationType = "TILED_SPARSE"

    files = _variant(slides["grey"], tmp_path / "sparse", drop_first_frame)
    sparse = module_server.upload(*files)[0]["ParentSeries"]
    hole = module_server.get(f"/wsi/tiles/{sparse}/0/0/0")
    assert hole.status_code == 200 and hole.headers["content-type"] == "image/jpeg"
    pixels = decoded(hole.content)
    assert pixels.shape == (64, 64) and pixels.min() >= 250
    kept = module_server.get(f"/wsi/tiles/{sparse}/0/1/0")
    assert kept.status_code == 200 and decoded(kept.content).min() < 250


def test_pyramid_follows_stores_and_deletions(isengard: Any, slides: dict[str, list[Path]]) -> None:
    """The cached pyramid is dropped when an instance of the series comes or goes; compressed storage works."""
    public = "https://slides.example/orthanc/"
    server = isengard({"StorageCompression": True, "WholeSlideImaging": {"OrthancPublicURL": public}})
    files = slides["jpeg-rgb"]
    first = server.upload(files[0])[0]
    series_id = first["ParentSeries"]
    assert len(server.get(f"/wsi/pyramids/{series_id}").json()["Sizes"]) == 1
    tile = server.get(f"/wsi/tiles/{series_id}/0/3/2")
    assert tile.status_code == 200 and decoded(tile.content).shape == (64, 64, 3)
    info = server.get(f"/wsi/iiif/tiles/{series_id}/info.json").json()
    assert info["id"] == f"{public}wsi/iiif/tiles/{series_id}"
    added = server.upload(*files[1:])
    assert server.get(f"/wsi/pyramids/{series_id}").json()["Sizes"] == [[512, 512], [256, 256], [128, 128], [64, 64]]
    assert server.get(f"/wsi/tiles/{series_id}/3/0/0").status_code == 200
    with server.client() as client:
        client.delete(f"/instances/{added[-1]['ID']}").raise_for_status()
        assert len(client.get(f"/wsi/pyramids/{series_id}").json()["Sizes"]) == 3
        assert_orthanc_error(client.get(f"/wsi/tiles/{series_id}/3/0/0"), 400, "Parameter out of range")
        client.delete(f"/series/{series_id}").raise_for_status()
        assert_orthanc_error(client.get(f"/wsi/pyramids/{series_id}"), 404, "Unknown resource")


def test_kept_tiles_follow_a_replaced_instance(isengard: Any, slides: dict[str, list[Path]], tmp_path: Path) -> None:
    """Frames are kept in memory once read: an instance deleted, then stored again under the same SOP Instance UID
    with its frames in the reverse order, answers its new frames."""
    server = isengard()
    level = slides["jpeg-ycbcr"][0]
    stored = server.upload(level)[0]
    series_id = stored["ParentSeries"]
    columns = server.get(f"/wsi/pyramids/{series_id}").json()["TilesCount"][0][0]
    ds = pydicom.dcmread(level)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    assert len(frames) > 1 and frames[0] != frames[-1]
    assert server.get(f"/wsi/tiles/{series_id}/0/0/0").content == frames[0]
    with server.client() as client:
        client.delete(f"/instances/{stored['ID']}").raise_for_status()
    ds.PixelData = encapsulate(frames[::-1], has_bot=True)
    reversed_level = tmp_path / "reversed.dcm"
    ds.save_as(reversed_level)
    assert server.upload(reversed_level)[0]["ID"] == stored["ID"]
    assert server.get(f"/wsi/tiles/{series_id}/0/0/0").content == frames[-1]
    last = len(frames) - 1
    assert server.get(f"/wsi/tiles/{series_id}/0/{last % columns}/{last // columns}").content == frames[0]


def test_iiif_info(module_server: ServerProcess, series: dict[str, str]) -> None:
    """IIIF Image 3 info.json: the levels as integer scale factors, the smallest size first."""
    logo = series["logo-jpeg"]
    info = module_server.get(f"/wsi/iiif/tiles/{logo}/info.json").json()
    assert info == {
        "@context": "http://iiif.io/api/image/3/context.json",
        "height": 420,
        "id": f"{module_server.url}/wsi/iiif/tiles/{logo}",
        "profile": "level0",
        "protocol": "http://iiif.io/api/image",
        "sizes": [{"width": 1000, "height": 210}, {"width": 2000, "height": 420}],
        "tiles": [{"height": 256, "scaleFactors": [1, 2], "width": 256}],
        "type": "ImageService3",
        "width": 2000,
    }
    lena = module_server.get(f"/wsi/iiif/tiles/{series['grey']}/info.json").json()
    assert lena["tiles"][0]["scaleFactors"] == [1, 2, 4, 8]
    assert_orthanc_error(module_server.get("/wsi/iiif/tiles/0123-abcd/info.json"), 404, "Unknown resource")


def test_iiif_tiles(module_server: ServerProcess, series: dict[str, str]) -> None:
    """A region aligned on a level's tiles is that tile; a smaller size crops it; ``full`` is the smallest level."""
    logo = series["logo-jpeg"]
    with module_server.client() as client:
        base = f"/wsi/iiif/tiles/{logo}"
        assert (
            client.get(f"{base}/0,0,256,256/256,/0/default.jpg").content
            == client.get(f"/wsi/tiles/{logo}/0/0/0").content
        )
        assert (
            client.get(f"{base}/512,0,512,420/256,/0/default.jpg").content
            == client.get(f"/wsi/tiles/{logo}/1/1/0").content
        )
        edge = client.get(f"{base}/1792,256,208,164/208,164/0/default.jpg")
        assert edge.status_code == 200 and edge.headers["content-type"] == "image/jpeg"
        whole = decoded(client.get(f"/wsi/tiles/{logo}/0/7/1").content)
        pixels = decoded(edge.content)
        assert pixels.shape == (164, 208, 3)
        assert np.abs(pixels.astype(int) - whole[:164, :208].astype(int)).mean() < 3
        full = client.get(f"{base}/full/max/0/default.jpg")
        assert decoded(full.content).shape == (210, 1000, 3)
        j2k = client.get(f"/wsi/iiif/tiles/{series['jpeg2000']}/0,0,512,512/512,/0/default.jpg")
        assert j2k.headers["content-type"] == "image/jpeg" and decoded(j2k.content).shape == (512, 512, 3)
        for path, status, error in [
            (f"{base}/0,0,256,256/256,/90/default.jpg", 501, "Not implemented yet"),
            (f"{base}/0,0,256,256/256,/0/gray.jpg", 501, "Not implemented yet"),
            (f"{base}/0,0,256,256/256,/0/default.png", 501, "Not implemented yet"),
            (f"{base}/pct:0,0,10,10/256,/0/default.jpg", 501, "Not implemented yet"),
            (f"{base}/1,0,256,256/256,/0/default.jpg", 400, "Bad request"),
            (f"{base}/0,0,256,256/512,/0/default.jpg", 400, "Bad request"),
        ]:
            assert_orthanc_error(client.get(path), status, error)


def _painting(canvas: dict[str, Any]) -> dict[str, Any]:
    """The one painting annotation of a canvas, checked to be where IIIF Presentation 3 puts it."""
    (page,) = canvas["items"]
    assert page["type"] == "AnnotationPage"
    (annotation,) = page["items"]
    assert annotation["type"] == "Annotation" and annotation["motivation"] == "painting"
    assert annotation["target"] == canvas["id"]
    body = annotation["body"]
    assert body["type"] == "Image" and body["format"] == "image/jpeg"
    assert (body["width"], body["height"]) == (canvas["width"], canvas["height"])
    return annotation


def test_iiif_manifest_of_slide(module_server: ServerProcess, series: dict[str, str]) -> None:
    """Presentation 3 (orthanc-wsi 2.x): one Canvas of the base level's size, painted by the series' image
    service, whose info.json and full picture answer; the ids follow the Host header as info.json's do."""
    logo = series["logo-jpeg"]
    with module_server.client() as client:
        tags = client.get(f"/series/{logo}").json()["MainDicomTags"]
        study = client.get(f"/series/{logo}/study").json()["MainDicomTags"]
        manifest = client.get(f"/wsi/iiif/series/{logo}/manifest.json").json()
        base = f"{module_server.url}/wsi/iiif/"
        assert manifest["@context"] == "http://iiif.io/api/presentation/3/context.json"
        assert manifest["type"] == "Manifest" and manifest["id"] == f"{base}series/{logo}/manifest.json"
        label = f"{study.get('StudyDate', '')} - {tags['Modality']} - {study.get('StudyDescription', '')} - "
        assert manifest["label"] == {"en": [label + tags.get("SeriesDescription", "")]}
        assert "behavior" not in manifest
        (canvas,) = manifest["items"]
        assert canvas["type"] == "Canvas" and canvas["id"] == f"{base}{logo}/canvas/p1"
        assert (canvas["width"], canvas["height"]) == (2000, 420)  # level 0 of /wsi/pyramids
        body = _painting(canvas)["body"]
        (service,) = body["service"]
        info = client.get(f"/wsi/iiif/tiles/{logo}/info.json").json()
        assert service == {"id": info["id"], "profile": "level0", "type": "ImageService3"}
        assert client.get(service["id"] + "/info.json").status_code == 200
        full = client.get(body["id"])
        assert full.headers["content-type"] == "image/jpeg" and decoded(full.content).shape == (210, 1000, 3)
        for headers in (
            {"Host": "slides.example:8443"},
            {"X-Forwarded-Host": "a.example", "X-Forwarded-Proto": "https"},
        ):
            moved = client.get(f"/wsi/iiif/series/{logo}/manifest.json", headers=headers).json()
            info = client.get(f"/wsi/iiif/tiles/{logo}/info.json", headers=headers).json()
            assert _painting(moved["items"][0])["body"]["service"][0]["id"] == info["id"]
            assert moved["id"] == info["id"].replace(f"tiles/{logo}", f"series/{logo}/manifest.json")
        host = client.get(f"/wsi/iiif/series/{logo}/manifest.json", headers={"Host": "slides.example:8443"})
        assert host.json()["id"] == f"{module_server.scheme}://slides.example:8443/wsi/iiif/series/{logo}/manifest.json"
        for path in (f"/wsi/iiif/series/{logo[:8]}/manifest.json", "/wsi/iiif/series/no-such/manifest.json"):
            assert_orthanc_error(client.get(path), 404, "Unknown resource")


def test_iiif_manifest_of_frames(module_server: ServerProcess) -> None:
    """A series that is not whole-slide is a book: one Canvas per frame in the order of /ordered-slices, each
    painted by a single-tile image service of its frame whose picture is the frame's JPEG preview."""
    series_id = module_server.upload(*sorted(sample("Series").glob("*.dcm")))[0]["ParentSeries"]
    with module_server.client() as client:
        manifest = client.get(f"/wsi/iiif/series/{series_id}/manifest.json").json()
        assert manifest["type"] == "Manifest" and manifest["behavior"] == ["individuals"]
        slices = client.get(f"/series/{series_id}/ordered-slices").json()["SlicesShort"]
        frames = [(instance, frame) for instance, start, count in slices for frame in range(start, start + count)]
        assert len(manifest["items"]) == len(frames) == 5
        base = f"{module_server.url}/wsi/iiif/"
        for page, (canvas, (instance, frame)) in enumerate(zip(manifest["items"], frames, strict=True), start=1):
            tags = client.get(f"/instances/{instance}/tags?short").json()
            assert canvas["id"] == f"{base}{instance}/canvas/p{page}"
            assert (canvas["width"], canvas["height"]) == (int(tags["0028,0011"]), int(tags["0028,0010"]))
            body = _painting(canvas)["body"]
            service = body["service"][0]["id"]
            assert service == f"{base}frames/{instance}/{frame}" and body["id"] == service + "/full/max/0/default.jpg"
            info = client.get(service + "/info.json").json()
            assert info == {
                "@context": "http://iiif.io/api/image/3/context.json",
                "height": canvas["height"],
                "id": service,
                "profile": "level0",
                "protocol": "http://iiif.io/api/image",
                "tiles": [{"height": canvas["height"], "scaleFactors": [1], "width": canvas["width"]}],
                "type": "ImageService3",
                "width": canvas["width"],
            }
        picture = client.get(body["id"])
        preview = client.get(f"/instances/{instance}/frames/{frame}/preview", headers={"Accept": "image/jpeg"})
        assert picture.headers["content-type"] == "image/jpeg" and picture.content == preview.content
        for path in (f"/wsi/iiif/frames/{instance}/x/info.json", f"/wsi/iiif/frames/{instance[:8]}/0/info.json"):
            assert_orthanc_error(client.get(path), 404, "Unknown resource")


def test_iiif_frame_pyramid(module_server: ServerProcess) -> None:
    """orthanc-wsi 3.0's /wsi/iiif/frames-pyramids: a manifest of one Canvas the frame's size, painted by the
    image service of the frame's on-the-fly pyramid, whose tiles are those of /wsi/frames-tiles."""
    instance = module_server.upload(sample("TransferSyntaxes", "1.2.840.10008.1.2.4.57.dcm"))[0]["ID"]
    base = f"{module_server.url}/wsi/iiif/frames-pyramids/{instance}/0"
    with module_server.client() as client:
        levels = client.get(f"/wsi/frames-pyramids/{instance}/0").json()
        assert (levels["TotalWidth"], levels["TotalHeight"]) == (1024, 1024)
        manifest = client.get(f"/wsi/iiif/frames-pyramids/{instance}/0/manifest.json").json()
        assert manifest["@context"] == "http://iiif.io/api/presentation/3/context.json"
        assert manifest["type"] == "Manifest" and manifest["id"] == f"{base}/manifest.json"
        (canvas,) = manifest["items"]
        assert canvas["id"] == f"{base}/canvas/p1" and (canvas["width"], canvas["height"]) == (1024, 1024)
        body = _painting(canvas)["body"]
        assert body["service"][0]["id"] == base and body["id"] == f"{base}/full/max/0/default.jpg"
        info = client.get(f"{base}/info.json").json()
        assert info["id"] == base and (info["width"], info["height"]) == (1024, 1024)
        assert info["tiles"] == [{"height": 512, "scaleFactors": [1, 2], "width": 512}]
        assert info["sizes"] == [{"width": 512, "height": 512}, {"width": 1024, "height": 1024}]
        for region, level, x, y in [("512,0,512,512", 0, 1, 0), ("0,0,1024,1024", 1, 0, 0)]:
            tile = client.get(f"{base}/{region}/512,/0/default.jpg")
            assert tile.headers["content-type"] == "image/jpeg"
            png = decoded(client.get(f"/wsi/frames-tiles/{instance}/0/{level}/{x}/{y}").content)
            assert np.abs(decoded(tile.content).astype(int) - png.astype(int)).mean() < 3
        assert decoded(client.get(f"{base}/0,0,512,512/100,50/0/default.jpg").content).shape == (50, 100, 3)
        assert decoded(client.get(body["id"]).content).shape == (512, 512, 3)
        assert_orthanc_error(client.get(f"{base}/1,0,512,512/512,/0/default.jpg"), 400, "Bad request")
        assert_orthanc_error(client.get(f"{base}/0,0,512,512/512,/90/default.jpg"), 501, "Not implemented yet")
        assert_orthanc_error(client.get(f"/wsi/iiif/frames-pyramids/{instance}/x/info.json"), 404)


def test_iiif_public_url(isengard: Any) -> None:
    """OrthancPublicURL, when set, makes every id of a manifest, whatever the request's host."""
    server = isengard({"WholeSlideImaging": {"OrthancPublicURL": "https://pacs.example/orthanc/"}})
    series_id = server.upload(sample("Phenix", "IM-0001-0001.dcm"))[0]["ParentSeries"]
    manifest = server.get(f"/wsi/iiif/series/{series_id}/manifest.json").json()
    assert manifest["id"] == f"https://pacs.example/orthanc/wsi/iiif/series/{series_id}/manifest.json"
    service = _painting(manifest["items"][0])["body"]["service"][0]["id"]
    assert service.startswith("https://pacs.example/orthanc/wsi/iiif/frames/")
    path = service.removeprefix("https://pacs.example/orthanc")
    assert server.get(path + "/info.json").json()["id"] == service


def test_tile_accept(module_server: ServerProcess, series: dict[str, str]) -> None:
    """Accept picks JPEG, PNG or JPEG 2000 (orthanc-wsi 2.x; 1.1 ignores the header): the default follows the
    stored frames, a JPEG frame asked as PNG or JPEG 2000 is decoded and encoded again, a raw one likewise, and
    no image type at all is a 406 with Orthanc's JSON error."""
    jpeg_tile, raw_tile = f"/wsi/tiles/{series['jpeg-ycbcr']}/0/1/1", f"/wsi/tiles/{series['raw']}/0/1/0"
    with module_server.client() as client:
        stored = client.get(jpeg_tile).content
        for accept in ("*/*", "image/*", "image/jpeg", "image/png, image/jpeg;q=0.5"):  # the last type listed wins
            mine = client.get(jpeg_tile, headers={"Accept": accept})
            assert mine.headers["content-type"] == "image/jpeg" and mine.content == stored, accept
        png = client.get(jpeg_tile, headers={"Accept": "text/html, image/png"})
        assert png.headers["content-type"] == "image/png"
        assert np.abs(decoded(png.content).astype(int) - decoded(stored).astype(int)).max() <= 2
        raw = decoded(client.get(raw_tile).content)
        assert client.get(raw_tile, headers={"Accept": "*/*"}).headers["content-type"] == "image/png"
        jp2 = client.get(raw_tile, headers={"Accept": "image/jp2"})
        assert jp2.headers["content-type"] == "image/jp2" and np.array_equal(decoded(jp2.content), raw)  # lossless
        jpeg = client.get(raw_tile, headers={"Accept": "image/jpeg"})
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert np.abs(decoded(jpeg.content).astype(int) - raw.astype(int)).mean() < 4
        error = "Cannot send a response which is acceptable according to the Accept HTTP header"
        for path in (jpeg_tile, raw_tile):
            assert_orthanc_error(client.get(path, headers={"Accept": "text/html"}), 406, error)
