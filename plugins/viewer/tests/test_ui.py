"""The browser viewer (/viewer/) in Debian's Chromium against a real server holding the phantom CT, whose shapes
are at known patient positions: slices, window/level, lengths in mm and the MPR crosshair are checked against
them, and nothing may be fetched from another origin.

The browser fixtures come from isengard.browser_testing (conftest.py): a page fails its test on an uncaught
exception or a Content-Security-Policy violation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from isengard.browser_testing import Traffic
from isengard.testing import ServerProcess
from isengard_viewer import phantom
from isengard_viewer.phantom import Series

from .conftest import upload

CT = Series()  # 80 x 64 pixels of 0.7 x 0.8 mm (0.7 mm square once resliced), 40 axial slices 2 mm apart
SHAPES = phantom.shapes_for(CT)
PIXEL = min(CT.pixel_spacing)


@pytest.fixture(scope="module")
def ct(module_server: ServerProcess) -> tuple[ServerProcess, str]:
    return module_server, upload(module_server, phantom.ct_series(CT, SHAPES))["ParentSeries"]


def view(page: Any, plane: str) -> dict[str, str]:
    """What a view publishes: index, position, window, view (scale, x, y) and the last length."""
    return page.eval_on_selector(f'.viewport[data-plane="{plane}"]', "v => ({...v.dataset})")


def wait_for(page: Any, plane: str, key: str, value: str) -> None:
    page.wait_for_function(
        '([plane, key, value]) => document.querySelector(`.viewport[data-plane="${plane}"]`)?.dataset[key] === value',
        arg=[plane, key, value],
    )


def text(page: Any, plane: str, name: str) -> str:
    return page.inner_text(f'.viewport[data-plane="{plane}"] [data-field="{name}"]')


def screen_point(page: Any, plane: str, geometry: dict[str, Any], point: np.ndarray) -> tuple[float, float]:
    """Where a patient point is on the page, by the API's plane geometry and the view's published transform."""
    scale, x, y = (float(v) for v in view(page, plane)["view"].split(","))
    offset = point - np.array(geometry["Origin"])
    u = offset @ np.array(geometry["RowDirection"]) / geometry["PixelSpacing"] + 0.5
    v = offset @ np.array(geometry["ColumnDirection"]) / geometry["PixelSpacing"] + 0.5
    box = page.eval_on_selector(f'.viewport[data-plane="{plane}"] canvas', "c => c.getBoundingClientRect().toJSON()")
    return box["x"] + x + u * scale, box["y"] + y + v * scale


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()


def grey(page: Any, at: tuple[float, float]) -> int:
    """The canvas's red level at a page point."""
    return page.evaluate(
        """([x, y]) => { const c = document.elementFromPoint(x, y).closest('.stage').querySelector('canvas');
            const box = c.getBoundingClientRect(), r = window.devicePixelRatio;
            return c.getContext('2d').getImageData((x - box.x) * r, (y - box.y) * r, 1, 1).data[0]; }""",
        list(at),
    )


def geometry(server: ServerProcess, series: str, plane: str, **params: Any) -> dict[str, Any]:
    return server.get(f"/viewer/api/series/{series}/reslice/{plane}", params={"format": "json", **params}).json()


def open_viewer(page: Any, server: ServerProcess, series: str) -> None:
    response = page.goto(f"{server.url}/viewer/?series={series}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector('.viewport[data-plane="axial"][data-window]')


def show_mpr(page: Any) -> None:
    """The MPR 1x3 layout, once its three views are placed."""
    page.click('[data-layout="mpr"]')
    for plane in ("axial", "coronal", "sagittal"):
        page.wait_for_selector(f'.viewport[data-plane="{plane}"][data-position]')


def test_stack_scrolls_and_windows(ct: tuple[ServerProcess, str], browser_page: Callable, screenshot: Any) -> None:
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    first = view(page, "axial")
    assert first["index"] == "20" and float(first["position"]) == pytest.approx(-101.7 + 40.0, abs=1e-3)
    assert text(page, "axial", "slice") == "Slice 21 / 40"
    assert text(page, "axial", "patient") == "Phantom Geometry"
    assert text(page, "axial", "patientId") == "PHANTOM"
    assert text(page, "axial", "studyDate") == "2024-01-02"
    assert text(page, "axial", "window") == "W 400 L 40"
    markers = [page.inner_text(f'.viewport[data-plane="axial"] .marker.{side}') for side in ("left", "right", "top")]
    assert markers == ["R", "L", "A"]
    stage = page.eval_on_selector(".stage", "s => s.getBoundingClientRect().toJSON()")
    middle = (stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
    assert grey(page, middle) > 0  # the picture is drawn
    screenshot(page, "stack")

    # The wheel goes to the next slice (2 mm further), the arrow keys back
    page.mouse.move(*middle)
    page.mouse.wheel(0, 100)
    wait_for(page, "axial", "index", "21")
    assert float(view(page, "axial")["position"]) == pytest.approx(-101.7 + 42.0, abs=1e-3)
    assert text(page, "axial", "position") == "Position -59.7 mm"
    page.keyboard.press("ArrowUp")
    wait_for(page, "axial", "index", "20")
    # cine: the slices go by until paused
    page.click("#cine")
    page.wait_for_function("() => Number(document.querySelector('.viewport').dataset.index) >= 23")
    page.click("#cine")
    assert page.inner_text("#cine") == "Play"
    page.keyboard.press("Home")
    wait_for(page, "axial", "index", "0")
    page.keyboard.press("End")
    wait_for(page, "axial", "index", "39")
    page.fill('.viewport[data-plane="axial"] .slider', "20")
    wait_for(page, "axial", "index", "20")

    # A right-button drag changes the window: the overlay's numbers and the pixels (the sphere, 200 HU)
    before = grey(page, middle)
    page.mouse.move(*middle)
    page.mouse.down(button="right")
    page.mouse.move(middle[0] + 150, middle[1] + 60, steps=5)
    page.mouse.up(button="right")
    page.wait_for_load_state("networkidle")
    center, width = (float(v) for v in view(page, "axial")["window"].split(","))
    assert width > 400 and center > 40
    assert text(page, "axial", "window") == f"W {round(width, 1):g} L {round(center, 1):g}"
    page.wait_for_timeout(200)
    assert grey(page, middle) < before - 50
    # a preset, then invert
    page.select_option("#preset", "bone")
    wait_for(page, "axial", "window", "400,1800")
    page.wait_for_load_state("networkidle")
    before = grey(page, middle)
    page.click("#invert")
    assert grey(page, middle) == pytest.approx(255 - before, abs=2)
    traffic.check(server.url)


def test_length_in_mm(ct: tuple[ServerProcess, str], browser_page: Callable, screenshot: Any) -> None:
    """The cube is 14 mm wide: a line from one side to the other, on the slice through its centre."""
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    cube = np.array(SHAPES.cube_center)
    index = round((cube[2] - CT.origin[2]) / 2.0)
    page.fill('.viewport[data-plane="axial"] .slider', str(index))
    wait_for(page, "axial", "index", str(index))
    page.wait_for_load_state("networkidle")
    plane = geometry(server, series, "axial", index=index)
    half = SHAPES.cube_half_side
    start = screen_point(page, "axial", plane, cube + np.array([-half + PIXEL / 2, 0, 0]))
    end = screen_point(page, "axial", plane, cube + np.array([half - PIXEL / 2, 0, 0]))
    # inside the cube (-700 HU: black in the CT window) at both ends, background (0 HU: grey) just outside
    outside = screen_point(page, "axial", plane, cube + np.array([-half - 2 * PIXEL, 0, 0]))
    assert grey(page, start) < 20 and grey(page, end) < 20 and grey(page, outside) > 60
    page.click('[data-tool="measure"]')
    drag(page, start, end)
    length = float(view(page, "axial")["length"])
    assert length == pytest.approx(2 * half - PIXEL, abs=PIXEL)
    assert text(page, "axial", "length") == f"Length {length:.1f} mm"
    screenshot(page, "length")
    traffic.check(server.url)


def test_mpr_crosshair_follows_a_click(ct: tuple[ServerProcess, str], browser_page: Callable, screenshot: Any) -> None:
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    show_mpr(page)
    assert page.locator(".viewport").count() == 3
    page.wait_for_load_state("networkidle")
    axial = geometry(server, series, "axial", index=int(view(page, "axial")["index"]))
    sphere = np.array(SHAPES.sphere_center)
    target = np.array([sphere[0], sphere[1], axial["Position"]])  # on the axial plane shown
    page.mouse.click(*screen_point(page, "axial", axial, target))
    coronal_normal = np.array(geometry(server, series, "coronal")["Normal"])
    sagittal_normal = np.array(geometry(server, series, "sagittal")["Normal"])
    for plane, normal in (("coronal", coronal_normal), ("sagittal", sagittal_normal)):
        page.wait_for_function(
            '([p, v, tol]) => Math.abs(Number(document.querySelector(`.viewport[data-plane="${p}"]`)'
            ".dataset.position) - v) <= tol",
            arg=[plane, float(target @ normal), PIXEL / 2],
        )
    assert abs(float(view(page, "coronal")["position"])) == pytest.approx(abs(sphere[1]), abs=PIXEL)
    assert abs(float(view(page, "sagittal")["position"])) == pytest.approx(abs(sphere[0]), abs=PIXEL)
    page.wait_for_load_state("networkidle")
    # the other views show the sphere (200 HU: bright in the CT window) where their crosshair is
    for plane in ("coronal", "sagittal"):
        shown = geometry(server, series, plane, position=view(page, plane)["position"])
        assert grey(page, screen_point(page, plane, shown, target)) > 200
    screenshot(page, "mpr")
    traffic.check(server.url)


def test_series_without_geometry_is_a_stack(isengard: Callable[..., ServerProcess], browser_page: Callable) -> None:
    server = isengard()
    series = upload(server, phantom.ct_series(CT, SHAPES, geometry=False))["ParentSeries"]
    page = browser_page()
    page.goto(f"{server.url}/viewer/?series={series}")
    page.wait_for_selector('.viewport[data-plane="stack"][data-window]')
    assert "MissingGeometry" in page.inner_text("#status")
    assert text(page, "stack", "slice") == "Slice 21 / 40"
    page.click('[data-layout="mpr"]')
    page.wait_for_selector("#status.error")
    assert page.inner_text("#status").startswith("MPR is not available for this series: ")
    assert page.locator(".viewport").count() == 1


def test_study_lists_its_series_and_explorer_links(
    ct: tuple[ServerProcess, str], browser_page: Callable, screenshot: Any
) -> None:
    server, series = ct
    study = server.get(f"/series/{series}").json()["ParentStudy"]
    assert "viewer" in server.get("/plugins").json()
    page = browser_page()
    page.goto(f"{server.url}/ui/#/series/{series}")
    assert page.get_by_role("link", name="Viewer", exact=True).get_attribute("href") == f"../viewer/?series={series}"
    page.goto(f"{server.url}/ui/#/study/{study}")
    link = page.get_by_role("link", name="Viewer", exact=True)
    assert link.get_attribute("href") == f"../viewer/?study={study}"
    with page.expect_popup() as popup:
        link.click()
    viewer = popup.value
    viewer.wait_for_selector("#series-list a")
    assert viewer.url == f"{server.url}/viewer/?study={study}"
    viewer.click("#series-list a")
    viewer.wait_for_selector('.viewport[data-plane="axial"][data-window]')
    assert viewer.get_attribute("#series-list a", "aria-current") == "true"


def test_orthanc_web_viewer_address_redirects(ct: tuple[ServerProcess, str], browser_page: Callable) -> None:
    server, series = ct
    with server.client(follow_redirects=False) as client:
        response = client.get(f"/web-viewer/app/viewer.html?series={series}")
        assert response.status_code == 302
        assert response.headers["location"] == f"../../viewer/?series={series}"
        assert client.get("/viewer/nothing.js").status_code == 404
        response = client.get(f"/viewer?series={series}")
        assert response.status_code == 301 and response.headers["location"] == f"viewer/?series={series}"
    page = browser_page()
    page.goto(f"{server.url}/web-viewer/app/viewer.html?series={series}")
    page.wait_for_selector('.viewport[data-plane="axial"][data-window]')
    assert page.url == f"{server.url}/viewer/?series={series}"


def test_study_and_series_by_dicom_uid(ct: tuple[ServerProcess, str], browser_page: Callable) -> None:
    """?study=UID&series=UID, as a RIS or a worklist launches a viewer: the same series as by its id."""
    server, series = ct
    tags = server.get(f"/series/{series}").json()
    study_uid = server.get(f"/studies/{tags['ParentStudy']}").json()["MainDicomTags"]["StudyInstanceUID"]
    series_uid = tags["MainDicomTags"]["SeriesInstanceUID"]
    page = browser_page()
    page.goto(f"{server.url}/viewer/?study={study_uid}&series={series_uid}")
    page.wait_for_selector('.viewport[data-plane="axial"][data-window]')
    assert page.get_attribute('#series-list a[aria-current="true"]', "href") == (
        f"?study={tags['ParentStudy']}&series={series}"
    )
    page.goto(f"{server.url}/viewer/?series=1.2.3.4.5")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('1.2.3.4.5')")
    assert "Unknown series" in page.inner_text("#status")
