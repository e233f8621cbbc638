"""The slide viewer (/wsi/app/viewer.html) in Debian's Chromium against a real server holding a slide made by
isengard-wsi-dicomizer: the tiles of the level that suits the zoom, the controls, the scale, and nothing fetched
from another origin; and the Explorer's link to it, on whole-slide series only.

The browser fixtures come from isengard.browser_testing (conftest.py): a page fails its test on an uncaught
exception or a Content-Security-Policy violation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from isengard.browser_testing import Traffic
from isengard.testing import ServerProcess, sample

DICOMIZER = str(Path(sys.executable).parent / "isengard-wsi-dicomizer")
#: 2000 x 420 in four levels (1000, 500, 250 wide) of 256-pixel tiles, 15 mm wide (the DICOMizer's default).
SLIDE_OPTIONS = ["--pyramid=1", "--levels=4", "--tile-width=256", "--tile-height=256"]
VIEWPORT = {"width": 1000, "height": 500}
TILE = re.compile(r"/wsi/tiles/([0-9a-f-]+)/(\d+)/(\d+)/(\d+)$")


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("slide")
    source = sample("WSI", "OrthancLogoJpeg.tiff")
    done = subprocess.run(
        [DICOMIZER, f"--folder={folder}", *SLIDE_OPTIONS, str(source)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return sorted(folder.glob("*.dcm"))


def tiles_asked(traffic: Traffic, series: str) -> set[tuple[int, int, int]]:
    """(level, x, y) of the tiles a page asked for."""
    found = (TILE.search(url) for url in traffic.urls)
    return {(int(m[2]), int(m[3]), int(m[4])) for m in found if m and m[1] == series}


def map_state(page: Any) -> tuple[int, list[int]]:
    """The level on screen and the part of the slide in view (left, top, right, bottom), as the page publishes them."""
    level, visible = page.eval_on_selector("#map", "m => [m.dataset.level, m.dataset.visible]")
    return int(level), [int(v) for v in visible.split(",")]


def wait_for_level(page: Any, level: int) -> None:
    page.wait_for_function("(l) => document.getElementById('map').dataset.level === l", arg=str(level))
    page.wait_for_load_state("networkidle")


def test_viewer_shows_the_slide_level_by_level(
    isengard: Callable[..., ServerProcess], slide: list[Path], browser_page: Any, screenshot: Any
) -> None:
    server = isengard()
    series = server.upload(*slide)[0]["ParentSeries"]
    pyramid = server.get(f"/wsi/pyramids/{series}").json()
    width, height = pyramid["TotalWidth"], pyramid["TotalHeight"]
    page = browser_page()
    page.set_viewport_size(VIEWPORT)
    traffic = Traffic(page)

    response = page.goto(f"{server.url}/wsi/app/viewer.html?series={series}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Fitted, the slide is drawn from the level whose resolution is nearest the window's
    fit = max(width / VIEWPORT["width"], height / VIEWPORT["height"])
    expected = min(range(len(pyramid["Resolutions"])), key=lambda i: abs(pyramid["Resolutions"][i] - fit))
    assert expected > 0
    page.wait_for_selector("#map[data-level]")
    page.wait_for_load_state("networkidle")
    level, visible = map_state(page)
    assert level == expected
    assert visible[0] <= 0 and visible[1] <= 0 and visible[2] >= width and visible[3] >= height
    columns, rows = pyramid["TilesCount"][expected]
    tiles = tiles_asked(traffic, series)
    assert {(x, y) for (lv, x, y) in tiles if lv == expected} == {(x, y) for x in range(columns) for y in range(rows)}
    assert min(lv for lv, _, _ in tiles) == expected  # nothing finer than needed (the overview asks coarser ones)
    # the slide is on the canvas: its centre pixel is the logo's grey, not the white around the slide
    red, green, blue, alpha = page.evaluate(
        """() => { const c = document.querySelector('#map .ol-layer canvas');
            return Array.from(c.getContext("2d").getImageData(c.width / 2, c.height / 2, 1, 1).data); }"""
    )
    assert alpha == 255 and max(red, green, blue) < 250, (red, green, blue)
    assert page.locator(".ol-overviewmap:not(.ol-collapsed) .ol-overviewmap-box").count() == 1
    assert re.fullmatch(r"\d+(\.\d+)? (μm|µm|mm)", page.inner_text(".ol-scale-line-inner"))
    screenshot(page, "viewer")
    fitted_scale = page.inner_text(".ol-scale-line-inner")

    # Zooming in goes down the pyramid to the scanner's pixels, and no further
    for target in range(expected - 1, -1, -1):
        page.click(".ol-zoom-in")
        wait_for_level(page, target)
        assert any(lv == target for lv, _, _ in tiles_asked(traffic, series))
    level, visible = map_state(page)
    assert visible[2] - visible[0] == VIEWPORT["width"]  # one slide pixel per screen pixel
    assert page.inner_text(".ol-scale-line-inner") != fitted_scale

    # Fit brings the whole slide back
    page.click(".ol-zoom-extent button")
    wait_for_level(page, expected)
    level, visible = map_state(page)
    assert visible[0] <= 0 and visible[1] <= 0 and visible[2] >= width and visible[3] >= height

    traffic.check(server.url)


def test_viewer_names_a_series_without_pyramid(isengard: Callable[..., ServerProcess], browser_page: Any) -> None:
    """A series that is not a slide: the page says so (the 404 of the pyramid is the only error)."""
    server = isengard()
    series = server.upload(sample("Phenix", "IM-0001-0001.dcm"))[0]["ParentSeries"]
    page = browser_page()
    page.goto(f"{server.url}/wsi/app/viewer.html?series={series}")
    page.wait_for_selector("#status.error")
    assert page.inner_text("#status").startswith(f"Series {series} has no whole-slide pyramid")
    assert server.get("/wsi/app/viewer.py").status_code == 404


def test_explorer_links_whole_slide_series_only(
    isengard: Callable[..., ServerProcess], slide: list[Path], browser_page: Any, tmp_path: Path
) -> None:
    server = isengard()
    wsi = server.upload(*slide)[0]["ParentSeries"]
    mr = server.upload(sample("Beaufix", "IM-0001-0001.dcm"))[0]["ParentSeries"]
    # a slide whose Modality is not SM: its SOP class says what it is
    ds = pydicom.dcmread(slide[-1])
    ds.Modality, ds.SeriesInstanceUID, ds.SOPInstanceUID = "OT", generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp_path / "other.dcm")
    other = server.upload(tmp_path / "other.dcm")[0]["ParentSeries"]
    assert "wsi" in server.get("/plugins").json()
    page = browser_page()
    page.set_viewport_size(VIEWPORT)

    for series in (wsi, other):
        page.goto(f"{server.url}/ui/#/series/{series}")
        link = page.get_by_role("link", name="Slide viewer")
        assert link.get_attribute("href") == f"../wsi/app/viewer.html?series={series}"
    with page.expect_popup() as popup:
        link.click()
    viewer = popup.value
    viewer.wait_for_selector("#map[data-level]")
    assert viewer.url == f"{server.url}/wsi/app/viewer.html?series={other}"

    page.goto(f"{server.url}/ui/#/series/{mr}")
    page.wait_for_selector("header.page-header h1")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("link", name="Slide viewer").count() == 0
