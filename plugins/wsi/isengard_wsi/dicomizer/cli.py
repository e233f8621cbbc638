"""``isengard-wsi-dicomizer``: a slide in, one DICOM series out (one instance per level), written to a folder or
sent to an Orthanc, as OrthancWSIDicomizer does; exit status 0 only when the whole slide was stored."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, generate_uid
from tqdm import tqdm

from . import levels as pyramid
from .dataset import (
    IMAGE_TYPE_ASSOCIATED,
    DatasetError,
    Geometry,
    Series,
    level_dataset,
    read_dataset,
    sample_dataset,
    software_version,
    srgb_profile,
)
from .jpeg import JpegError
from .levels import Encoding, Halving, TargetLevel
from .options import UsageError, orthanc_client, parser, refuse_unsupported
from .sources import ImageLevel, SourceError, SourceLevel, open_slide
from .writer import FolderTarget, OrthancTarget, Spool, Target, TargetError, write_instance

log = logging.getLogger("isengard_wsi.dicomizer")

SYNTAXES = {"jpeg": JPEGBaseline8Bit, "none": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless}
_JPEG = "ISO_10918_1"  # LossyImageCompressionMethod of JPEG (PS3.3 C.7.6.1.1.5.1)


@dataclass
class Output:
    """How the levels are cut into instances and where they go."""

    target: Target
    max_bytes: int  # 0: no limit
    bar: Any  # tqdm
    pool: Executor | None
    progress: Callable[[float], None] | None = None  # told the fraction of frames done, after each frame
    total: int = 0
    done: int = 0

    def frame_done(self) -> None:
        self.bar.update()
        self.done += 1
        if self.progress is not None:
            self.progress(self.done / max(1, self.total))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        print(f"isengard-wsi-dicomizer {software_version()}")
        return 0
    if args.sample_dataset:
        print(json.dumps(sample_dataset(), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:  # tifffile warns of what becomes our one-line error anyway
        logging.getLogger("tifffile").setLevel(logging.ERROR)
    try:
        refuse_unsupported(args)
        dicomize(args)
    except (UsageError, SourceError, JpegError, TargetError, DatasetError, OSError) as e:
        print(f"isengard-wsi-dicomizer: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("isengard-wsi-dicomizer: interrupted, nothing stored", file=sys.stderr)
        return 130
    return 0


def one_line(error: Exception) -> str:
    text = str(error) if not isinstance(error, OSError) or not error.strerror else f"{error.strerror}: {error.filename}"
    return " ".join(text.split()) or type(error).__name__


def dicomize(
    args: argparse.Namespace, target: Target | None = None, progress: Callable[[float], None] | None = None
) -> None:
    """The conversion ``args`` ask for, into ``target`` (default: --folder or --orthanc); ``progress`` is told
    the fraction done (the server's WsiDicomizer job stores the instances itself, and reports its progress)."""
    source = Path(args.input)
    encoding = Encoding(args.compression or "jpeg", args.jpeg_quality, args.reencode, args.smooth)
    icc = Path(args.icc_profile).read_bytes() if args.icc_profile else srgb_profile()
    geometry = Geometry(args.imaged_width, args.imaged_height, args.imaged_depth, args.offset_x, args.offset_y)
    series = Series(
        read_dataset(Path(args.dataset) if args.dataset else None, source.stem), geometry, args.optical_path, icc
    )
    with open_slide(source, args.openslide) as slide:
        targets = pyramid.plan(
            slide.levels,
            plain=slide.plain,
            pyramid=args.pyramid,
            count=args.levels,
            tile=(args.tile_width, args.tile_height),
            encoding=encoding,
        )
        for index, level in enumerate(targets):
            how = "copied" if level.copied else ("re-encoded" if level.source else "halved")
            log.info(
                "level %d: %dx%d, tiles %dx%d, %s",
                index,
                level.width,
                level.height,
                level.tile_width,
                level.tile_height,
                how,
            )
        target = target or _target(args)
        pool = ThreadPoolExecutor(args.threads) if args.threads > 1 else None
        try:
            with (
                pool or nullcontext(),
                tqdm(total=sum(t.frame_count for t in targets), unit="tile", disable=None, desc=source.name) as bar,
            ):
                output = Output(target, args.max_size * 1024 * 1024, bar, pool, progress, bar.total)
                associated = {k: v for k, v in slide.associated.items() if not (args.no_label and k == "label")}
                _write_levels(targets, slide.levels[0], series, encoding, output)
                _write_associated(associated, len(targets), targets[0], series, encoding, output)
            target.commit()
        except BaseException:
            target.rollback()
            raise


def _target(args: argparse.Namespace) -> Target:
    if args.folder:
        return FolderTarget(Path(args.folder), args.folder_pattern)
    return OrthancTarget(orthanc_client(args))


def _write_levels(
    targets: list[TargetLevel], base: SourceLevel, series: Series, encoding: Encoding, output: Output
) -> None:
    """Each level in turn; a level the source lacks is filled while the one above it is written."""
    source_ratio = base.lossy_ratio()
    above: Halving | None = None
    for index, level in enumerate(targets):
        below = None
        if index + 1 < len(targets) and targets[index + 1].source is None:
            below = Halving(targets[index + 1], smooth=encoding.smooth)
        try:
            frames = pyramid.frames(level, level.source or above, encoding, below, output.pool)
            _write_level(index, level, frames, series, encoding, output, source_ratio=source_ratio)
        finally:
            if above is not None:
                above.close()
        above = below


def _write_associated(
    images: dict[str, np.ndarray], index: int, base: TargetLevel, series: Series, encoding: Encoding, output: Output
) -> None:
    """The label, macro and thumbnail, each an instance of the series after the levels, re-encoded as
    --compression says: the label and overview in one frame, the thumbnail tiled as the levels (the tile server
    counts a THUMBNAIL as a level of the pyramid)."""
    for name, pixels in images.items():
        height, width, samples = pixels.shape
        one_frame = name != "thumbnail"
        tile = (width, height) if one_frame else (base.tile_width, base.tile_height)
        source = ImageLevel(width, height, width, height, samples, pixels=pixels)
        level = TargetLevel(width, height, *tile, samples, source)
        output.bar.total += level.frame_count
        output.total += level.frame_count
        frames = pyramid.frames(level, source, encoding, None, output.pool)
        image_type = IMAGE_TYPE_ASSOCIATED[name]
        _write_level(index, level, frames, series, encoding, output, source_ratio=None, image_type=image_type)
        index += 1


def _write_level(
    index: int,
    level: TargetLevel,
    frames: Iterator[bytes],
    series: Series,
    encoding: Encoding,
    output: Output,
    *,
    source_ratio: float | None,
    image_type: list[str] | None = None,
) -> None:
    """The frames of one level into one instance, or a concatenation of several when they pass --max-size.

    Frames are lossy when they are JPEG, or when the source was (its ratio is then the one recorded: PS3.3
    C.7.6.1.1.5 keeps the history of lossy compression even after a lossless step)."""
    photometric = pyramid.photometric(level, encoding)
    syntax: UID = JPEGBaseline8Bit if level.copied else SYNTAXES[encoding.compression]
    jpeg_frames = level.copied or encoding.compression == "jpeg"
    concatenation = (generate_uid(), generate_uid())  # ConcatenationUID, SOPInstanceUIDOfConcatenationSource
    parts, spool, offset = 0, Spool(), 0
    raw_frame = level.tile_width * level.tile_height * level.samples

    def flush(last: bool) -> None:
        nonlocal parts, offset
        count = len(spool.lengths)
        lossy = (_JPEG, raw_frame * count / max(1, spool.size)) if jpeg_frames else None
        if source_ratio is not None and not jpeg_frames:
            lossy = (_JPEG, source_ratio)
        ds = level_dataset(
            series, level, index, photometric=photometric, frames=count, lossy=lossy, image_type=image_type
        )
        if parts or not last:
            _concatenate(ds, concatenation, parts + 1, offset)
        output.target.add(lambda out: write_instance(out, ds, syntax, spool))
        parts, offset = parts + 1, offset + count

    try:
        for frame in frames:
            if output.max_bytes and spool.lengths and spool.size + len(frame) > output.max_bytes:
                flush(last=False)
                spool.close()
                spool = Spool()
            spool.add(frame)
            output.frame_done()
        flush(last=True)
    finally:
        spool.close()


def _concatenate(ds: Dataset, uids: tuple[str, str], number: int, offset: int) -> None:
    """One part of a level cut into several instances (PS3.3 C.7.6.16.2.2.4)."""
    ds.ConcatenationUID, ds.SOPInstanceUIDOfConcatenationSource = uids
    ds.InConcatenationNumber, ds.ConcatenationFrameOffsetNumber = number, offset
