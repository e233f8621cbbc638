"""HttpCompressionEnabled: text answers are gzip or deflate when the client accepts it, never files or images."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from isengard.testing import ServerProcess, sample


@pytest.fixture(scope="module")
def server(module_server: ServerProcess) -> ServerProcess:
    module_server.upload(*sorted(sample("Brainix").rglob("*.dcm"))[:10])
    return module_server


def raw_get(server: ServerProcess, path: str, encoding: str | None) -> httpx.Response:
    """The answer as it came on the wire (httpx would decode a Content-Encoding by itself)."""
    headers = {"Accept-Encoding": encoding or "identity"}
    with httpx.Client(base_url=server.url, timeout=30) as client, client.stream("GET", path, headers=headers) as r:
        r.raw_body = b"".join(r.iter_raw())  # type: ignore[attr-defined]
        return r


def test_json_answers_are_compressed_when_accepted(server: ServerProcess) -> None:
    plain = raw_get(server, "/instances?expand", None)
    assert "content-encoding" not in plain.headers
    zipped = raw_get(server, "/instances?expand", "gzip, deflate")
    assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    assert gzip.decompress(zipped.raw_body) == plain.raw_body  # type: ignore[attr-defined]
    assert len(zipped.raw_body) < len(plain.raw_body) / 4  # type: ignore[attr-defined]
    deflated = raw_get(server, "/instances?expand", "deflate")
    assert deflated.headers["content-encoding"] == "deflate"
    assert zlib.decompress(deflated.raw_body) == plain.raw_body  # type: ignore[attr-defined]
    refused = raw_get(server, "/instances?expand", "gzip;q=0, br")
    assert "content-encoding" not in refused.headers


def test_files_images_and_small_answers_go_as_they_are(server: ServerProcess) -> None:
    instance = server.get("/instances").json()[0]
    for path in (f"/instances/{instance}/file", f"/instances/{instance}/preview", "/patients", "/patients/unknown"):
        response = raw_get(server, path, "gzip")
        assert "content-encoding" not in response.headers, path


def test_the_option_turns_it_off(isengard) -> None:
    server = isengard({"HttpCompressionEnabled": False})
    server.upload(*sorted(sample("Brainix").rglob("*.dcm"))[:3])
    response = raw_get(server, "/instances?expand", "gzip")
    assert "content-encoding" not in response.headers and json.loads(response.raw_body)  # type: ignore[attr-defined]
