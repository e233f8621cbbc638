"""The explorer behind a reverse proxy that serves the server under a prefix (https://host/pacs/ -> server /).

The proxy is a small threaded HTTP server forwarding what starts with the prefix (prefix removed) and answering
404 to anything else, which it records: a request that left the prefix out is a page built with absolute paths.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from isengard.testing import free_port, sample

PREFIX = "/pacs"


class PrefixProxy:
    def __init__(self, target: str) -> None:
        self.port, self.strays = free_port(), []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                if not (self.path == PREFIX or self.path.startswith(PREFIX + "/")):
                    proxy.strays.append(f"{self.command} {self.path}")
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                answer = httpx.request(
                    self.command, target + self.path[len(PREFIX) :], content=body, headers=headers, timeout=60
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"


@pytest.fixture
def proxied(isengard: Any) -> Iterator[tuple[Any, PrefixProxy]]:
    server = isengard()
    proxy = PrefixProxy(server.url)
    yield server, proxy
    proxy.server.shutdown()


def test_the_explorer_works_under_a_proxy_prefix(proxied: tuple[Any, PrefixProxy], browser_page: Any) -> None:
    server, proxy = proxied
    files = sorted(p for p in sample("Brainix/Flair").rglob("*.dcm"))[:3]
    page = browser_page()
    page.goto(proxy.url + "/")  # the server's root, through the proxy: redirected to the explorer there
    assert page.url == proxy.url + "/ui/"
    page.wait_for_selector("#study-count")  # the study list, through the proxy

    page.click(".nav a:has-text('Upload')")
    page.set_input_files("#upload-input", [str(p) for p in files])  # POST /instances through the proxy
    page.wait_for_function("() => document.getElementById('upload-summary')?.textContent.startsWith('Done')")
    assert page.inner_text("#upload-summary") == "Done: 3 uploaded"
    page.click(".nav a:has-text('Studies')")
    page.wait_for_selector("table.data tbody tr.clickable")
    page.locator("table.data tbody tr.clickable").first.click()  # the study
    page.wait_for_selector(".breadcrumbs")
    page.locator("table.data tbody tr.clickable").first.click()  # its series: the pictures of the stack
    page.wait_for_function(
        "() => { const i = document.querySelector('.stack-image'); return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.eval_on_selector(".stack-image", "i => new URL(i.src).pathname").startswith(PREFIX + "/instances/")
    assert proxy.strays == []
    assert len(server.get("/instances").json()) == 3


def test_redirections_keep_the_prefix(proxied: tuple[Any, PrefixProxy]) -> None:
    _, proxy = proxied
    for path in ("/", "/ui", "/app/explorer.html"):
        answer = httpx.get(proxy.url + path, follow_redirects=True)
        assert (answer.status_code, answer.url.path) == (200, f"{PREFIX}/ui/"), path
    assert proxy.strays == []
