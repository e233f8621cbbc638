"""The browser fixtures (isengard.browser_testing) for the viewer's browser tests."""

from isengard.browser_testing import browser_page, chromium, screenshot

__all__ = ["browser_page", "chromium", "screenshot"]
