"""The browser fixtures (isengard.browser_testing) and what the viewer's tests share: uploading phantom series, and
the PET series that goes with the phantom CT."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from isengard.browser_testing import browser_page, chromium, screenshot
from isengard.testing import ServerProcess
from isengard_viewer import phantom
from isengard_viewer.phantom import Series

__all__ = ["browser_page", "chromium", "screenshot"]

#: A PET on a coarser grid than the phantom CT, overlapping it.
PET = Series(
    rows=32,
    columns=32,
    pixel_spacing=(4.0, 4.0),
    offsets=tuple(4.0 * k for k in range(20)),
    origin=(-60.5, -50.2, -110.3),
    modality="PT",
)


def upload(server: ServerProcess, datasets: list[Dataset]) -> dict[str, Any]:
    """Store phantom datasets; the answer to the last one (its ID, ParentSeries...)."""
    with server.client() as client:
        for ds in datasets:
            response = client.post("/instances", content=phantom.to_bytes(ds))
            response.raise_for_status()
    return response.json()
