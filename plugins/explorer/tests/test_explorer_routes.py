"""How the explorer is served: the redirect, the security headers, the files it may and may not hand out."""

from __future__ import annotations

import re
from typing import Any

import httpx

from isengard_explorer import STATIC


def test_root_redirects_to_the_explorer(module_server: Any) -> None:
    with module_server.client(follow_redirects=False) as client:
        root = client.get("/")
        assert root.status_code == 302 and root.headers["Location"] == "ui/"  # relative: kept behind a proxy prefix
        assert client.get("/ui").headers["Location"] == "ui/"
        assert client.get("/app/explorer.html").headers["Location"] == "../ui/"  # Orthanc's explorer, bookmarked
        for path in ("/", "/ui", "/app/explorer.html"):
            assert client.get(path, follow_redirects=True).url.path == "/ui/"


def test_pages_carry_a_strict_content_security_policy(module_server: Any) -> None:
    with module_server.client() as client:
        page = client.get("/ui/")
        script = client.get("/ui/js/main.js")
        style = client.get("/ui/css/explorer.css")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert style.headers["Content-Type"].startswith("text/css")
    for response in (page, script, style):
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_every_resource_comes_from_the_server_itself() -> None:
    """No CDN, font or script of another origin; no inline script or style the policy would refuse."""
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".html", ".js", ".css"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path
        assert "@import" not in text and "eval(" not in text, path
    html = (STATIC / "index.html").read_text()
    assert "<style" not in html and "style=" not in html
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="js/main.js">']


def test_every_module_the_page_imports_is_served(module_server: Any) -> None:
    with module_server.client() as client:
        for path in sorted(STATIC.rglob("*.js")):
            url = "/ui/" + path.relative_to(STATIC).as_posix()
            assert client.get(url).status_code == 200, url


def test_files_outside_the_interface_are_not_served(module_server: Any) -> None:
    with module_server.client() as client:
        for path in ("/ui/%2e%2e/__init__.py", "/ui/..%2f__init__.py", "/ui/js/", "/ui/missing.js"):
            assert client.get(path).status_code == 404, path


def test_the_browser_is_asked_for_credentials(isengard: Any) -> None:
    server = isengard({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "wonderland"}})
    refused = httpx.get(server.url + "/ui/")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert httpx.get(server.url + "/ui/", auth=("alice", "wonderland")).status_code == 200


def test_listed_among_the_plugins(module_server: Any) -> None:
    assert "explorer" in module_server.get("/plugins").json()
    assert module_server.get("/plugins/explorer").json()["Description"].startswith("Explorer")


def test_disabled_by_the_configuration(isengard: Any) -> None:
    server = isengard({"DisabledPlugins": ["explorer"]})
    assert server.get("/").status_code == 404
    assert server.get("/ui/").status_code == 404
    assert "explorer" not in server.get("/plugins").json()
