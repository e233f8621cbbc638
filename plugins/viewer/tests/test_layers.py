"""Layers over reslices: a PET fused on its CT, RT structures and an RT dose, against phantoms whose truth is known.

The phantoms (isengard_viewer.phantom) share one frame of reference: a CT with a sphere, a coarser PET with a hot
sphere at the same place, an RT Structure Set outlining the sphere on the CT's slices and a Gaussian RT Dose
centred on it. Coloured pixels of the answered pictures are mapped back to patient mm with the plane's geometry
(format=json) and compared with the generator's shapes.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from isengard.testing import ServerProcess, assert_orthanc_error, sample
from isengard_viewer import phantom
from isengard_viewer.phantom import GaussianDose, PetDose, Series, StructureColors

from .conftest import PET, upload

CT = Series()
DOSE_GRID = Series(
    rows=40, columns=48, pixel_spacing=(2.5, 2.5), offsets=tuple(2.5 * k for k in range(36)), origin=(-30, -16, -104)
)
COLORS = StructureColors()
SHAPES = phantom.shapes_for(CT)
DOSE = GaussianDose(center=SHAPES.sphere_center)


@pytest.fixture(scope="module")
def server(module_server: ServerProcess) -> ServerProcess:
    return module_server


@pytest.fixture(scope="module")
def ids(server: ServerProcess) -> dict[str, str]:
    """The phantoms uploaded once: CT, PET (same and other frame of reference), RT-STRUCT and RT-DOSE ids."""
    ct = phantom.ct_series(CT, SHAPES)
    pet_shapes = replace(SHAPES, sphere_value=25000.0, cube_value=3000.0, background=3000.0)
    structures = phantom.rt_structure_set(ct, SHAPES, colors=COLORS)
    return {
        "ct": upload(server, ct)["ParentSeries"],
        "pet": upload(server, phantom.pet_series(PET, pet_shapes, PetDose(), like=ct[0]))["ParentSeries"],
        "elsewhere": upload(server, phantom.pet_series(PET, pet_shapes, PetDose()))["ParentSeries"],
        "rtstruct": upload(server, [structures])["ID"],
        "rtdose": upload(server, [phantom.rt_dose(DOSE_GRID, DOSE, ct[0])])["ID"],
        "otherdose": upload(server, [phantom.rt_dose(DOSE_GRID, DOSE, phantom.ct_series(CT, SHAPES)[0])])["ID"],
    }


def _get(server: ServerProcess, path: str, **params: Any) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text[:500]
    return response


def _reslice(server: ServerProcess, series_id: str, plane: str, **params: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The picture as an array and the plane's geometry with the layers' description."""
    path = f"/viewer/api/series/{series_id}/reslice/{plane}"
    geometry = _get(server, path, format="json", **params).json()
    picture = Image.open(io.BytesIO(_get(server, path, **params).content))
    return np.asarray(picture), geometry


def _patient(geometry: dict[str, Any], rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(N, 3) patient mm of picture pixels."""
    spacing = geometry["PixelSpacing"]
    return (
        np.array(geometry["Origin"])
        + (columns * spacing)[:, None] * np.array(geometry["RowDirection"])
        + (rows * spacing)[:, None] * np.array(geometry["ColumnDirection"])
    )


def _colored(picture: np.ndarray, color: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.all(picture == np.array(color, dtype=np.uint8), axis=2))


def _through_sphere(server: ServerProcess, series_id: str, plane: str) -> str:
    normal = np.array(_get(server, f"/viewer/api/series/{series_id}/reslice/{plane}", format="json").json()["Normal"])
    return str(float(np.array(SHAPES.sphere_center) @ normal))


# -- fusion -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_fused_hot_spot_lands_on_the_ct_sphere(server: ServerProcess, ids: dict[str, str], plane: str) -> None:
    """The PET sphere (4 mm voxels) resampled on the CT's plane covers the CT sphere's pixels."""
    position = _through_sphere(server, ids["ct"], plane)
    low, high = _get(server, f"/viewer/api/series/{ids['pet']}/volume").json()["Range"]
    window = f"{high},{2 * (high - low)}"  # background black, the sphere half-way up "hot" (orange)
    fused, geometry = _reslice(
        server, ids["ct"], plane, position=position, overlay=ids["pet"], overlayWindow=window, opacity="0.6"
    )
    assert fused.ndim == 3 and fused.shape[2] == 3
    red = fused[..., 0].astype(int) - fused[..., 2].astype(int)
    rows, columns = np.nonzero(red > 0.6 * 255 * 0.25)
    assert len(rows), "no hot spot"
    hot = _patient(geometry, rows, columns).mean(axis=0)
    grey, _ = _reslice(server, ids["ct"], plane, position=position, window="100,2")
    rows, columns = np.nonzero(grey > 127)
    ct_sphere = _patient(geometry, rows, columns).mean(axis=0)
    spacing = geometry["PixelSpacing"]
    assert np.linalg.norm(ct_sphere - np.array(SHAPES.sphere_center)) <= spacing
    assert np.linalg.norm(hot - ct_sphere) <= 2 * spacing
    plain, _ = _reslice(server, ids["ct"], plane, position=position)
    assert np.array_equal(fused[0, 0], [plain[0, 0]] * 3)  # the background is below the window: not coloured
    layer = geometry["Layers"]["Overlay"]
    assert layer["ID"] == ids["pet"] and layer["Units"] == "SUVbw" and layer["Colormap"] == "hot"
    assert layer["Window"] == {"Center": pytest.approx(high), "Width": pytest.approx(2 * (high - low))}


def test_overlay_defaults_and_colormaps(server: ServerProcess, ids: dict[str, str]) -> None:
    position = _through_sphere(server, ids["ct"], "axial")
    volume = _get(server, f"/viewer/api/series/{ids['pet']}/volume").json()
    for colormap in ("hot", "pet", "jet", "grey"):
        picture, geometry = _reslice(
            server, ids["ct"], "axial", position=position, overlay=ids["pet"], colormap=colormap
        )
        assert picture.shape == (*reversed(geometry["Size"]), 3)
        layer = geometry["Layers"]["Overlay"]
        assert layer["Opacity"] == 0.5 and layer["Window"]["Center"] == volume["DefaultWindow"]["Center"]
    jpeg = _get(
        server, f"/viewer/api/series/{ids['ct']}/reslice/axial", overlay=ids["pet"], format="jpeg", position=position
    )
    assert Image.open(io.BytesIO(jpeg.content)).mode == "RGB"


def test_another_frame_of_reference_is_refused(server: ServerProcess, ids: dict[str, str]) -> None:
    path = f"/viewer/api/series/{ids['ct']}/reslice/axial"
    body = assert_orthanc_error(server.get(path, params={"overlay": ids["elsewhere"]}), 409)
    assert "frame of reference" in body["Details"]
    assert_orthanc_error(server.get(path, params={"rtdose": ids["otherdose"]}), 409)
    assert_orthanc_error(server.get(path, params={"overlay": "nope"}), 404)
    for params in (
        {"overlay": ids["pet"], "opacity": "1.5"},
        {"overlay": ids["pet"], "colormap": "rainbow"},
        {"overlay": ids["pet"], "overlayWindow": "3,0"},
        {"rtstruct": ids["rtstruct"], "rois": "9"},
        {"rtdose": ids["rtdose"], "isodoses": "ten"},
        {"rtstruct": ids["rtdose"]},
    ):
        assert_orthanc_error(server.get(path, params=params), 400)


# -- RT structures ----------------------------------------------------------------------------------------------


def test_rtstruct_json_matches_the_generator(server: ServerProcess, ids: dict[str, str]) -> None:
    ct_frame = _get(server, f"/viewer/api/series/{ids['ct']}/volume").json()["FrameOfReferenceUID"]
    found = _get(server, f"/viewer/api/instances/{ids['rtstruct']}/rtstruct").json()
    assert found["StructureSetLabel"] == "PHANTOM"
    assert [(r["Number"], r["Name"], r["Color"]) for r in found["ROIs"]] == [
        (1, "Sphere", list(COLORS.sphere)),
        (2, "Cube", list(COLORS.cube)),
    ]
    assert {r["FrameOfReferenceUID"] for r in found["ROIs"]} == {ct_frame}
    sphere = found["ROIs"][0]
    slices = [z for z in (CT.origin[2] + np.array(CT.offsets)) if abs(z - SHAPES.sphere_center[2]) < 10]
    assert sphere["ContourCount"] == len(sphere["Contours"]) == len(slices)
    for contour, z in zip(sphere["Contours"], slices, strict=True):
        points = np.array(contour["Points"])
        assert contour["GeometricType"] == "CLOSED_PLANAR" and points.shape == (72, 3)
        assert np.allclose(points[:, 2], z, atol=1e-3)
        radius = math.sqrt(100 - (z - SHAPES.sphere_center[2]) ** 2)
        assert np.allclose(np.linalg.norm(points - np.array(SHAPES.sphere_center), axis=1), 10, atol=1e-3)
        assert np.allclose(np.linalg.norm(points[:, :2] - SHAPES.sphere_center[:2], axis=1), radius, atol=1e-3)
    assert_orthanc_error(server.get(f"/viewer/api/instances/{ids['rtdose']}/rtstruct"), 400)
    assert_orthanc_error(server.get("/viewer/api/instances/nope/rtstruct"), 404)


def test_contours_outline_the_sphere_in_an_axial_plane(server: ServerProcess, ids: dict[str, str]) -> None:
    z = min(CT.origin[2] + np.array(CT.offsets), key=lambda z: abs(z - SHAPES.sphere_center[2]))
    radius = math.sqrt(100 - (z - SHAPES.sphere_center[2]) ** 2)
    picture, geometry = _reslice(server, ids["ct"], "axial", position=str(z), rtstruct=ids["rtstruct"])
    rows, columns = _colored(picture, COLORS.sphere)
    assert len(rows) > 2 * math.pi * radius / geometry["PixelSpacing"]  # a whole circle
    distance = np.linalg.norm(_patient(geometry, rows, columns)[:, :2] - SHAPES.sphere_center[:2], axis=1)
    assert np.abs(distance - radius).max() <= 2 * geometry["PixelSpacing"]
    grey, _ = _reslice(server, ids["ct"], "axial", position=str(z), window="100,2")
    inside = grey > 127  # the CT sphere's own disc: the contour is on its edge
    edge = inside ^ np.roll(inside, 1, 0) | inside ^ np.roll(inside, 1, 1)
    near = [edge[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3].any() for r, c in zip(rows, columns, strict=True)]
    assert all(near)
    (roi,) = [r for r in geometry["Layers"]["RtStruct"]["ROIs"] if r["Number"] == 1]
    assert len(roi["Polygons"]) == 1 and roi["Points"] == []


def test_contours_cross_a_coronal_plane_at_points(server: ServerProcess, ids: dict[str, str]) -> None:
    """A coronal plane through the sphere's centre meets each axial circle at x = centre ± its radius."""
    position = _through_sphere(server, ids["ct"], "coronal")
    picture, geometry = _reslice(server, ids["ct"], "coronal", position=position, rtstruct=ids["rtstruct"], rois="1")
    cx, _, cz = SHAPES.sphere_center
    slices = [z for z in (CT.origin[2] + np.array(CT.offsets)) if abs(z - cz) < 10]
    expected = np.array([(cx + side * math.sqrt(100 - (z - cz) ** 2), z) for z in slices for side in (-1, 1)])
    rows, columns = _colored(picture, COLORS.sphere)
    found = _patient(geometry, rows, columns)[:, [0, 2]]
    spacing = geometry["PixelSpacing"]
    nearest = np.linalg.norm(found[:, None] - expected[None], axis=2)
    assert nearest.min(axis=1).max() <= 2.5 * spacing  # every dot on an expected point (dots are 3 px)
    assert nearest.min(axis=0).max() <= 1.5 * spacing  # every expected point has its dot
    (roi,) = geometry["Layers"]["RtStruct"]["ROIs"]
    assert len(roi["Points"]) == len(expected) and len(roi["Segments"]) == len(slices)
    assert not _colored(picture, COLORS.cube)[0].size  # rois=1: the cube is left out


def test_rois_select_what_is_drawn(server: ServerProcess, ids: dict[str, str]) -> None:
    position = str(SHAPES.cube_center[2])
    everything, _ = _reslice(server, ids["ct"], "axial", position=position, rtstruct=ids["rtstruct"])
    sphere_only, _ = _reslice(server, ids["ct"], "axial", position=position, rtstruct=ids["rtstruct"], rois="1")
    assert _colored(everything, COLORS.cube)[0].size > 50 and not _colored(sphere_only, COLORS.cube)[0].size


# -- RT dose ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_isodose_lines_follow_the_analytic_dose(server: ServerProcess, ids: dict[str, str], plane: str) -> None:
    offset = 3.0  # off the dose centre: the circles shrink as the Gaussian says
    normal = np.array([0, 0, 1.0]) if plane == "axial" else np.array([0, 1.0, 0])
    position = str(float(np.array(DOSE.center) @ normal) + offset)
    picture, geometry = _reslice(
        server, ids["ct"], plane, position=position, rtdose=ids["rtdose"], isodoses="40,50%", lineWidth="1"
    )
    isodoses, highest = geometry["Layers"]["RtDose"]["Isodoses"], geometry["Layers"]["RtDose"]["Max"]
    assert highest == pytest.approx(DOSE.peak, rel=0.01)  # the grid's maximum, near the peak
    assert [i["Level"] for i in isodoses] == [40.0, pytest.approx(highest / 2)]  # 50% of the maximum
    for isodose in isodoses:
        rows, columns = _colored(picture, tuple(isodose["Color"]))
        points = _patient(geometry, rows, columns)
        radius = DOSE.radius(isodose["Level"], offset)
        assert len(rows) > 2 * math.pi * radius / geometry["PixelSpacing"] * 0.9
        in_plane = points - np.array(DOSE.center)
        in_plane -= np.outer(in_plane @ normal, normal)
        error = np.abs(np.linalg.norm(in_plane, axis=1) - radius)
        assert error.max() <= 2 * geometry["PixelSpacing"], isodose


def test_dose_wash_colours_the_dose(server: ServerProcess, ids: dict[str, str]) -> None:
    position = str(DOSE.center[2])
    picture, geometry = _reslice(
        server, ids["ct"], "axial", position=position, rtdose=ids["rtdose"], dosewash="1", doseOpacity="0.5"
    )
    coloured = ~((picture[..., 0] == picture[..., 1]) & (picture[..., 1] == picture[..., 2]))
    rows, columns = np.nonzero(coloured)
    distance = np.linalg.norm(_patient(geometry, rows, columns) - np.array(DOSE.center), axis=1)
    floor = 0.1 * geometry["Layers"]["RtDose"]["Max"]  # no isodose: the wash starts at 10% of the maximum
    assert distance.max() <= DOSE.radius(floor) + 2 * geometry["PixelSpacing"]
    assert coloured.sum() * geometry["PixelSpacing"] ** 2 >= 0.9 * math.pi * DOSE.radius(floor) ** 2 * 0.9
    assert geometry["Layers"]["RtDose"]["Wash"] is True


def test_all_layers_at_once(server: ServerProcess, ids: dict[str, str]) -> None:
    picture, geometry = _reslice(
        server,
        ids["ct"],
        "sagittal",
        position=_through_sphere(server, ids["ct"], "sagittal"),
        overlay=ids["pet"],
        rtstruct=ids["rtstruct"],
        rtdose=ids["rtdose"],
        isodoses="20",
        dosewash="1",
        slab="4",
    )
    assert picture.shape == (*reversed(geometry["Size"]), 3)
    assert set(geometry["Layers"]) == {"Overlay", "RtStruct", "RtDose"}
    values = _get(server, f"/viewer/api/series/{ids['ct']}/reslice/axial", overlay=ids["pet"], format="npy").content
    assert np.load(io.BytesIO(values)).ndim == 2  # the series' own values: layers are pictures only


# -- real data --------------------------------------------------------------------------------------------------


def test_real_rtstruct_spinal_cord_on_its_ct_slice(server: ServerProcess) -> None:
    """HierarchicalAnonymization/RTH: an RT-STRUCT of five ROIs and one CT slice its SpinalCord is drawn on."""
    folder = sample("HierarchicalAnonymization", "RTH")
    ct, structures = server.upload(folder / "CT01.dcm", folder / "RT.dcm")
    found = _get(server, f"/viewer/api/instances/{structures['ID']}/rtstruct").json()
    names = {r["Number"]: r["Name"] for r in found["ROIs"]}
    assert names == {1: "SpinalCord", 2: "Lung_R", 3: "Lung_L", 4: "Heart", 5: "Esophagus"}
    cord = found["ROIs"][0]
    assert cord["Color"] == [242, 202, 48] and cord["ContourCount"] == 104
    header = pydicom.dcmread(folder / "CT01.dcm", stop_before_pixels=True)
    (on_slice,) = [c for c in cord["Contours"] if c["ReferencedSOPInstanceUIDs"] == [header.SOPInstanceUID]]
    polygon = np.array(on_slice["Points"])
    assert np.allclose(polygon[:, 2], float(header.ImagePositionPatient[2]), atol=0.01)
    picture, geometry = _reslice(
        server, ct["ParentSeries"], "axial", rtstruct=structures["ID"], rois="1", lineWidth="1"
    )
    rows, columns = _colored(picture, (242, 202, 48))
    assert len(rows) > 50
    drawn = _patient(geometry, rows, columns)[:, None, :2]
    start, edge = polygon[:, :2], np.roll(polygon[:, :2], -1, axis=0) - polygon[:, :2]  # the closed outline's edges
    t = np.clip(np.sum((drawn - start) * edge, axis=2) / np.sum(edge * edge, axis=1), 0, 1)
    nearest = np.linalg.norm(drawn - (start + t[..., None] * edge), axis=2).min(axis=1)
    assert nearest.max() <= geometry["PixelSpacing"]
    (roi,) = geometry["Layers"]["RtStruct"]["ROIs"]
    assert roi["Name"] == "SpinalCord" and len(roi["Polygons"]) == 1
