"""Fixtures shared by the kernel's, the plugins' and the integration tests (see isengard.testing)."""

import os
import sys
from pathlib import Path

from isengard.testing import isengard, module_server

__all__ = ["isengard", "module_server"]

# pynetdicom installs programs named like dcmtk's (findscu, storescu, storescp...): the tests drive dcmtk's, so
# the virtual environment's bin folder must not shadow /usr/bin for the programs they start.
_venv_bin = str(Path(sys.executable).parent)
os.environ["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != _venv_bin)
