"""Colour maps for fused volumes and dose washes: a value from 0 to 1 becomes an RGB colour.

Each map is piecewise linear between a few control colours, tabulated once in 256 entries; ``hot`` and ``jet``
follow the classic definitions (MATLAB's), ``pet`` the black-blue-purple-red-yellow-white ramp nuclear medicine
viewers use, ``grey`` a plain ramp.
"""

from __future__ import annotations

import functools

import numpy as np

_STOPS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    "hot": [(0.0, (0, 0, 0)), (1 / 3, (255, 0, 0)), (2 / 3, (255, 255, 0)), (1.0, (255, 255, 255))],
    "pet": [
        (0.0, (0, 0, 0)),
        (0.25, (0, 0, 255)),
        (0.4, (128, 0, 192)),
        (0.6, (255, 0, 0)),
        (0.8, (255, 160, 0)),
        (1.0, (255, 255, 255)),
    ],
    "jet": [
        (0.0, (0, 0, 128)),
        (0.125, (0, 0, 255)),
        (0.375, (0, 255, 255)),
        (0.625, (255, 255, 0)),
        (0.875, (255, 0, 0)),
        (1.0, (128, 0, 0)),
    ],
    "grey": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
}
COLORMAPS = tuple(_STOPS)


@functools.cache
def table(name: str) -> np.ndarray:
    """The (256, 3) float32 colours of a map, entry k for the value k / 255."""
    stops = _STOPS[name]
    at = np.linspace(0.0, 1.0, 256)
    positions = [p for p, _ in stops]
    return np.stack([np.interp(at, positions, [c[channel] for _, c in stops]) for channel in range(3)], axis=1).astype(
        np.float32
    )


def colorize(fractions: np.ndarray, name: str) -> np.ndarray:
    """(..., 3) float32 colours of values already scaled to 0-1 (clipped; NaN counts as 0)."""
    index = np.floor(np.clip(np.nan_to_num(fractions, nan=0.0), 0.0, 1.0) * 255 + 0.5).astype(np.intp)
    return table(name)[index]
