"""The ``isengard`` command: serve (the default), import files into a running server, plugin sub-commands.

Orthanc's conventions: ``isengard [CONFIGURATION]`` serves with a file or folder of configuration, and
``isengard --config=FILE`` writes a commented sample configuration and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from . import ORTHANC_VERSION, __version__
from .config import ConfigError, sample_configuration
from .logs import setup_logging
from .plugins import load_plugins, make_manager


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isengard",
        description="Isengard: an Orthanc-compatible DICOM store. Serves on the embedded defaults "
        "(SQLite index, filesystem storage) unless a configuration is given.",
        epilog="Sub-commands: isengard import PATH... (send files to a running server); "
        "`isengard COMMAND --help` for each.",
    )
    parser.add_argument("configuration", nargs="?", help="configuration file or folder (Orthanc's JSON format)")
    parser.add_argument("--config", metavar="FILE", help="write a sample configuration to FILE ('-': stdout) and exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--verbose", action="store_true", help="log informational messages")
    parser.add_argument("--trace", action="store_true", help="log everything, for debugging")
    return parser


def _write_sample(target: str) -> int:
    text = sample_configuration()
    if target == "-":
        sys.stdout.write(text)
        return 0
    path = Path(target)
    if path.exists():
        print(f"isengard: {path} exists; not overwriting it. To serve with it: isengard {path}", file=sys.stderr)
        return 2
    path.write_text(text, encoding="utf-8")
    return 0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (Linux, macOS): its transports halve the event loop's share of each request."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def serve_main(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)
    if args.version:
        print(f"isengard {__version__} (Orthanc REST API {ORTHANC_VERSION})")
        return 0
    if args.config:
        return _write_sample(args.config)
    setup_logging("trace" if args.trace else "verbose" if args.verbose else "default")
    from .server import serve_forever

    try:
        run_loop(serve_forever(args.configuration))
    except ConfigError as e:
        print(f"isengard: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"isengard: cannot serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    pm = make_manager()
    load_plugins(pm)
    parser = argparse.ArgumentParser(prog="isengard")
    sub = parser.add_subparsers(dest="command")
    from .importer import add_import_command

    add_import_command(sub)
    pm.hook.register_commands(subparsers=sub)
    if argv and argv[0] in sub.choices:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
