"""Fixtures shared by the kernel's, the plugins' and the integration tests (see isengard.testing)."""

from isengard.testing import isengard, module_server

__all__ = ["isengard", "module_server"]
