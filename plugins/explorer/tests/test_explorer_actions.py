"""The explorer's actions on a study, in the browser: archives, anonymize and modify forms, sending to a peer."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from isengard.testing import sample


@pytest.fixture
def knix(isengard: Any) -> tuple[Any, str]:
    """A server holding three Knix instances, and the id of their study."""
    server = isengard()
    server.upload(*sorted(sample("Knix").rglob("*.dcm"))[:3])
    return server, server.get("/studies").json()[0]


def download(page: Any, text: str) -> Path:
    with page.expect_download() as started:
        page.click(f".actions a:has-text('{text}')")
    return Path(started.value.path())


def test_download_a_study_as_zip_and_dicomdir(knix: tuple[Any, str], browser_page: Any) -> None:
    server, study = knix
    page = browser_page()
    page.goto(server.url + f"/ui/#/study/{study}")
    with zipfile.ZipFile(download(page, "Download ZIP")) as archive:
        assert len([n for n in archive.namelist() if not n.endswith("/")]) == 3
    with zipfile.ZipFile(download(page, "DICOMDIR")) as media:
        assert "DICOMDIR" in {Path(n).name for n in media.namelist()}


def run_form(page: Any, action: str, fields: dict[str, str]) -> None:
    """Open an action's form, fill it, submit, and wait for the job to succeed and the new study's link."""
    page.click(f".actions button:has-text('{action}')")
    for name, value in fields.items():
        page.fill(f"dialog [name={name}]", value)
    page.click(f"dialog button:has-text('{action}')")
    page.wait_for_selector(".action-progress a:has-text('Open the new study')")
    assert page.inner_text(".job-watch").endswith("Success 100%")
    page.click(".action-progress a:has-text('Open the new study')")


def test_anonymize_then_modify_a_study(knix: tuple[Any, str], browser_page: Any, screenshot: Any) -> None:
    server, study = knix
    page = browser_page()
    page.goto(server.url + f"/ui/#/study/{study}")
    page.wait_for_selector(".actions")
    run_form(page, "Anonymize", {"Replace": "PatientName=Teaching^Case"})
    page.wait_for_function(f"() => location.hash.startsWith('#/study/') && !location.hash.endsWith('{study}')")
    page.wait_for_selector(".breadcrumbs a:has-text('Teaching Case')")
    anonymized = page.url.rsplit("/", 1)[1]
    assert server.get(f"/studies/{anonymized}").json()["PatientMainDicomTags"]["PatientName"] == "Teaching^Case"
    assert server.get(f"/studies/{study}").status_code == 200  # the original stays

    run_form(page, "Modify", {"Replace": "StudyDescription=Edited in the explorer"})
    page.wait_for_selector("h1:has-text('Edited in the explorer')")
    assert server.get("/statistics").json()["CountStudies"] == 3


def test_send_a_study_to_a_peer(isengard: Any, browser_page: Any) -> None:
    peer = isengard(name="peer")
    server = isengard({"OrthancPeers": {"twin": [peer.url]}})
    server.upload(*sorted(sample("Knix").rglob("*.dcm"))[:3])
    study = server.get("/studies").json()[0]
    page = browser_page()
    page.goto(server.url + f"/ui/#/study/{study}")
    page.click(".actions button:has-text('Send')")
    page.select_option("dialog select[name=target]", "peer: twin")
    page.click("dialog button:has-text('Send')")
    page.wait_for_selector(".toast:has-text('Sent to twin')")
    assert peer.get("/studies").json() == [study]
    assert peer.get("/statistics").json()["CountInstances"] == 3
