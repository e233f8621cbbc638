"""Fixtures shared by the kernel's, the plugins' and the integration tests (see isengard.testing)."""

import os
import sys
from pathlib import Path

import pytest

from isengard.testing import isengard, module_server

__all__ = ["isengard", "module_server"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--index",
        choices=("sqlite", "postgres"),
        help="index plugin of every test server (default: $ISENGARD_TEST_INDEX, else sqlite)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # An environment variable rather than a fixture: ServerProcess objects are also built outside fixtures.
    if config.getoption("index"):
        os.environ["ISENGARD_TEST_INDEX"] = config.getoption("index")


# pynetdicom installs programs named like dcmtk's (findscu, storescu, storescp...): the tests drive dcmtk's, so
# the virtual environment's bin folder must not shadow /usr/bin for the programs they start.
_venv_bin = str(Path(sys.executable).parent)
os.environ["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != _venv_bin)
