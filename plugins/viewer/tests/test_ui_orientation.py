"""Rotating and flipping the browser viewer's views (static/js/viewport.js) in Chromium, on the phantom CT: the
orientation letters name the patient side at each edge, the sphere moves on screen as the view turns (canvas
pixels), a length drawn on a turned view still measures the cube in mm, and a click on a flipped MPR view puts
the crosshair at the patient point under the pointer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from isengard.browser_testing import Traffic
from isengard.testing import ServerProcess

from .test_ui import CT, PIXEL, SHAPES, ct, drag, geometry, grey, open_viewer, screen_point, show_mpr, view, wait_for

__all__ = ["ct"]  # the module's fixture, shared with test_ui

SPHERE = np.array(SHAPES.sphere_center)
CUBE = np.array(SHAPES.cube_center)
SIDES = ("left", "right", "top", "bottom")
BRIGHT = 200  # the sphere's 200 HU in the CT window (W 400 L 40); the background's 0 HU is about 100


def on_page(page: Any, plane: str, shown: dict[str, Any], point: np.ndarray) -> tuple[float, float]:
    """Where a patient point is on the page, by the API's plane geometry and the view's published data-transform
    (x = a·u + c·v + e, y = b·u + d·v + f), which holds for turned views too."""
    a, b, c, d, e, f = (float(v) for v in view(page, plane)["transform"].split(","))
    offset = point - np.array(shown["Origin"])
    u = offset @ np.array(shown["RowDirection"]) / shown["PixelSpacing"] + 0.5
    v = offset @ np.array(shown["ColumnDirection"]) / shown["PixelSpacing"] + 0.5
    box = page.eval_on_selector(f'.viewport[data-plane="{plane}"] canvas', "c => c.getBoundingClientRect().toJSON()")
    return box["x"] + a * u + c * v + e, box["y"] + b * u + d * v + f


def markers(page: Any, plane: str) -> list[str]:
    return [page.inner_text(f'.viewport[data-plane="{plane}"] .marker.{side}') for side in SIDES]


def centre(page: Any, plane: str) -> tuple[float, float]:
    box = page.eval_on_selector(f'.viewport[data-plane="{plane}"] canvas', "c => c.getBoundingClientRect().toJSON()")
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def scale_of(page: Any, plane: str) -> float:
    """Screen px per picture pixel (data-view's first number)."""
    return float(view(page, plane)["view"].split(",")[0])


def turn(page: Any, plane: str, how: str, rotation: str, flip: str) -> None:
    """A toolbar button on the active view, until the view publishes the orientation it leads to."""
    page.click(f'[data-turn="{how}"]')
    wait_for(page, plane, "rotation", rotation)
    wait_for(page, plane, "flip", flip)


def show_axial(page: Any, server: ServerProcess, series: str, z: float) -> dict[str, Any]:
    """The stack at the slice nearest z (slices 2 mm apart); its geometry."""
    index = round((z - CT.origin[2]) / 2.0)
    page.fill('.viewport[data-plane="axial"] .slider', str(index))
    wait_for(page, "axial", "index", str(index))
    page.wait_for_load_state("networkidle")
    return geometry(server, series, "axial", index=index)


def close(a: tuple[float, float], b: tuple[float, float], tolerance: float = 0.5) -> bool:
    return bool(np.hypot(a[0] - b[0], a[1] - b[1]) <= tolerance)


def test_flip_and_rotate_move_the_letters_and_the_sphere(
    ct: tuple[ServerProcess, str], browser_page: Callable, screenshot: Any
) -> None:
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    plane = show_axial(page, server, series, SPHERE[2])
    assert markers(page, "axial") == ["R", "L", "A", "P"]
    assert (view(page, "axial")["rotation"], view(page, "axial")["flip"]) == ("0", "none")
    inside = SPHERE + np.array([7.0, 0, 0])  # in the sphere, on its side away from the view's centre
    points = (("sphere", SPHERE), ("inside", inside))
    before = {name: screen_point(page, "axial", plane, p) for name, p in points}
    assert all(close(before[name], on_page(page, "axial", plane, p)) for name, p in points)
    assert all(grey(page, at) > BRIGHT for at in before.values())
    cx, cy = centre(page, "axial")

    # Flip H: R and L swap, the sphere is mirrored about the view's centre, where it was is background now; the
    # canvas draws the picture it has (no request)
    asked = len(traffic.urls)
    turn(page, "axial", "h", "0", "h")
    assert len(traffic.urls) == asked
    assert markers(page, "axial") == ["L", "R", "A", "P"]
    for name, p in points:
        mirrored = (2 * cx - before[name][0], before[name][1])
        assert close(on_page(page, "axial", plane, p), mirrored)
        assert grey(page, mirrored) > BRIGHT
    assert grey(page, before["inside"]) < 150
    turn(page, "axial", "h", "0", "none")  # back
    assert markers(page, "axial") == ["R", "L", "A", "P"]

    # Rotate right (clockwise): the left edge's letter goes to the top, the sphere turns about the centre (and the
    # picture, its sides swapped, fits the view at another scale)
    unturned = scale_of(page, "axial")
    turn(page, "axial", "right", "90", "none")
    assert markers(page, "axial") == ["P", "A", "R", "L"]
    k = scale_of(page, "axial") / unturned
    for name, p in points:
        x, y = before[name]
        turned = (cx - k * (y - cy), cy + k * (x - cx))
        assert close(on_page(page, "axial", plane, p), turned)
        assert grey(page, turned) > BRIGHT
    # the turned picture fits: its columns run down the view, its rows across
    across, down = page.eval_on_selector('.viewport[data-plane="axial"] .stage', "s => [s.clientWidth, s.clientHeight]")
    width, height = plane["Size"]
    scale = scale_of(page, "axial")
    assert scale == pytest.approx(min(across / height, down / width), rel=1e-6)

    # ctrl+wheel zooms about the pointer on the turned view: the sphere's centre stays under it
    at = on_page(page, "axial", plane, SPHERE)
    page.mouse.move(*at)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_function("s => Number(document.querySelector('.viewport').dataset.view.split(',')[0]) > s", arg=scale)
    assert close(on_page(page, "axial", plane, SPHERE), at)
    # Fit: back to the whole turned picture, still turned; rotate left undoes the turn
    page.click("#fit")
    assert scale_of(page, "axial") == pytest.approx(scale, rel=1e-6)
    assert markers(page, "axial") == ["P", "A", "R", "L"]
    turn(page, "axial", "left", "0", "none")
    assert markers(page, "axial") == ["R", "L", "A", "P"]
    assert close(on_page(page, "axial", plane, SPHERE), before["sphere"])

    # Flip V: A and P swap; a half turn then is the same as flip H
    turn(page, "axial", "v", "0", "v")
    assert markers(page, "axial") == ["R", "L", "P", "A"]
    turn(page, "axial", "right", "90", "v")
    turn(page, "axial", "right", "0", "h")
    assert markers(page, "axial") == ["L", "R", "A", "P"]
    screenshot(page, "flipped")

    # a new layout starts unturned
    page.click('[data-layout="stack"]')
    page.wait_for_function("() => document.querySelector('.viewport').dataset.flip === 'none'")
    assert view(page, "axial")["rotation"] == "0"
    traffic.check(server.url)


def test_length_on_a_rotated_and_flipped_view(ct: tuple[ServerProcess, str], browser_page: Callable) -> None:
    """The cube is 14 mm wide: a line across it on a view turned right and flipped top-bottom."""
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    plane = show_axial(page, server, series, CUBE[2])
    turn(page, "axial", "right", "90", "none")
    turn(page, "axial", "v", "90", "h")  # a flip after the turn, on screen: the picture's +x (L) is up now
    assert markers(page, "axial") == ["P", "A", "L", "R"]
    half = SHAPES.cube_half_side
    start = on_page(page, "axial", plane, CUBE + np.array([-half + PIXEL / 2, 0, 0]))
    end = on_page(page, "axial", plane, CUBE + np.array([half - PIXEL / 2, 0, 0]))
    outside = on_page(page, "axial", plane, CUBE + np.array([-half - 2 * PIXEL, 0, 0]))
    assert abs(start[0] - end[0]) < 1 and end[1] < start[1]  # the picture's rows run up the screen
    assert grey(page, start) < 20 and grey(page, end) < 20 and grey(page, outside) > 60
    page.click('[data-tool="measure"]')
    drag(page, start, end)
    assert float(view(page, "axial")["length"]) == pytest.approx(2 * half - PIXEL, abs=PIXEL)
    traffic.check(server.url)


def overlay_columns(page: Any, plane: str, y: float) -> list[float]:
    """The page x of the canvas pixels along a row that are drawn lines (crosshair, reference lines: red well
    above blue; the picture is grey)."""
    return page.evaluate(
        """([p, y]) => { const c = document.querySelector(`.viewport[data-plane="${p}"] canvas`);
            const box = c.getBoundingClientRect(), r = window.devicePixelRatio;
            const row = c.getContext('2d').getImageData(0, Math.round((y - box.y) * r), c.width, 1).data;
            const xs = [];
            for (let i = 0; i < c.width; i += 1) if (row[4 * i] - row[4 * i + 2] > 100) xs.push(box.x + i / r);
            return xs; }""",
        [plane, y],
    )


def reaches(page: Any, plane: str, position: float) -> None:
    """Until an MPR view is at a position along its normal (to half a pixel: the planes go between slices)."""
    page.wait_for_function(
        '([p, v, tol]) => Math.abs(Number(document.querySelector(`.viewport[data-plane="${p}"]`)'
        ".dataset.position) - v) <= tol",
        arg=[plane, float(position), PIXEL / 2],
    )


def test_mpr_crosshair_on_a_flipped_view(ct: tuple[ServerProcess, str], browser_page: Callable) -> None:
    """A click on the sphere in an axial view flipped left-right takes the coronal and sagittal views through the
    sphere; the sagittal view, turned right, shows it under its crosshair, on the axial plane's reference line, and a
    click there takes the axial view to the point's height."""
    server, series = ct
    page = browser_page()
    traffic = Traffic(page)
    open_viewer(page, server, series)
    show_mpr(page)
    page.wait_for_load_state("networkidle")
    axial = geometry(server, series, "axial", index=int(view(page, "axial")["index"]))
    target = np.array([SPHERE[0], SPHERE[1], axial["Position"]])
    unflipped = screen_point(page, "axial", axial, target)
    turn(page, "axial", "h", "0", "h")  # the first view is the active one
    page.focus('.viewport[data-plane="sagittal"]')
    turn(page, "sagittal", "right", "90", "none")
    assert view(page, "axial")["flip"] == "h" and view(page, "coronal")["flip"] == "none"
    at = on_page(page, "axial", axial, target)
    assert close(at, (2 * centre(page, "axial")[0] - unflipped[0], unflipped[1]))
    assert grey(page, at) > BRIGHT
    page.mouse.click(*at)
    for plane in ("coronal", "sagittal"):
        reaches(page, plane, target @ np.array(geometry(server, series, plane)["Normal"]))
    page.wait_for_load_state("networkidle")
    wait_for(page, "sagittal", "references", "axial,coronal")
    for plane in ("coronal", "sagittal"):
        shown = geometry(server, series, plane, position=view(page, plane)["position"])
        point = on_page(page, plane, shown, target)
        assert grey(page, point) > BRIGHT
    # turned right, the sagittal view's horizontal lines (the axial plane's, the crosshair's) run down the screen
    # through the target; a row 30 px under it crosses them there only
    x, y = point
    columns = overlay_columns(page, "sagittal", y + 30)
    assert columns and all(abs(column - x) <= 1.5 for column in columns), (x, columns)

    # a click in the turned sagittal view, 6 mm above the sphere's centre: the axial view goes there
    above = np.array([target[0], SPHERE[1], SPHERE[2] + 6.0])
    page.mouse.click(*on_page(page, "sagittal", shown, above))
    for plane in ("axial", "coronal"):
        reaches(page, plane, above @ np.array(geometry(server, series, plane)["Normal"]))
    traffic.check(server.url)
