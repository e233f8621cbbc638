"""The viewer's rendering API against phantoms whose truth is known, and against real series.

Phantoms (isengard_viewer.phantom) are uploaded to a real server; every figure the API answers is compared with
the generator's geometry, recomputed here independently where it is a rule (reslice sizes, SUV).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from isengard.testing import ServerProcess, assert_orthanc_error, sample
from isengard_viewer import phantom
from isengard_viewer.phantom import PetDose, Series, Shapes

from .conftest import PET, upload

CT = Series()
VARIANTS: dict[str, Series] = {
    "plain": CT,
    "oblique": Series(orientation=phantom.rotation(20.0, -15.0, 30.0)),
    "tilted": Series(orientation=phantom.rotation(x_degrees=-15.0), advance=(0.0, 0.0, 1.0)),
    "uneven": Series(offsets=tuple(2.0 * k + (3.0 if k >= 20 else 0.0) for k in range(40))),
}
DOSE = PetDose()


@pytest.fixture(scope="module")
def server(module_server: ServerProcess) -> ServerProcess:
    return module_server


@pytest.fixture(scope="module")
def series(server: ServerProcess) -> Iterator[dict[str, tuple[str, Series, Shapes]]]:
    """Every phantom uploaded once: name -> (series id, grid, shapes)."""
    uploaded: dict[str, tuple[str, Series, Shapes]] = {}
    for name, grid in VARIANTS.items():
        shapes = phantom.shapes_for(grid)
        uploaded[name] = (upload(server, phantom.ct_series(grid, shapes))["ParentSeries"], grid, shapes)
    shapes = phantom.shapes_for(CT)
    duplicates = phantom.ct_series(CT, shapes, duplicate=7, localizer=True)
    uploaded["duplicates"] = (upload(server, duplicates)["ParentSeries"], CT, shapes)
    mixed = phantom.ct_series(CT, shapes)
    for ds in phantom.ct_series(
        replace(CT, orientation=phantom.rotation(x_degrees=-90.0), offsets=(0.0, 2.0, 4.0)), shapes
    ):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = mixed[0].StudyInstanceUID, mixed[0].SeriesInstanceUID
        mixed.append(ds)
    uploaded["mixed"] = (upload(server, mixed)["ParentSeries"], CT, shapes)
    uploaded["enhanced"] = (upload(server, [phantom.enhanced_ct(CT, shapes)])["ParentSeries"], CT, shapes)
    uploaded["rle"] = (upload(server, _rle(phantom.ct_series(CT, shapes)))["ParentSeries"], CT, shapes)
    single = Series(offsets=(0.0,))
    uploaded["single"] = (upload(server, phantom.ct_series(single, shapes))["ParentSeries"], single, shapes)
    uploaded["nogeometry"] = (upload(server, phantom.ct_series(CT, shapes, geometry=False))["ParentSeries"], CT, shapes)
    pet_shapes = phantom.shapes_for(PET, sphere_value=25000.0, cube_value=3000.0, background=3000.0, radius=12.0)
    for correction in ("START", "ADMIN", "NONE"):
        datasets = phantom.pet_series(PET, pet_shapes, DOSE, decay_correction=correction)
        uploaded[f"pet-{correction}"] = (upload(server, datasets)["ParentSeries"], PET, pet_shapes)
    yield uploaded


def _rle(datasets: list[Dataset]) -> list[Dataset]:
    """Compressed with RLE Lossless: decoding goes through the kernel's decoders, not only native pixels."""
    for ds in datasets:
        ds.compress(RLELossless)
    return datasets


def _get(server: ServerProcess, path: str, **params: Any) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text[:500]
    return response


def _volume(server: ServerProcess, series_id: str) -> dict[str, Any]:
    return _get(server, f"/viewer/api/series/{series_id}/volume").json()


def _plane(server: ServerProcess, series_id: str, plane: str, **params: Any) -> dict[str, Any]:
    return _get(server, f"/viewer/api/series/{series_id}/reslice/{plane}", format="json", **params).json()


def _types(volume: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {problem["Type"]: problem for problem in volume["Problems"]}


# -- geometry ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "oblique", "enhanced", "rle"])
def test_volume_geometry_equals_the_generators(server: ServerProcess, series: dict, name: str) -> None:
    series_id, grid, _ = series[name]
    volume = _volume(server, series_id)
    assert volume["Size"] == [grid.columns, grid.rows, len(grid.offsets)]
    assert volume["Spacing"] == pytest.approx([grid.pixel_spacing[1], grid.pixel_spacing[0], 2.0])
    assert volume["Origin"] == pytest.approx(list(grid.slice_origin(grid.offsets[0])), abs=1e-5)
    assert np.allclose(volume["Directions"], [grid.row, grid.column, grid.normal], atol=1e-6)
    assert volume["Units"] == "HU" and volume["Modality"] == "CT" and volume["FrameOfReferenceUID"]
    assert volume["DefaultWindow"] == {"Center": 40.0, "Width": 400.0, "Source": "File"}
    assert volume["Problems"] == []


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_reslice_sizes_follow_the_rule(server: ServerProcess, series: dict, plane: str) -> None:
    """Square pixels of the smallest PixelSpacing over the whole volume, edge to edge."""
    series_id, grid, _ = series["plain"]
    px = min(grid.pixel_spacing)
    width_mm, height_mm, depth_mm = grid.columns * grid.pixel_spacing[1], grid.rows * grid.pixel_spacing[0], 40 * 2.0
    expected = {
        "axial": (width_mm, height_mm),
        "coronal": (width_mm, depth_mm),
        "sagittal": (height_mm, depth_mm),
    }[plane]
    geometry = _plane(server, series_id, plane)
    assert geometry["Size"] == [math.floor(mm / px + 0.5) for mm in expected]
    assert geometry["PixelSpacing"] == pytest.approx(px)
    picture = Image.open(io.BytesIO(_get(server, f"/viewer/api/series/{series_id}/reslice/{plane}").content))
    assert picture.size == tuple(geometry["Size"]) and picture.mode == "L"
    assert _plane(server, series_id, plane, spacing="1.4")["Size"] == [math.floor(mm / 1.4 + 0.5) for mm in expected]


def test_planes_are_shown_in_radiological_orientation(server: ServerProcess, series: dict) -> None:
    """Patient left on the image right (axial, coronal), superior up (coronal, sagittal), anterior left (sagittal)."""
    series_id = series["plain"][0]
    axial, coronal, sagittal = (_plane(server, series_id, p) for p in ("axial", "coronal", "sagittal"))
    assert axial["RowDirection"] == pytest.approx([1, 0, 0]) and axial["ColumnDirection"] == pytest.approx([0, 1, 0])
    assert coronal["RowDirection"] == pytest.approx([1, 0, 0]) and coronal["ColumnDirection"] == pytest.approx(
        [0, 0, -1]
    )
    assert sagittal["RowDirection"] == pytest.approx([0, 1, 0])
    assert sagittal["ColumnDirection"] == pytest.approx([0, 0, -1])
    assert np.allclose([axial["Normal"], coronal["Normal"], sagittal["Normal"]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])


def _disc(server: ServerProcess, series_id: str, plane: str, **params: Any) -> tuple[np.ndarray, float, dict]:
    """Centre (patient mm) and radius (mm) of the sphere in a reslice, thresholded by the window at 100 HU."""
    geometry = _plane(server, series_id, plane, **params)
    body = _get(server, f"/viewer/api/series/{series_id}/reslice/{plane}", window="100,2", **params).content
    pixels = np.asarray(Image.open(io.BytesIO(body)))
    rows, columns = np.nonzero(pixels > 127)
    assert len(rows), f"no sphere in the {plane} reslice"
    spacing = geometry["PixelSpacing"]
    centre = (
        np.array(geometry["Origin"])
        + columns.mean() * spacing * np.array(geometry["RowDirection"])
        + rows.mean() * spacing * np.array(geometry["ColumnDirection"])
    )
    return centre, math.sqrt(len(rows) / math.pi) * spacing, geometry


@pytest.mark.parametrize("name", ["plain", "oblique", "tilted", "uneven"])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal", "oblique"])
def test_sphere_is_where_the_generator_put_it(server: ServerProcess, series: dict, name: str, plane: str) -> None:
    series_id, _, shapes = series[name]
    truth = np.array(shapes.sphere_center)
    if plane == "oblique":  # a plane through the sphere's centre, away from the cube
        params = {"normal": "-0.6,0.5,-0.4", "center": ",".join(map(str, truth))}
    else:
        normal = np.array(_plane(server, series_id, plane)["Normal"])
        params = {"position": str(float(truth @ normal))}
    centre, radius, geometry = _disc(server, series_id, plane, **params)
    assert np.linalg.norm(centre - truth) <= geometry["PixelSpacing"]
    assert radius == pytest.approx(shapes.sphere_radius, abs=geometry["PixelSpacing"])


def test_index_selects_a_slice_of_the_volume(server: ServerProcess, series: dict) -> None:
    series_id, grid, _ = series["plain"]
    geometry = _plane(server, series_id, "axial", index="5")
    assert geometry["Position"] == pytest.approx(float(grid.slice_origin(grid.offsets[5])[2]))
    geometry = _plane(server, series_id, "coronal", index="0")
    assert geometry["Position"] == pytest.approx(grid.origin[1])


def test_thick_slab_projects_the_whole_sphere(server: ServerProcess, series: dict) -> None:
    """6 mm off the centre a 10 mm sphere cuts an 8 mm disc; a 20 mm MIP slab shows all of it, MinIP none."""
    series_id, _, shapes = series["plain"]
    position = str(shapes.sphere_center[2] + 6.0)
    _, thin, geometry = _disc(server, series_id, "axial", position=position)
    _, thick, _ = _disc(server, series_id, "axial", position=position, slab="20", mode="mip")
    assert thin == pytest.approx(8.0, abs=geometry["PixelSpacing"])
    assert thick == pytest.approx(shapes.sphere_radius, abs=geometry["PixelSpacing"])
    values = np.load(
        io.BytesIO(
            _get(
                server,
                f"/viewer/api/series/{series_id}/reslice/axial",
                position=position,
                slab="20",
                mode="minip",
                format="npy",
            ).content
        )
    )
    assert values.shape == tuple(reversed(geometry["Size"])) and values.dtype == np.float32
    assert values.max() < 100  # the slab reaches past the sphere everywhere


def test_value_at_the_sphere_centre_is_the_phantoms(server: ServerProcess, series: dict) -> None:
    for name in ("plain", "oblique", "tilted", "uneven", "enhanced"):
        series_id, grid, shapes = series[name]
        x, y, z = shapes.sphere_center
        found = _get(server, f"/viewer/api/series/{series_id}/value", x=x, y=y, z=z).json()
        assert found["Value"] == pytest.approx(shapes.sphere_value, abs=1e-3), name
        assert found["Units"] == "HU"
        if name == "plain":
            expected = np.linalg.solve(
                np.column_stack([grid.row * grid.pixel_spacing[1], grid.column * grid.pixel_spacing[0], [0, 0, 2.0]]),
                np.array(shapes.sphere_center) - np.array(grid.origin),
            )
            assert found["Index"] == [math.floor(v + 0.5) for v in expected]
    x, y, z = series["plain"][2].cube_center
    found = _get(server, f"/viewer/api/series/{series['plain'][0]}/value", x=x, y=y, z=z).json()
    assert found["Value"] == pytest.approx(series["plain"][2].cube_value)


# -- PET --------------------------------------------------------------------------------------------------------


def _expected_suv(bqml: float, correction: str) -> float:
    """QIBA: Bq/ml x weight (g) / dose decayed from injection to the scan start (START) or not at all (ADMIN)."""
    decay = 4500.0 if correction == "START" else 0.0  # 08:15:00 to 09:30:00
    return bqml * DOSE.weight * 1000.0 / (DOSE.total_dose * 2.0 ** (-decay / DOSE.half_life))


@pytest.mark.parametrize("correction", ["START", "ADMIN"])
def test_pet_is_in_suv(server: ServerProcess, series: dict, correction: str) -> None:
    series_id, _, shapes = series[f"pet-{correction}"]
    volume = _volume(server, series_id)
    assert volume["Units"] == "SUVbw" and volume["Modality"] == "PT" and volume["Problems"] == []
    assert volume["Size"] == [32, 32, 20] and volume["Spacing"] == pytest.approx([4.0, 4.0, 4.0])
    x, y, z = shapes.sphere_center
    found = _get(server, f"/viewer/api/series/{series_id}/value", x=x, y=y, z=z).json()
    assert found["Units"] == "SUVbw"
    assert found["Value"] == pytest.approx(_expected_suv(shapes.sphere_value, correction), rel=1e-4)
    assert volume["Range"][1] == pytest.approx(_expected_suv(shapes.sphere_value, correction), rel=1e-4)


def test_pet_without_decay_correction_stays_in_bqml(server: ServerProcess, series: dict) -> None:
    series_id, _, shapes = series["pet-NONE"]
    volume = _volume(server, series_id)
    assert volume["Units"] == "BQML"
    assert "DecayCorrection" in _types(volume)["SuvNotComputable"]["Details"]
    x, y, z = shapes.sphere_center
    found = _get(server, f"/viewer/api/series/{series_id}/value", x=x, y=y, z=z).json()
    assert found["Value"] == pytest.approx(shapes.sphere_value, rel=1e-4)


# -- imperfect series -------------------------------------------------------------------------------------------


def test_problems_are_listed_for_each_imperfect_series(server: ServerProcess, series: dict) -> None:
    tilted = _types(_volume(server, series["tilted"][0]))
    assert set(tilted) == {"GantryTilt"} and tilted["GantryTilt"]["Angle"] == pytest.approx(15.0, abs=0.01)
    uneven = _types(_volume(server, series["uneven"][0]))
    assert set(uneven) == {"NonUniformSpacing"}
    assert uneven["NonUniformSpacing"]["Gaps"] == [{"AfterSlice": 19, "Gap": 5.0}]
    assert uneven["NonUniformSpacing"]["Expected"] == 2.0
    duplicates = _volume(server, series["duplicates"][0])
    assert _types(duplicates) == {
        "Localizers": {"Type": "Localizers", "Count": 1, "Details": "left out of the volume"},
        "DuplicatePositions": {"Type": "DuplicatePositions", "Count": 1, "Details": "only the first is kept"},
    }
    assert duplicates["Size"] == [80, 64, 40]
    mixed = _volume(server, series["mixed"][0])
    assert _types(mixed)["MixedOrientation"]["Count"] == 3 and len(mixed["Problems"]) == 1
    assert mixed["Size"] == [80, 64, 40]
    missing = _volume(server, series["nogeometry"][0])
    assert set(_types(missing)) == {"MissingGeometry"} and missing["Origin"] is None
    assert missing["Size"] == [80, 64, 40]


def test_a_stack_without_geometry_cannot_be_resliced(server: ServerProcess, series: dict) -> None:
    series_id = series["nogeometry"][0]
    body = assert_orthanc_error(server.get(f"/viewer/api/series/{series_id}/reslice/axial"), 409)
    assert "MissingGeometry" in body["Details"]
    assert_orthanc_error(server.get(f"/viewer/api/series/{series_id}/value", params={"x": 0, "y": 0, "z": 0}), 409)


def test_a_single_slice_shows_only_its_own_plane(server: ServerProcess, series: dict) -> None:
    series_id = series["single"][0]
    volume = _volume(server, series_id)
    assert volume["Size"] == [80, 64, 1] and volume["Problems"] == []
    assert _plane(server, series_id, "axial")["Size"] == [80, 73]
    body = assert_orthanc_error(server.get(f"/viewer/api/series/{series_id}/reslice/coronal"), 409)
    assert "single slice" in body["Details"]
    assert_orthanc_error(server.get(f"/viewer/api/series/{series_id}/reslice/oblique", params={"normal": "0,1,0"}), 409)


# -- errors, formats, cache -------------------------------------------------------------------------------------


def test_errors_have_orthancs_body(server: ServerProcess, series: dict) -> None:
    series_id = series["plain"][0]
    base = f"/viewer/api/series/{series_id}"
    assert_orthanc_error(server.get("/viewer/api/series/nope/volume"), 404, "Unknown resource")
    assert_orthanc_error(server.get("/viewer/api/series/nope/reslice/axial"), 404)
    for path, params in [
        (f"{base}/reslice/diagonal", {}),
        (f"{base}/reslice/axial", {"window": "40"}),
        (f"{base}/reslice/axial", {"window": "40,0"}),
        (f"{base}/reslice/axial", {"preset": "pancreas"}),
        (f"{base}/reslice/axial", {"mode": "median"}),
        (f"{base}/reslice/axial", {"format": "gif"}),
        (f"{base}/reslice/axial", {"index": "40"}),
        (f"{base}/reslice/axial", {"spacing": "0"}),
        (f"{base}/reslice/oblique", {}),
        (f"{base}/reslice/oblique", {"normal": "0,0,0"}),
        (f"{base}/reslice/oblique", {"normal": "0,0,1", "up": "0,0,1"}),
        (f"{base}/value", {"x": "1", "y": "2"}),
        (f"{base}/value", {"x": "1000", "y": "0", "z": "0"}),
    ]:
        assert_orthanc_error(server.get(path, params=params), 400, "Parameter out of range")


def test_presets_and_jpeg(server: ServerProcess, series: dict) -> None:
    series_id, _, shapes = series["plain"]
    position = str(shapes.sphere_center[2])
    bone = _get(server, f"/viewer/api/series/{series_id}/reslice/axial", preset="bone", position=position)
    brain = _get(server, f"/viewer/api/series/{series_id}/reslice/axial", preset="brain", position=position)
    # 200 HU: 50% grey with bone (400, 1800), white with brain (40, 80)
    bone_pixels, brain_pixels = (np.asarray(Image.open(io.BytesIO(r.content))) for r in (bone, brain))
    assert abs(int(bone_pixels.max()) - round((200 - (400 - 900)) * 255 / 1800)) <= 1 and brain_pixels.max() == 255
    jpeg = _get(server, f"/viewer/api/series/{series_id}/reslice/coronal", format="jpeg", quality="80")
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).format == "JPEG"


def test_a_series_that_grows_is_loaded_again(server: ServerProcess) -> None:
    shapes = phantom.shapes_for(CT)
    datasets = phantom.ct_series(CT, shapes)
    series_id = upload(server, datasets[:10])["ParentSeries"]
    assert _volume(server, series_id)["Size"][2] == 10
    upload(server, datasets[10:])
    assert _volume(server, series_id)["Size"][2] == 40


def test_webviewer_options_are_accepted(isengard: Any) -> None:
    server = isengard({"WebViewer": {"CachePath": "cache", "CacheSize": 10, "Threads": 3}, "Viewer": {"CacheSize": 0}})
    series_id = upload(server, phantom.ct_series(Series(offsets=(0.0, 2.0)), phantom.shapes_for(CT)))["ParentSeries"]
    assert _volume(server, series_id)["Size"] == [80, 64, 2]
    assert "unknown configuration option" not in server.log_path.read_text()


# -- real data --------------------------------------------------------------------------------------------------


def _upload_folder(server: ServerProcess, folder: Path) -> str:
    return server.upload(*sorted(folder.glob("*.dcm")))[-1]["ParentSeries"]


def test_brainix_oblique_mr_loads_and_reslices(server: ServerProcess) -> None:
    folder = sample("Brainix", "Flair")
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.glob("*.dcm"))]
    volume = _volume(server, _upload_folder(server, folder))
    rows, columns = headers[0].Rows, headers[0].Columns
    dr, dc = (float(v) for v in headers[0].PixelSpacing)
    orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    along = sorted(float(np.array(h.ImagePositionPatient, dtype=float) @ normal) for h in headers)
    gap = (along[-1] - along[0]) / (len(along) - 1)
    assert volume["Size"] == [columns, rows, len(headers)] and volume["Problems"] == []
    assert volume["Spacing"] == pytest.approx([dc, dr, gap], abs=1e-4)
    coronal = _plane(server, volume["ID"], "coronal")
    px = min(dr, dc)
    assert coronal["Size"] == [math.floor(columns * dc / px + 0.5), math.floor(len(headers) * gap / px + 0.5)]
    picture = Image.open(io.BytesIO(_get(server, f"/viewer/api/series/{volume['ID']}/reslice/coronal").content))
    assert picture.size == tuple(coronal["Size"]) and np.asarray(picture).std() > 10


def test_real_pet_without_weight_stays_in_bqml(server: ServerProcess) -> None:
    """Comunix's PET is JPEG 2000 and anonymized to a weight of 0: no SUV, and the volume says why."""
    volume = _volume(server, _upload_folder(server, sample("Comunix", "Pet")))
    assert volume["Units"] == "BQML" and volume["Size"][2] == 2
    assert "PatientWeight" in _types(volume)["SuvNotComputable"]["Details"]
