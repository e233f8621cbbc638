"""The browser viewer's measuring tools, layouts and slab (/viewer/, static/js/tools.js and layout.js) in Chromium,
against a study holding the phantom CT and a PET in its frame of reference: angles, ROI areas and statistics and
probe values are checked against the phantom's known shapes and values, measurements against the views that show
them, the 2x2 grid against the study's series, and a MIP slab against the sphere it reaches."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from isengard.browser_testing import Traffic
from isengard.testing import ServerProcess
from isengard_viewer import phantom

from .conftest import PET, upload
from .test_ui import CT, PIXEL, SHAPES, drag, geometry, grey, open_viewer, screen_point, show_mpr, text, view, wait_for

SPHERE = np.array(SHAPES.sphere_center)
CUBE = np.array(SHAPES.cube_center)


def axial_index(z: float) -> int:
    """The CT slice nearest a z coordinate (slices 2 mm apart)."""
    return round((z - CT.origin[2]) / 2.0)


@pytest.fixture(scope="module")
def study(module_server: ServerProcess) -> tuple[ServerProcess, str, str]:
    """The phantom CT and a PET of the same study and frame of reference: the server, the CT and the PET series."""
    ct = phantom.ct_series(CT, SHAPES)
    ct_series = upload(module_server, ct)["ParentSeries"]
    pet_shapes = replace(SHAPES, sphere_value=25000.0, cube_value=3000.0, background=3000.0)  # Bq/ml
    pet = phantom.pet_series(PET, pet_shapes, phantom.PetDose(), like=ct[0])
    return module_server, ct_series, upload(module_server, pet)["ParentSeries"]


def go_to(page: Any, plane: str, index: int) -> None:
    page.fill(f'.viewport[data-plane="{plane}"] .slider', str(index))
    wait_for(page, plane, "index", str(index))
    page.wait_for_load_state("networkidle")


def published(page: Any, plane: str, key: str) -> str:
    """A value the view publishes, once it has one (ROI statistics and probes wait for the server)."""
    page.wait_for_function(
        '([p, k]) => document.querySelector(`.viewport[data-plane="${p}"]`)?.dataset[k] !== undefined', arg=[plane, key]
    )
    return view(page, plane)[key]


def roi(page: Any) -> dict[str, Any]:
    """The last ROI of the (first) view, once its statistics have come (the plane's values are fetched)."""
    page.wait_for_function("() => document.querySelector('.viewport').dataset.roi?.includes('mean')")
    return json.loads(view(page, "axial")["roi"])


def wait_grey(page: Any, at: tuple[float, float], low: int, high: int, timeout: float = 15.0) -> None:
    """Until the canvas's red level at a page point is within [low, high] (a slab takes the server a while)."""
    deadline = time.monotonic() + timeout
    while not low <= (level := grey(page, at)) <= high:
        assert time.monotonic() < deadline, f"red level {level} at {at}, not in [{low}, {high}]"
        page.wait_for_timeout(50)


def test_angle_rois_and_probe(study: tuple[ServerProcess, str, str], browser_page: Callable, screenshot: Any) -> None:
    server, series, _ = study
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)

    # A rectangle 10 x 10 mm inside the cube (-700 HU): its area, the cube's value, no spread
    index = axial_index(CUBE[2])
    go_to(page, "axial", index)
    plane = geometry(server, series, "axial", index=index)

    def at(point: np.ndarray, dx: float, dy: float) -> tuple[float, float]:
        """On the page: a point of the axial plane shown, dx, dy mm from a shape's centre."""
        return screen_point(page, "axial", plane, point + np.array([dx, dy, 0.0]))

    page.click('[data-tool="rectangle"]')
    drag(page, at(CUBE, -5, -5), at(CUBE, 5, 5))
    rectangle = roi(page)
    assert rectangle["kind"] == "rectangle" and rectangle["area"] == pytest.approx(100.0, rel=0.05)
    assert rectangle["mean"] == pytest.approx(SHAPES.cube_value, abs=0.5) and rectangle["sd"] < 0.5
    assert rectangle["units"] == "HU" and rectangle["count"] > 150  # 0.7 mm pixels: about 204 in 100 mm²
    assert text(page, "axial", "length") == f"Rectangle {rectangle['area']:.1f} mm² · mean -700.0 · SD 0.0 HU"

    # On the sphere's slice: an ellipse of half-axes 6 and 3 mm inside it (200 HU), then a probe at its centre
    index = axial_index(SPHERE[2])
    go_to(page, "axial", index)
    assert "roi" not in view(page, "axial")  # the rectangle is on another slice
    plane = geometry(server, series, "axial", index=index)
    page.click('[data-tool="ellipse"]')
    drag(page, at(SPHERE, -6, -3), at(SPHERE, 6, 3))
    ellipse = roi(page)
    assert ellipse["kind"] == "ellipse" and ellipse["area"] == pytest.approx(np.pi * 6 * 3, rel=0.05)
    assert ellipse["mean"] == pytest.approx(SHAPES.sphere_value, abs=0.5) and ellipse["sd"] < 0.5
    page.click('[data-tool="probe"]')
    page.mouse.click(*at(SPHERE, 0, 0))
    assert float(published(page, "axial", "probe")) == pytest.approx(SHAPES.sphere_value, abs=0.5)
    assert text(page, "axial", "length") == "Value 200.0 HU"

    # Angles: three clicks (end, vertex, end), then a drag to the vertex and a click
    page.click('[data-tool="angle"]')
    vertex = SPHERE + np.array([-14.0, 12.0, 0.0])
    for dx, dy in ((12, 0), (0, 0), (0, -12)):
        page.mouse.click(*at(vertex, dx, dy))
    angle = float(published(page, "axial", "angle"))
    assert angle == pytest.approx(90.0, abs=1.0)
    assert text(page, "axial", "length") == f"Angle {angle:.1f}°"
    vertex = SPHERE + np.array([10.0, 12.0, 0.0])
    drag(page, at(vertex, -10, 0), at(vertex, 0, 0))
    page.mouse.click(*at(vertex, 8, -8))
    page.wait_for_function("() => Number(document.querySelector('.viewport').dataset.angle) > 100")
    assert float(view(page, "axial")["angle"]) == pytest.approx(135.0, abs=1.0)
    screenshot(page, "tools")
    traffic.check(server.url)


def test_length_in_the_stack_shows_in_mpr(study: tuple[ServerProcess, str, str], browser_page: Callable) -> None:
    """Measurements are patient points: the MPR axial view on the same slice draws the stack's length, and the MPR
    views draw each other's planes."""
    server, series, _ = study
    page = browser_page()
    open_viewer(page, server, series)
    index = axial_index(CUBE[2])
    go_to(page, "axial", index)
    plane = geometry(server, series, "axial", index=index)
    half = SHAPES.cube_half_side
    page.click('[data-tool="measure"]')
    drag(
        page,
        screen_point(page, "axial", plane, CUBE + np.array([-half, 0, 0])),
        screen_point(page, "axial", plane, CUBE + np.array([half, 0, 0])),
    )
    length = float(view(page, "axial")["length"])
    assert length == pytest.approx(2 * half, abs=PIXEL)
    show_mpr(page)
    assert "length" not in view(page, "axial")  # the middle slice: not the cube's
    go_to(page, "axial", index)
    assert float(view(page, "axial")["length"]) == pytest.approx(length, abs=1e-6)
    assert text(page, "axial", "length") == f"Length {length:.1f} mm"
    for plane, others in (("axial", "coronal,sagittal"), ("coronal", "axial,sagittal"), ("sagittal", "axial,coronal")):
        wait_for(page, plane, "references", others)
    page.click("#clear-measurements")
    page.wait_for_function("() => !('length' in document.querySelector('.viewport[data-plane=\"axial\"]').dataset)")
    assert text(page, "axial", "length") == ""


def test_layouts_show_the_studys_series(
    study: tuple[ServerProcess, str, str], browser_page: Callable, screenshot: Any
) -> None:
    """1x2: the CT and the PET; 2x2: those and the CT again at two other slices."""
    server, series, pet = study
    page = browser_page()
    open_viewer(page, server, series)
    page.click('[data-layout="1x2"]')
    page.wait_for_function("() => document.querySelectorAll('.viewport[data-window]').length === 2")
    shown = page.eval_on_selector_all(".viewport", "vs => vs.map(v => v.dataset.series)")
    assert shown == [series, pet]
    page.click('[data-layout="2x2"]')
    page.wait_for_function("() => document.querySelectorAll('.viewport[data-window]').length === 4")
    views = page.eval_on_selector_all(".viewport", "vs => vs.map(v => ({...v.dataset}))")
    assert [v["series"] for v in views] == [series, pet, series, series]
    assert [v["index"] for v in views if v["series"] == series] == ["10", "20", "29"]  # 39 slices in quarters
    boxes = page.eval_on_selector_all(".viewport", "vs => vs.map(v => v.getBoundingClientRect().toJSON())")
    assert len({round(b["x"]) for b in boxes}) == 2 and len({round(b["y"]) for b in boxes}) == 2
    assert page.get_attribute('[data-layout="2x2"]', "aria-pressed") == "true"
    page.fill(f'.viewport[data-series="{pet}"] .slider', "13")  # the PET's slice through the sphere
    page.wait_for_function(f"() => document.querySelector('.viewport[data-series=\"{pet}\"]').dataset.index === '13'")
    screenshot(page, "layout")
    page.click('[data-layout="stack"]')
    page.wait_for_function("() => document.querySelectorAll('.viewport').length === 1")


def test_slab_mip_reaches_the_sphere(study: tuple[ServerProcess, str, str], browser_page: Callable) -> None:
    """An axial plane 11.8 mm above the sphere's centre (radius 10 mm) misses it; a 10 mm MIP slab shows it."""
    server, series, _ = study
    page = browser_page()
    open_viewer(page, server, series)
    show_mpr(page)
    index = axial_index(SPHERE[2]) + 6
    go_to(page, "axial", index)
    plane = geometry(server, series, "axial", index=index)
    assert plane["Position"] - SPHERE[2] == pytest.approx(11.8, abs=0.01)
    point = screen_point(page, "axial", plane, SPHERE)
    wait_grey(page, point, 0, 120)  # background, 0 HU
    with page.expect_response(lambda r: "slab=10" in r.url and "mode=mip" in r.url):
        page.fill("#slab", "10")
        page.dispatch_event("#slab", "change")
    wait_grey(page, point, 200, 255)  # the sphere's 200 HU
    page.fill("#slab", "0")
    page.dispatch_event("#slab", "change")
    wait_grey(page, point, 0, 120)


def test_rotation_turns_coronal_and_sagittal_about_the_crosshair(
    study: tuple[ServerProcess, str, str], browser_page: Callable
) -> None:
    """With the crosshair on the sphere, a 90° turn about the head-feet axis makes the coronal view a sagittal
    plane through it (anterior on the left) and the sagittal view a coronal one; the crosshair stays."""
    server, series, _ = study
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    show_mpr(page)
    index = axial_index(SPHERE[2])
    go_to(page, "axial", index)
    plane = geometry(server, series, "axial", index=index)
    page.mouse.click(*screen_point(page, "axial", plane, SPHERE))
    with page.expect_response(lambda r: "/reslice/oblique?" in r.url):
        page.fill("#rotate", "90")
        page.dispatch_event("#rotate", "change")
    sides = (
        "['left', 'right'].map(s => document.querySelector(`.viewport[data-plane='${p}'] .marker.${s}`).textContent)"
    )
    for name, expected in (("coronal", "A,P"), ("sagittal", "R,L")):  # were R/L and A/P
        page.wait_for_function(f"([p, e]) => {sides}.join() === e", arg=[name, expected])
    # turned normals: coronal +y -> -x, sagittal +x -> +y; each plane goes through the crosshair
    page.wait_for_function("() => document.querySelector('.viewport[data-plane=\"sagittal\"]').dataset.references")
    assert float(view(page, "coronal")["position"]) == pytest.approx(-SPHERE[0], abs=PIXEL)
    assert float(view(page, "sagittal")["position"]) == pytest.approx(SPHERE[1], abs=PIXEL)
    assert float(view(page, "axial")["position"]) == pytest.approx(plane["Position"], abs=1e-3)
    wait_for(page, "axial", "references", "coronal,sagittal")
    traffic.check(server.url)
