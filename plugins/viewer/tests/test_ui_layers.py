"""The browser viewer's layers (static/js/layers.js) in Debian's Chromium, against the phantom study: a CT, a PET
with a hot sphere on the CT's sphere, an RT Structure Set outlining the sphere and the cube, and a Gaussian RT
Dose centred on the sphere, all in one frame of reference. What the page draws is read back from its canvases at
patient points placed with the API's plane geometry (format=json) and the view's published transform.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from isengard.browser_testing import Traffic
from isengard.testing import ServerProcess
from isengard_viewer import phantom
from isengard_viewer.layers import ISODOSE_COLORS
from isengard_viewer.phantom import GaussianDose, PetDose, Series, StructureColors

from .conftest import PET, upload
from .test_ui import geometry, open_viewer, screen_point, show_mpr, view

CT = Series()
SHAPES = phantom.shapes_for(CT)
PET_SHAPES = replace(SHAPES, sphere_value=25000.0, cube_value=3000.0, background=3000.0)  # Bq/ml
DOSE_GRID = Series(
    rows=40, columns=48, pixel_spacing=(2.5, 2.5), offsets=tuple(2.5 * k for k in range(36)), origin=(-30, -16, -104)
)
COLORS = StructureColors()
PIXEL = min(CT.pixel_spacing)
SLICE_GAP = 2.0


@pytest.fixture(scope="module")
def study(module_server: ServerProcess) -> tuple[ServerProcess, dict[str, str]]:
    ct = phantom.ct_series(CT, SHAPES)
    return module_server, {
        "ct": upload(module_server, ct)["ParentSeries"],
        "pet": upload(module_server, phantom.pet_series(PET, PET_SHAPES, PetDose(), like=ct[0]))["ParentSeries"],
        "rtstruct": upload(module_server, [phantom.rt_structure_set(ct, SHAPES, colors=COLORS)])["ID"],
        "rtdose": upload(module_server, [phantom.rt_dose(DOSE_GRID, GaussianDose(center=SHAPES.sphere_center), ct[0])])[
            "ID"
        ],
    }


def rgb(page: Any, at: tuple[float, float]) -> tuple[int, int, int]:
    """The canvas's colour at a page point."""
    return tuple(
        page.evaluate(
            """([x, y]) => { const c = document.elementFromPoint(x, y).closest('.stage').querySelector('canvas');
                const box = c.getBoundingClientRect(), r = window.devicePixelRatio;
                const d = c.getContext('2d').getImageData((x - box.x) * r, (y - box.y) * r, 1, 1).data;
                return [d[0], d[1], d[2]]; }""",
            list(at),
        )
    )


def count(page: Any, plane: str, test: str) -> int:
    """How many pixels of a view's canvas satisfy ``test``, a JavaScript expression of r, g and b."""
    return page.evaluate(
        f"""(plane) => {{ const c = document.querySelector(`.viewport[data-plane="${{plane}}"] canvas`);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) {{ const r = d[i], g = d[i + 1], b = d[i + 2]; if ({test}) n += 1; }}
            return n; }}""",
        plane,
    )


TINTED = "Math.max(r, g, b) - Math.min(r, g, b) > 30"  # a line, or the wash at its 0.4 opacity
MAGENTA = "r > 180 && b > 180 && g < 80"  # the cube's ROIDisplayColor
GREEN = "g > 180 && r < 80 && b < 80"  # the sphere's


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll until check() is truthy: pictures arrive asynchronously after a control changes."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def show_slice(page: Any, z: float) -> None:
    index = round((z - CT.origin[2]) / SLICE_GAP)
    page.fill('.viewport[data-plane="axial"] .slider', str(index))
    page.wait_for_function("i => document.querySelector('.viewport').dataset.index === i", arg=str(index))
    page.wait_for_load_state("networkidle")


def open_layers(page: Any, server: ServerProcess, series: str) -> None:
    open_viewer(page, server, series)
    page.wait_for_selector("#layers[data-ready]")


def shown_geometry(page: Any, server: ServerProcess, series: str, plane: str) -> dict[str, Any]:
    return geometry(server, series, plane, position=view(page, plane)["position"])


def expected_suv() -> float:
    """The phantom's sphere in SUVbw (QIBA): Bq/ml x weight in g / the dose decayed to the scan."""
    dose = PetDose()
    decayed = dose.total_dose * 2 ** (-dose.decay_seconds / dose.half_life)
    return PET_SHAPES.sphere_value * dose.weight * 1000 / decayed


def test_fusion_colours_the_sphere_and_reads_its_suv(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable, screenshot: Any
) -> None:
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    fusion = page.eval_on_selector_all("#fusion option", "os => os.map(o => [o.value, o.textContent])")
    assert [value for value, _ in fusion] == ["", ids["pet"]] and fusion[1][1].startswith("PT ")
    assert fusion[1][1].endswith("(SUVbw)")
    sphere = np.array(SHAPES.sphere_center)
    show_slice(page, sphere[2])
    plane = shown_geometry(page, server, ids["ct"], "axial")
    at = screen_point(page, "axial", plane, np.array([*sphere[:2], plane["Position"]]))
    before = rgb(page, at)
    assert max(before) - min(before) <= 2 and before[0] > 150  # the CT's bright sphere, grey

    page.select_option("#colormap", "jet")
    page.fill("#opacity", "0.8")
    page.select_option("#fusion", ids["pet"])
    fused = eventually(lambda: (c := rgb(page, at)) != before and c)
    assert fused[0] - fused[2] > 60  # the top of jet (dark red) over the grey
    # the overlay's arguments are in the picture requests
    assert any(
        f"overlay={ids['pet']}" in url and "colormap=jet" in url and "opacity=0.8" in url for url in traffic.urls
    )

    page.mouse.move(*at)
    page.wait_for_selector('.viewport[data-plane="axial"][data-overlay-value]')
    value = float(view(page, "axial")["overlayValue"])
    assert value == pytest.approx(expected_suv(), rel=0.01)
    assert page.inner_text('.viewport [data-field="overlay-value"]') == f"PT {value:.2f} SUVbw"
    screenshot(page, "fusion")

    page.select_option("#fusion", "")
    eventually(lambda: rgb(page, at) == before)
    traffic.check(server.url)


def test_rois_hide_and_jump_to_their_centroid(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable
) -> None:
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    rois = page.eval_on_selector_all("#rois li", "items => items.map(i => [i.dataset.roi, i.innerText.trim()])")
    assert [(number, text.split("\n")[0].strip()) for number, text in rois] == [("1", "Sphere"), ("2", "Cube")]
    show_slice(page, SHAPES.cube_center[2])
    eventually(lambda: count(page, "axial", MAGENTA) > 100)  # the cube's outline, shown by default
    page.uncheck('#rois li[data-roi="2"] input')
    eventually(lambda: count(page, "axial", MAGENTA) == 0)
    page.check('#rois li[data-roi="2"] input')
    eventually(lambda: count(page, "axial", MAGENTA) > 100)

    page.click('#rois li[data-roi="1"] .jump')
    sphere_z = SHAPES.sphere_center[2]
    eventually(lambda: abs(float(view(page, "axial")["position"]) - sphere_z) <= SLICE_GAP)
    page.wait_for_load_state("networkidle")
    eventually(lambda: count(page, "axial", GREEN) > 100)  # the sphere's outline on that slice
    assert count(page, "axial", MAGENTA) == 0
    traffic.check(server.url)


def test_isodose_lines_and_wash_toggle(study: tuple[ServerProcess, dict[str, str]], browser_page: Callable) -> None:
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    assert not page.is_hidden("#dose-controls")
    page.select_option("#rtstruct", "")  # no contours: every colour is the dose's
    show_slice(page, SHAPES.sphere_center[2])
    eventually(lambda: count(page, "axial", TINTED) == 0)
    page.check("#isodoses")
    lines = eventually(lambda: count(page, "axial", TINTED))
    assert count(page, "axial", "r > 200 && g > 200 && b < 80") > 50  # yellow: the third level from the top (50%)
    page.check("#dosewash")
    washed = eventually(lambda: (n := count(page, "axial", TINTED)) > 2 * lines and n)
    page.uncheck("#isodoses")
    page.uncheck("#dosewash")
    eventually(lambda: count(page, "axial", TINTED) == 0)
    # levels in Gy: a single line, on the circle where the Gaussian is 30 Gy
    page.fill("#isodose-levels", "30")
    page.press("#isodose-levels", "Enter")
    page.check("#isodoses")
    single = eventually(lambda: count(page, "axial", TINTED))
    assert single < lines < washed
    assert any("isodoses=30&" in url or url.endswith("isodoses=30") for url in traffic.urls)
    page.fill("#isodose-levels", "ten")
    page.press("#isodose-levels", "Enter")
    assert page.get_attribute("#isodose-levels", "aria-invalid") == "true"
    traffic.check(server.url)


def test_mpr_views_carry_the_layers(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable, screenshot: Any
) -> None:
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    show_mpr(page)
    # jump to the cube: the three planes through its centroid (the square outlines' centre)
    page.click('#rois li[data-roi="2"] .jump')
    cube = np.array(SHAPES.cube_center)
    for plane, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        normal = np.array(geometry(server, ids["ct"], plane)["Normal"])
        expected = float(cube @ normal)
        tolerance = SLICE_GAP / 2 if axis == 2 else PIXEL / 2
        eventually(lambda p=plane, e=expected, t=tolerance: abs(float(view(page, p)["position"]) - e) <= t)
    page.wait_for_load_state("networkidle")
    for plane in ("coronal", "sagittal"):  # the cube's axial squares seen edge-on: lines across the plane
        eventually(lambda p=plane: count(page, p, MAGENTA) > 20)

    # the sphere's planes, then the PET and the isodoses in every view
    page.click('#rois li[data-roi="1"] .jump')
    sphere = np.array(SHAPES.sphere_center)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    probes = {}
    for plane in ("axial", "coronal", "sagittal"):
        shown = shown_geometry(page, server, ids["ct"], plane)
        off_crosshair = sphere + 3.0 * np.array(shown["RowDirection"]) + 3.0 * np.array(shown["ColumnDirection"])
        probes[plane] = screen_point(page, plane, shown, off_crosshair)
        assert max(rgb(page, probes[plane])) - min(rgb(page, probes[plane])) <= 2
    page.select_option("#colormap", "jet")
    page.select_option("#fusion", ids["pet"])
    page.check("#isodoses")
    for plane, at in probes.items():
        eventually(lambda a=at: (c := rgb(page, a)) and max(c) - min(c) > 60)
        eventually(lambda p=plane: count(page, p, "r > 200 && g > 200 && b < 80") > 20)  # the 50% isodose
    page.mouse.move(*probes["coronal"])
    page.wait_for_selector('.viewport[data-plane="coronal"][data-overlay-value]')
    assert float(view(page, "coronal")["overlayValue"]) > 0.5 * expected_suv()
    screenshot(page, "rt")
    traffic.check(server.url)


def test_no_layers_without_a_shared_frame_of_reference(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable
) -> None:
    """A PET of its own study and frame of reference: no panel takes room from the views."""
    server, _ = study
    series = upload(server, phantom.pet_series(PET, PET_SHAPES, PetDose()))["ParentSeries"]
    page = browser_page()
    open_viewer(page, server, series)
    page.wait_for_selector("#layers[data-ready]", state="attached")
    assert page.is_hidden("#layers")


def signature(page: Any, plane: str) -> int:
    """A hash of a view's canvas: equal for equal pictures drawn the same way."""
    return page.evaluate(
        """(plane) => { const c = document.querySelector(`.viewport[data-plane="${plane}"] canvas`);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let h = 2166136261;
            for (let i = 0; i < d.length; i += 1) h = Math.imul(h ^ d[i], 16777619) >>> 0;
            return h; }""",
        plane,
    )


def set_field(page: Any, selector: str, value: str) -> None:
    page.fill(selector, value)
    page.press(selector, "Enter")


def test_overlay_window_bounds_the_colour(study: tuple[ServerProcess, dict[str, str]], browser_page: Callable) -> None:
    """Below the lower bound nothing is coloured: from under the PET's background, all of the plane within the PET
    is; between the background and the sphere, the sphere's disc; above the sphere, nothing."""
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    page.select_option("#rtstruct", "")  # no contours: every colour is the overlay's
    show_slice(page, SHAPES.sphere_center[2])
    assert page.is_hidden("#overlay-window")
    page.select_option("#colormap", "jet")  # tinted from its lowest colour (dark blue) up
    page.fill("#opacity", "0.8")
    page.select_option("#fusion", ids["pet"])
    default = server.get(f"/viewer/api/series/{ids['pet']}/volume").json()["DefaultWindow"]
    low, high = (float(page.input_value(f"#overlay-{bound}")) for bound in ("low", "high"))
    assert low == pytest.approx(default["Center"] - default["Width"] / 2, rel=1e-3, abs=1e-3)
    assert high == pytest.approx(default["Center"] + default["Width"] / 2, rel=1e-3)
    assert page.inner_text("#overlay-units") == "SUVbw"
    by_default = eventually(lambda: count(page, "axial", TINTED))  # the background is at its lower bound

    sphere = expected_suv()
    background = sphere * PET_SHAPES.background / PET_SHAPES.sphere_value
    set_field(page, "#overlay-low", "0")
    set_field(page, "#overlay-high", f"{sphere:.3f}")
    everything = eventually(lambda: (n := count(page, "axial", TINTED)) > by_default and n)
    set_field(page, "#overlay-low", f"{(background + sphere) / 2:.3f}")
    disc = eventually(lambda: (n := count(page, "axial", TINTED)) < everything and n)
    set_field(page, "#overlay-low", f"{1.1 * sphere:.3f}")
    set_field(page, "#overlay-high", f"{1.2 * sphere:.3f}")
    eventually(lambda: count(page, "axial", TINTED) == 0)
    shown = shown_geometry(page, server, ids["ct"], "axial")
    depth = shown["Position"] - SHAPES.sphere_center[2]
    disc_area = np.pi * (SHAPES.sphere_radius**2 - depth**2)
    plane_area = (CT.columns * CT.pixel_spacing[1]) * (CT.rows * CT.pixel_spacing[0])
    assert disc / everything == pytest.approx(disc_area / plane_area, rel=0.15)  # measured 0.103 for 0.1095

    set_field(page, "#overlay-low", "3")
    set_field(page, "#overlay-high", "2")  # not a window: marked, and not sent
    assert page.get_attribute("#overlay-low", "aria-invalid") == "true"
    sent = [
        tuple(float(v) for v in parse_qs(urlsplit(url).query)["overlayWindow"][0].split(","))
        for url in traffic.urls
        if "overlayWindow=" in url
    ]
    assert all(width > 0 for _, width in sent)
    low = float(f"{(background + sphere) / 2:.3f}")
    high = float(f"{sphere:.3f}")
    assert any(c == pytest.approx((low + high) / 2) and w == pytest.approx(high - low) for c, w in sent)
    traffic.check(server.url)


def legend(page: Any) -> list[tuple[str, tuple[int, int, int]]]:
    """The isodose legend's lines: text and swatch colour."""
    return [
        (text, tuple(color))
        for text, color in page.eval_on_selector_all(
            "#isodose-legend:not([hidden]) li",
            """items => items.map(i => [i.innerText.trim(),
                Array.from(i.querySelector('canvas').getContext('2d').getImageData(6, 6, 1, 1).data.slice(0, 3))])""",
        )
    ]


def short(value: float) -> str:
    """A number as the legend writes it: one decimal, none when it is 0."""
    return f"{value:.1f}".removesuffix(".0")


def api_legend(server: ServerProcess, ids: dict[str, str], **args: str) -> list[tuple[str, tuple[int, int, int]]]:
    """What the legend should say: the API's isodoses for the same dose arguments (format=json)."""
    params = {"format": "json", "rtdose": ids["rtdose"], **args}
    isodoses = server.get(f"/viewer/api/series/{ids['ct']}/reslice/axial", params=params).json()["Layers"]["RtDose"]
    return [(f"{short(i['Level'])} Gy ({short(i['Percent'])}%)", tuple(i["Color"])) for i in isodoses["Isodoses"]]


def test_isodose_legend_follows_the_levels(study: tuple[ServerProcess, dict[str, str]], browser_page: Callable) -> None:
    """The legend is the API's isodoses (format=json, same arguments): colour, Gy and % of the reference."""
    server, ids = study
    page = browser_page()
    open_layers(page, server, ids["ct"])
    assert page.is_hidden("#isodose-legend")
    page.check("#isodoses")
    expected = api_legend(server, ids, isodoses="95%,80%,50%,20%")
    eventually(lambda: legend(page) == expected)
    maximum = server.get(
        f"/viewer/api/series/{ids['ct']}/reslice/axial", params={"format": "json", "rtdose": ids["rtdose"]}
    ).json()["Layers"]["RtDose"]["Max"]
    assert expected[0][0] == f"{short(0.95 * maximum)} Gy (95%)"
    assert [color for _, color in expected] == list(ISODOSE_COLORS[:4])  # from the highest level down
    set_field(page, "#isodose-levels", "30, 10")
    eventually(lambda: legend(page) == api_legend(server, ids, isodoses="30,10"))
    assert len(legend(page)) == 2
    page.uncheck("#isodoses")
    eventually(lambda: page.is_hidden("#isodose-legend"))


def test_prescription_scales_percent_levels(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable
) -> None:
    """50% of a 60 Gy reference is the 30 Gy line: the same picture as the level 30 Gy."""
    server, ids = study
    page = browser_page()
    traffic = Traffic(page)
    open_layers(page, server, ids["ct"])
    page.select_option("#rtstruct", "")
    show_slice(page, SHAPES.sphere_center[2])
    set_field(page, "#isodose-levels", "30")
    page.check("#isodoses")
    eventually(lambda: count(page, "axial", TINTED) > 0)
    page.wait_for_load_state("networkidle")
    in_gy = signature(page, "axial")
    eventually(lambda: legend(page) == api_legend(server, ids, isodoses="30"))
    set_field(page, "#isodose-levels", "50%")
    eventually(lambda: signature(page, "axial") != in_gy)  # 50% of the grid's maximum (below 60 Gy)
    set_field(page, "#prescription", "60")
    eventually(lambda: signature(page, "axial") == in_gy)
    eventually(lambda: legend(page) == [("30 Gy (50%)", (255, 0, 0))])
    for wrong in ("0", "sixty", "-5"):
        set_field(page, "#prescription", wrong)
        assert page.get_attribute("#prescription", "aria-invalid") == "true"
    assert not any("prescription=0" in url or "prescription=-" in url or "sixty" in url for url in traffic.urls)
    set_field(page, "#prescription", "")  # the grid's maximum again
    assert page.get_attribute("#prescription", "aria-invalid") == "false"
    eventually(lambda: legend(page) == api_legend(server, ids, isodoses="50%"))
    traffic.check(server.url)


def test_a_listed_series_goes_into_the_active_grid_cell(
    study: tuple[ServerProcess, dict[str, str]], browser_page: Callable
) -> None:
    """In 1x2 (the CT, then the PET) a click in the series list fills the active cell, without leaving the page;
    an RT object, which has no volume, is refused and the cells stay."""
    server, ids = study
    page = browser_page()
    open_viewer(page, server, ids["ct"])
    page.click('[data-layout="1x2"]')
    page.wait_for_function("() => document.querySelectorAll('.viewport[data-window]').length === 2")
    address = page.url
    page.evaluate("() => (window.stayed = true)")
    cells = lambda: page.eval_on_selector_all(".viewport", "vs => vs.map(v => v.dataset.series)")  # noqa: E731
    assert cells() == [ids["ct"], ids["pet"]]
    page.focus(".viewport >> nth=0")
    page.click(f'#series-list a[href*="{ids["pet"]}"]')
    eventually(lambda: cells() == [ids["pet"], ids["pet"]])
    page.wait_for_function("() => document.querySelectorAll('.viewport[data-window]').length === 2")
    assert page.get_attribute(".viewport >> nth=0", "class") == "viewport active"
    page.focus(".viewport >> nth=1")
    page.click(f'#series-list a[href*="{ids["ct"]}"]')
    eventually(lambda: cells() == [ids["pet"], ids["ct"]])
    rtstruct = server.get(f"/instances/{ids['rtstruct']}").json()["ParentSeries"]
    page.click(f'#series-list a[href*="{rtstruct}"]')
    page.wait_for_selector("#status.error")
    assert "cannot be shown in a cell" in page.inner_text("#status")
    assert cells() == [ids["pet"], ids["ct"]]
    assert page.url == address and page.evaluate("() => window.stayed")
