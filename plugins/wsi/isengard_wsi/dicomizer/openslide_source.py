"""Slides in the formats OpenSlide reads (Aperio SVS, Hamamatsu NDPI, MIRAX, Philips TIFF, Ventana...): levels
from ``level_dimensions``, pixels from ``read_region`` (re-encoded, never copied), and the label, macro and
thumbnail images OpenSlide calls ``associated_images``.

OpenSlide answers premultiplied-then-unpremultiplied RGBA: pixels outside the scanned area are transparent, and
are laid on the slide's background colour (``openslide.background-color``, white when the vendor says none), as
a viewer shows them. The library is openslide-bin's (a PyPI wheel bundling it), or the one ``--openslide`` names,
as OrthancWSIDicomizer's option of that name.
"""

from __future__ import annotations

import ctypes
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import IMAGE_TYPE_ASSOCIATED
from .sources import SourceError, SourceLevel

#: The tile size of levels whose format has no tiles (OrthancWSIDicomizer's default).
DEFAULT_TILE = 512
#: Columns read by one read_region call: a row of tiles is read in pieces, so RGBA buffers stay small.
_CHUNK = 4096


def library(path: str | None) -> Any:
    """The ``openslide`` module, bound to the library at ``path`` if given (openslide-python binds its library
    once, at import, taking ``openslide_bin.libopenslide1`` when that module exists: it is put there)."""
    if path is not None and "openslide.lowlevel" not in sys.modules:
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise SourceError(f"cannot load the OpenSlide library {path}: {e}") from None
        saved = sys.modules.get("openslide_bin")
        sys.modules["openslide_bin"] = types.SimpleNamespace(libopenslide1=lib)  # type: ignore[assignment]
        try:
            return _import()
        finally:
            if saved is None:
                sys.modules.pop("openslide_bin", None)
            else:
                sys.modules["openslide_bin"] = saved
    module = _import()
    if path is not None and Path(module.lowlevel._lib._name).resolve() != Path(path).resolve():
        raise SourceError(f"another OpenSlide library is already loaded: {module.lowlevel._lib._name}")
    return module


def _import() -> Any:
    try:
        import openslide
    except (ImportError, OSError) as e:
        raise SourceError(f"OpenSlide is not available ({e}): install openslide-bin or give --openslide") from None
    return openslide


def detect(path: Path, library_path: str | None) -> bool:
    """Whether OpenSlide knows the file's format (it reads the header only)."""
    return library(library_path).OpenSlide.detect_format(str(path)) is not None


def flatten(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGB pixels: each RGBA pixel laid on the background by its alpha (transparent: the background)."""
    alpha = rgba[..., 3:4].astype(np.uint32)
    colour = rgba[..., :3].astype(np.uint32) * alpha + np.array(background, np.uint32) * (255 - alpha)
    return ((colour + 127) // 255).astype(np.uint8)


def _background(properties: Any) -> tuple[int, int, int]:
    text = str(properties.get("openslide.background-color") or "FFFFFF")
    try:
        value = int(text, 16)
    except ValueError:
        value = 0xFFFFFF
    return value >> 16 & 0xFF, value >> 8 & 0xFF, value & 0xFF


@dataclass
class OpenSlideLevel(SourceLevel):
    """One level of an OpenSlide slide, read a piece of a row of tiles at a time."""

    slide: Any = field(repr=False, default=None)
    index: int = 0
    downsample: float = 1.0
    background: tuple[int, int, int] = (255, 255, 255)

    def rows(self, top: int, bottom: int) -> np.ndarray:
        out = np.empty((bottom - top, self.width, 3), np.uint8)
        for left in range(0, self.width, _CHUNK):
            width = min(_CHUNK, self.width - left)
            origin = (round(left * self.downsample), round(top * self.downsample))  # level-0 coordinates
            try:
                region = self.slide.read_region(origin, self.index, (width, bottom - top))
            except Exception as e:  # openslide.OpenSlideError, and the errors its ctypes calls raise
                raise SourceError(f"OpenSlide cannot read level {self.index}: {e}") from None
            out[:, left : left + width] = flatten(np.asarray(region), self.background)
        return out


def associated_images(slide: Any) -> dict[str, np.ndarray]:
    """The label, macro and thumbnail images of an open slide, RGB, by OpenSlide's name."""
    background = _background(slide.properties)
    out = {}
    for name in IMAGE_TYPE_ASSOCIATED:
        if name in slide.associated_images:
            out[name] = flatten(np.asarray(slide.associated_images[name].convert("RGBA")), background)
    return out


@contextmanager
def open_openslide(path: Path, library_path: str | None) -> Iterator[tuple[list[SourceLevel], dict[str, np.ndarray]]]:
    """The levels and associated images of a slide OpenSlide reads."""
    openslide = library(library_path)
    try:
        slide = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as e:
        raise SourceError(f"OpenSlide cannot read {path.name}: {e}") from None
    try:
        properties = slide.properties
        tile = (
            int(properties.get("openslide.level[0].tile-width") or DEFAULT_TILE),
            int(properties.get("openslide.level[0].tile-height") or DEFAULT_TILE),
        )
        background = _background(properties)
        levels: list[SourceLevel] = [
            OpenSlideLevel(width, height, *tile, 3, slide=slide, index=i, downsample=downsample, background=background)
            for i, ((width, height), downsample) in enumerate(
                zip(slide.level_dimensions, slide.level_downsamples, strict=True)
            )
        ]
        yield levels, associated_images(slide)
    finally:
        slide.close()
