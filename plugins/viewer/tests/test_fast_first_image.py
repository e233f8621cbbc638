"""A series shown before its volume is loaded: /volume from the headers, a slice from its own file, and the volume
loaded once in the background (docs/viewer.md, "Volume").

What answered a request is observed from the outside: with ``CacheSize`` 0 no volume is ever kept, so a
background load never starts and ``/viewer/api/cache`` counting no load proves a picture came from its slice; with
a cache, a volume loaded first (by a coronal plane) answers the axial planes from memory.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from isengard.testing import ServerProcess
from isengard_viewer import phantom
from isengard_viewer.phantom import PetDose, Series

from .conftest import PET, upload

#: Every series is progressive: /volume answers from the headers whatever its size.
PROGRESSIVE = {"ProgressiveSize": 0}
CT = Series()


def _cache(server: ServerProcess) -> dict[str, Any]:
    response = server.get("/viewer/api/cache")
    assert response.status_code == 200, response.text
    return response.json()


def _loaded(server: ServerProcess, series_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The cache once no load is running and the series' volume is in it."""
    deadline = time.monotonic() + timeout
    while True:
        cache = _cache(server)
        if not cache["Loading"] and series_id in [v["ID"] for v in cache["Volumes"]]:
            return cache
        assert time.monotonic() < deadline, cache
        time.sleep(0.05)


def _reslice(server: ServerProcess, series_id: str, plane: str, **params: Any) -> bytes:
    response = server.get(f"/viewer/api/series/{series_id}/reslice/{plane}", params=params)
    assert response.status_code == 200, response.text[:500]
    return response.content


def _rle(datasets: list[Dataset]) -> list[Dataset]:
    for ds in datasets:
        ds.compress(RLELossless)
    return datasets


def _phantoms() -> dict[str, list[Dataset]]:
    """Series whose slices take every step of the volume: rotated, tilted, unevenly spaced, compressed, and a PET
    scaled to SUVbw after its per-slice rescale (given a window, which the phantom's PET lacks: else the default
    window would be computed from the whole volume)."""
    shapes = phantom.shapes_for(CT)
    pet_shapes = phantom.shapes_for(PET, sphere_value=25000.0, cube_value=3000.0, background=3000.0, radius=12.0)
    pet = phantom.pet_series(PET, pet_shapes, PetDose())
    for ds in pet:
        ds.WindowCenter, ds.WindowWidth = "10000", "20000"
    return {
        "plain": phantom.ct_series(CT, shapes),
        "oblique": phantom.ct_series(Series(orientation=phantom.rotation(20.0, -15.0, 30.0)), shapes),
        "tilted": phantom.ct_series(
            Series(orientation=phantom.rotation(x_degrees=-15.0), advance=(0.0, 0.0, 1.0)), shapes
        ),
        "uneven": phantom.ct_series(
            Series(offsets=tuple(2.0 * k + (3.0 if k >= 20 else 0.0) for k in range(40))), shapes
        ),
        "rle": _rle(phantom.ct_series(CT, shapes)),
        "pet": pet,
    }


def _requests(server: ServerProcess, series_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Planes lying in slices of the acquisition plane: by index, by a position with three decimals (as the
    browser sends them), nearest, JPEG, an oblique plane parallel to the slices, and the float32 values."""
    volume = server.get(f"/viewer/api/series/{series_id}/volume").json()
    normal = np.array(volume["Directions"][2])
    last = volume["Size"][2] - 1
    position = server.get(
        f"/viewer/api/series/{series_id}/reslice/axial", params={"index": last - 3, "format": "json"}
    ).json()["Position"]
    return [
        ("axial", {"index": 0}),
        ("axial", {"index": last // 2, "window": "100,700"}),
        ("axial", {"index": last, "format": "npy"}),
        ("axial", {"index": 5, "format": "npy", "interpolation": "nearest"}),
        ("axial", {"position": f"{position:.3f}", "format": "npy"}),
        ("axial", {"index": 7, "format": "jpeg", "spacing": "0.45"}),
        ("oblique", {"normal": ",".join(map(str, normal)), "up": "0,-1,0", "position": f"{position:.3f}"}),
    ]


def test_a_slice_from_its_file_is_the_volumes_slice(isengard: Any) -> None:
    """Pixel for pixel and value for value: the same picture whether the volume is loaded or not."""
    from_slices = isengard({"Viewer": {**PROGRESSIVE, "CacheSize": 0}}, name="slices")
    from_volumes = isengard({"Viewer": PROGRESSIVE}, name="volumes")
    for name, datasets in _phantoms().items():
        series_id = upload(from_slices, datasets)["ParentSeries"]
        assert upload(from_volumes, datasets)["ParentSeries"] == series_id
        _reslice(from_volumes, series_id, "coronal")  # loads the volume, kept in the cache
        _loaded(from_volumes, series_id)
        loads = _cache(from_volumes)["Loads"]
        for plane, params in _requests(from_slices, series_id):
            expected = _reslice(from_volumes, series_id, plane, **params)
            assert _reslice(from_slices, series_id, plane, **params) == expected, (name, plane, params)
        assert _cache(from_volumes)["Loads"] == loads, "the axial planes came from the loaded volume"
    assert _cache(from_slices)["Loads"] == 0, "the axial planes came from their slices"


def test_a_cold_series_is_described_and_shown_without_its_volume(isengard: Any) -> None:
    server = isengard({"Viewer": {**PROGRESSIVE, "CacheSize": 0}})
    series_id = upload(server, phantom.ct_series(CT, phantom.shapes_for(CT)))["ParentSeries"]
    volume = server.get(f"/viewer/api/series/{series_id}/volume").json()
    assert volume["Size"] == [80, 64, 40] and volume["Range"] is None
    assert volume["DefaultWindow"] == {"Center": 40.0, "Width": 400.0, "Source": "File"}
    middle = server.get(f"/viewer/api/series/{series_id}/reslice/axial", params={"format": "json"}).json()
    assert middle["Size"] == [80, 73]
    for index in (20, 21, 19, 0, 39):
        assert _reslice(server, series_id, "axial", index=index)[:8] == b"\x89PNG\r\n\x1a\n"
    assert _cache(server)["Loads"] == 0
    _reslice(server, series_id, "coronal")  # another plane needs the volume
    assert _cache(server)["Loads"] == 1


def test_files_without_a_window_wait_for_the_computed_one(isengard: Any) -> None:
    server = isengard({"Viewer": PROGRESSIVE})
    datasets = phantom.ct_series(CT, phantom.shapes_for(CT))
    for ds in datasets:
        del ds.WindowCenter, ds.WindowWidth
    series_id = upload(server, datasets)["ParentSeries"]
    volume = server.get(f"/viewer/api/series/{series_id}/volume").json()
    assert volume["DefaultWindow"]["Source"] == "Computed" and volume["Range"] == [-700.0, 200.0]
    assert _cache(server)["Loads"] == 1


def test_small_volumes_are_described_once_loaded(isengard: Any) -> None:
    """Below ProgressiveSize (64 MB by default) /volume waits for the values: Range and a computed window."""
    server = isengard()
    series_id = upload(server, phantom.ct_series(CT, phantom.shapes_for(CT)))["ParentSeries"]
    assert server.get(f"/viewer/api/series/{series_id}/volume").json()["Range"] == [-700.0, 200.0]


def test_concurrent_first_requests_start_one_load(isengard: Any) -> None:
    """Slices, other planes and the description of a cold series asked for at once: one load of its volume."""
    server = isengard({"Viewer": PROGRESSIVE})
    series_id = upload(server, phantom.ct_series(CT, phantom.shapes_for(CT)))["ParentSeries"]
    base = f"/viewer/api/series/{series_id}"
    paths = [(f"{base}/reslice/axial", {"index": k}) for k in range(0, 40, 3)]
    paths += [(f"{base}/reslice/coronal", {}), (f"{base}/reslice/sagittal", {}), (f"{base}/volume", {})] * 3
    with server.client() as client, ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda args: client.get(args[0], params=args[1]), paths))
    assert [r.status_code for r in answers] == [200] * len(paths)
    cache = _loaded(server, series_id)
    assert cache["Loads"] == 1 and cache["Volumes"] == [{"ID": series_id, "Bytes": 80 * 64 * 40 * 4}]
    assert server.get(f"{base}/volume").json()["Range"] == [-700.0, 200.0]  # now from the loaded volume


def test_a_plane_on_the_slices_grid_is_the_stored_slice(isengard: Any) -> None:
    """Square pixels, the axial picture on the slice's own grid: the stored values, rescaled, as they are (from
    the file, then from the loaded volume)."""
    server = isengard({"Viewer": PROGRESSIVE})
    grid = Series(pixel_spacing=(0.7, 0.7))
    shapes = phantom.shapes_for(grid)
    series_id = upload(server, phantom.ct_series(grid, shapes))["ParentSeries"]
    expected = np.round(shapes.values(grid.voxel_centres(grid.offsets[17]))).astype(np.float32)
    for _ in ("from its file", "from the volume"):
        values = np.load(io.BytesIO(_reslice(server, series_id, "axial", index=17, format="npy")))
        assert values.shape == (64, 80) and np.array_equal(values, expected)
        _loaded(server, series_id)
