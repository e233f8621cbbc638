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
from dataclasses import replace
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
        "pet-admin": _pet_admin(),
    }


def _pet_admin() -> list[Dataset]:
    """A PET corrected to the administration time (its SUV factor needs one header, not every acquisition time),
    a slope of its own per slice, and a window."""
    pet_shapes = phantom.shapes_for(PET, sphere_value=25000.0, cube_value=3000.0, background=3000.0, radius=12.0)
    datasets = phantom.pet_series(PET, pet_shapes, PetDose(), decay_correction="ADMIN")
    for ds in datasets:
        ds.WindowCenter, ds.WindowWidth = "10000", "20000"
    return datasets


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


#: What the provisional header (the index and one header) and every header must agree on.
GEOMETRY = ("Size", "Spacing", "Origin", "Directions", "Slices", "Problems", "Units", "DefaultWindow", "Modality")


def _described(server: ServerProcess, series_id: str) -> dict[str, Any]:
    response = server.get(f"/viewer/api/series/{series_id}/volume")
    assert response.status_code == 200, response.text
    return {key: response.json()[key] for key in GEOMETRY}


def test_a_cold_series_is_described_from_the_index_and_one_header(isengard: Any) -> None:
    """/volume of a cold series reads one header (``HeaderReads``), and says what the loaded volume says; a PET
    whose SUV factor needs every acquisition time (DecayCorrection START) reads them all."""
    server = isengard({"Viewer": PROGRESSIVE})
    for name, datasets in _phantoms().items():
        series_id = upload(server, datasets)["ParentSeries"]
        reads = _cache(server)["HeaderReads"]
        provisional = _described(server, series_id)
        expected_reads = 1 + len(datasets) if name == "pet" else 1
        assert _cache(server)["HeaderReads"] == reads + expected_reads, name
        _reslice(server, series_id, "coronal")  # loads the volume
        _loaded(server, series_id)
        assert _described(server, series_id) == provisional, name


def test_per_slice_slopes_come_from_each_slices_file(isengard: Any) -> None:
    """A PET with a slope per slice, provisional header: the slices and the values are those of every header."""
    fast = isengard({"Viewer": {**PROGRESSIVE, "CacheSize": 0}}, name="fast")
    full = isengard({"Viewer": PROGRESSIVE}, name="full")
    datasets = _pet_admin()
    assert len({ds.RescaleSlope for ds in datasets}) > 1
    series_id = upload(fast, datasets)["ParentSeries"]
    upload(full, datasets)
    _reslice(full, series_id, "coronal")
    _loaded(full, series_id)
    assert _described(fast, series_id) == _described(full, series_id)
    assert _cache(fast)["HeaderReads"] == 1
    for index in (0, 7, 10, 19):
        params = {"index": index, "format": "npy"}
        assert _reslice(fast, series_id, "axial", **params) == _reslice(full, series_id, "axial", **params)
    hot = phantom.shapes_for(PET).sphere_center
    point = {axis: f"{value:.3f}" for axis, value in zip("xyz", hot, strict=True)}
    values = [server.get(f"/viewer/api/series/{series_id}/value", params=point).json() for server in (fast, full)]
    assert values[0] == values[1] and values[0]["Units"] == "SUVbw" and values[0]["Value"] > 3


def _with_axial_localizer(series: Series) -> list[Dataset]:
    """A CT and a localizer that the index cannot tell apart from a slice: same orientation, between the 20th and
    21st slices, another size."""
    datasets = phantom.ct_series(series, phantom.shapes_for(series))
    between = replace(series, offsets=((series.offsets[19] + series.offsets[20]) / 2,), rows=32)
    scout = phantom.ct_series(between, phantom.shapes_for(between))[0]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        setattr(scout, keyword, getattr(datasets[0], keyword))
    scout.ImageType, scout.InstanceNumber = ["ORIGINAL", "PRIMARY", "LOCALIZER"], len(datasets) + 1
    return [*datasets, scout]


def test_problems_only_every_header_knows_are_reported(isengard: Any) -> None:
    """A localizer of another orientation and a frame of another orientation are seen in the index: every header
    is read at once. A localizer the index cannot tell apart from a slice is found in its file when that slice is
    asked for (its picture is then answered from every header), or when every header is read in the background:
    the provisional header is replaced."""
    server = isengard({"Viewer": PROGRESSIVE})
    coronal = phantom.ct_series(CT, phantom.shapes_for(CT), localizer=True)
    mixed = phantom.ct_series(CT, phantom.shapes_for(CT))
    mixed[5].ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    for datasets, problem in ((coronal, "Localizers"), (mixed, "MixedOrientation")):
        series_id = upload(server, datasets)["ParentSeries"]
        reads = _cache(server)["HeaderReads"]
        assert problem in [p["Type"] for p in _described(server, series_id)["Problems"]]
        assert _cache(server)["HeaderReads"] == reads + len(datasets)

    datasets, answers = _with_axial_localizer(CT), []
    for config in ({"CacheSize": 0}, {}):
        server = isengard({"Viewer": {**PROGRESSIVE, **config}})
        series_id = upload(server, datasets)["ParentSeries"]
        provisional = _described(server, series_id)
        assert provisional["Size"] == [80, 64, 41]
        assert [p["Type"] for p in provisional["Problems"]] == ["NonUniformSpacing"]
        position = server.get(
            f"/viewer/api/series/{series_id}/reslice/axial", params={"index": 20, "format": "json"}
        ).json()["Position"]
        # The localizer's place in the provisional stack: between two slices of the exact one, interpolated.
        values = _reslice(server, series_id, "axial", position=f"{position:.3f}", format="npy")
        exact = _described(server, series_id)
        assert exact["Size"] == [80, 64, 40] and [p["Type"] for p in exact["Problems"]] == ["Localizers"]
        answers.append(values)
    assert np.load(io.BytesIO(answers[0])).shape == (73, 80) and answers[0] == answers[1]
