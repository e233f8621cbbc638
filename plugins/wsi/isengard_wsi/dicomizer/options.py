"""The command line of OrthancWSIDicomizer, option for option (names, defaults, "--opt=value" and "--opt value").

Options the DICOMizer does not implement yet are still listed, marked "not supported yet", and refused with a
clear error when they would change the result, rather than silently ignored.
"""

from __future__ import annotations

import argparse

import httpx

from .levels import COMPRESSIONS
from .writer import http_reason

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
NOT_YET = "(not supported yet)"


class UsageError(Exception):
    """A command line that asks for something impossible or not implemented; shown to the user."""


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise argparse.ArgumentTypeError(f"not a Boolean: {text!r} (use 0/1 or true/false)")


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def quality(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"JPEG quality must be in 0..100: {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isengard-wsi-dicomizer",
        description="Create a DICOM series (VL Whole Slide Microscopy Image, TILED_FULL) from a digital pathology "
        "image: a tiled TIFF pyramid, a plain JPEG or PNG, or any format OpenSlide reads (SVS, NDPI, MIRAX...). "
        "JPEG tiles are copied into the frames as they are "
        "(lossless) unless re-encoding is asked for. Same options as OrthancWSIDicomizer.",
    )
    p.add_argument("input", nargs="?", help="the source image")
    generic = p.add_argument_group("Generic options")
    generic.add_argument("--version", action="store_true", help="output version information and exit")
    generic.add_argument("--verbose", action="store_true", help="be verbose in logs")
    generic.add_argument("--threads", type=positive, default=1, help="number of threads encoding tiles (default 1)")
    generic.add_argument(
        "--openslide",
        metavar="PATH",
        help="path to the OpenSlide library (default: openslide-bin's), for the formats it reads (NDPI, MIRAX...)",
    )
    generic.add_argument(
        "--no-label", action="store_true", help="leave the slide's label image out (it may name the patient)"
    )
    source = p.add_argument_group("Options for the source image")
    source.add_argument("--dataset", metavar="JSON", help="JSON file of the DICOM tags to set (Orthanc's format)")
    source.add_argument("--sample-dataset", action="store_true", help="print a sample --dataset file, then exit")
    source.add_argument(
        "--reencode",
        type=boolean,
        default=False,
        metavar="BOOL",
        help="re-encode each tile instead of copying the JPEG tiles (slower, lossy)",
    )
    source.add_argument(
        "--repaint", type=boolean, default=False, metavar="BOOL", help=f"repaint the background of the image {NOT_YET}"
    )
    source.add_argument("--color", metavar="R,G,B", help="colour of the background (only used by --repaint)")
    cytomine = p.add_argument_group(f"Options if importing from Cytomine {NOT_YET}")
    for name in ("url", "public-key", "private-key", "image"):
        cytomine.add_argument(f"--cytomine-{name}", metavar="VALUE")
    cytomine.add_argument("--cytomine-compression", default="jpeg", metavar="VALUE")
    pyramid = p.add_argument_group("Options to construct the pyramid")
    pyramid.add_argument(
        "--pyramid",
        type=boolean,
        default=False,
        metavar="BOOL",
        help="build the levels missing from the source by halving (a plain image always is)",
    )
    pyramid.add_argument(
        "--smooth", type=boolean, default=False, metavar="BOOL", help="blur before halving (fewer aliasing artefacts)"
    )
    pyramid.add_argument(
        "--levels",
        type=positive,
        metavar="N",
        help="number of levels in the target pyramid (default: the source's, or with --pyramid, "
        "halvings until a side fits in a tile)",
    )
    target = p.add_argument_group("Options for the target image")
    target.add_argument("--tile-width", type=positive, metavar="N", help="width of the tiles (default: the source's)")
    target.add_argument("--tile-height", type=positive, metavar="N", help="height of the tiles (default: the source's)")
    target.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        help="compression of re-encoded tiles: none, jpeg (default) or jpeg2000 (lossless); "
        "none or jpeg2000 re-encode every tile",
    )
    target.add_argument("--jpeg-quality", type=quality, default=90, metavar="Q", help="JPEG quality (0..100)")
    target.add_argument(
        "--max-size",
        type=natural,
        default=10,
        metavar="MB",
        help="maximum size per DICOM instance in MB, larger levels are split into a concatenation; "
        "0: no limit (default 10)",
    )
    target.add_argument("--folder", metavar="DIR", help="folder where to write the instances (instead of --orthanc)")
    target.add_argument(
        "--folder-pattern",
        default="wsi-%06d.dcm",
        metavar="PATTERN",
        help="file names in --folder (default wsi-%%06d.dcm)",
    )
    target.add_argument(
        "--orthanc",
        default="http://localhost:8042/",
        metavar="URL",
        help="REST API where to store the instances (default http://localhost:8042/)",
    )
    volume = p.add_argument_group("Description of the imaged volume")
    for name, default, what in (
        ("imaged-width", 15, "width of the specimen (mm)"),
        ("imaged-height", 15, "height of the specimen (mm)"),
        ("imaged-depth", 1, "depth of the specimen (mm)"),
        ("offset-x", 20, "X offset of the specimen from the slide's origin (mm)"),
        ("offset-y", 40, "Y offset of the specimen from the slide's origin (mm)"),
    ):
        volume.add_argument(
            f"--{name}", type=float, default=float(default), metavar="MM", help=f"{what}, default {default}"
        )
    add_http_options(p.add_argument_group("HTTP/HTTPS client configuration to access the Orthanc REST API"))
    advanced = p.add_argument_group("Advanced options")
    advanced.add_argument(
        "--optical-path",
        choices=("none", "brightfield"),
        default="brightfield",
        help="optical path added to the dataset (default brightfield)",
    )
    advanced.add_argument("--icc-profile", metavar="PATH", help="ICC profile of the frames (default: sRGB)")
    advanced.add_argument(
        "--safety",
        type=boolean,
        default=True,
        metavar="BOOL",
        help="accepted for compatibility: the source is always checked",
    )
    advanced.add_argument(
        "--lower-levels",
        type=positive,
        metavar="N",
        help="accepted for compatibility, no effect (a tuning option of OrthancWSIDicomizer)",
    )
    return p


def add_http_options(group: argparse._ArgumentGroup) -> None:
    """The HTTP client options of the Orthanc WSI tools (the DICOMizer and DicomToTiff share them)."""
    group.add_argument("--username", help="username for the Orthanc server")
    group.add_argument("--password", help="password for the Orthanc server")
    group.add_argument("--proxy", metavar="URL", help="HTTP proxy to be used")
    group.add_argument("--timeout", type=natural, default=0, metavar="S", help="HTTP timeout in seconds, 0: none")
    group.add_argument(
        "--verify-peers",
        type=boolean,
        default=True,
        metavar="BOOL",
        help="verify the peers in HTTPS requests (default 1)",
    )
    group.add_argument("--ca-certificates", metavar="PATH", help="CA certificates to verify the peers")


def orthanc_client(args: argparse.Namespace) -> httpx.Client:
    """A client of the REST API at ``--orthanc`` with the HTTP options, checked by GET /system."""
    url = args.orthanc if args.orthanc.endswith("/") else args.orthanc + "/"
    client = httpx.Client(
        base_url=url,
        auth=(args.username, args.password or "") if args.username else None,
        timeout=args.timeout or None,
        verify=args.ca_certificates or args.verify_peers,
        proxy=args.proxy or None,
    )
    try:
        client.get("system").raise_for_status()
    except httpx.HTTPError as e:
        client.close()
        raise UsageError(f"cannot reach the Orthanc server at {url}: {http_reason(e)}") from None
    return client


def refuse_unsupported(args: argparse.Namespace) -> None:
    if any(getattr(args, f"cytomine_{name}") for name in ("url", "public_key", "private_key", "image")):
        raise UsageError("importing from Cytomine is not supported yet")
    if args.repaint:
        raise UsageError("--repaint is not supported yet")
    if args.input is None:
        raise UsageError("no input file given")
