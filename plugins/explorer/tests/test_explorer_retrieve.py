"""Query/retrieve, job details, the Lua console and DICOMweb links, in the browser against real servers."""

from __future__ import annotations

from typing import Any

import pytest

from isengard.testing import free_port, sample


@pytest.fixture
def pair(isengard: Any) -> tuple[Any, Any]:
    """A local server and a remote one, each the other's DicomModalities entry; the remote holds 3 Knix images."""
    local_port, remote_port = free_port(), free_port()

    def node(aet: str, port: int, other: str, other_aet: str, other_port: int) -> Any:
        modalities = {other: [other_aet, "127.0.0.1", other_port]}
        return isengard({"DicomAet": aet, "DicomPort": port, "DicomModalities": modalities}, name=aet.lower())

    remote = node("REMOTE", remote_port, "local", "LOCAL", local_port)
    local = node("LOCAL", local_port, "remote", "REMOTE", remote_port)
    remote.upload(*sorted(sample("Knix").rglob("*.dcm"))[:3])
    return local, remote


def test_query_a_modality_retrieve_a_study_and_see_its_job(
    pair: tuple[Any, Any], browser_page: Any, screenshot: Any
) -> None:
    local, remote = pair
    page = browser_page()
    page.goto(local.url + "/ui/")
    page.click(".nav a:has-text('Query / Retrieve')")
    page.select_option("select[name=remote]", "remote")
    page.fill("input[name=PatientName]", "kni")
    page.fill("input[name=from]", "2000-01-01")
    page.click("form.search button:has-text('Search')")
    page.wait_for_function("() => location.hash.includes('remote=remote')")
    row = page.locator("table.data tbody tr", has_text="KNIX")
    row.wait_for()
    assert "1 study on remote" in page.inner_text("#query-summary")
    assert "MR" in row.inner_text() and "3" in row.inner_text().split()

    # a filter that matches nothing asks the modality again and says so
    page.fill("input[name=PatientName]", "nobody")
    page.click("form.search button:has-text('Search')")
    page.wait_for_selector("td.empty:has-text('no matching study')")
    page.go_back()
    row.wait_for()

    row.locator("input[type=checkbox]").check()
    page.click("button:has-text('Retrieve selected (1)')")
    page.wait_for_selector("#retrieve-progress a:has-text('Open the study')")
    assert page.inner_text("#retrieve-progress .job-watch").endswith("Success 100%")
    screenshot(page, "query-retrieve")
    study = remote.get("/studies").json()[0]
    assert local.get("/studies").json() == [study]
    assert local.get(f"/studies/{study}/statistics").json()["CountInstances"] == 3
    page.click("#retrieve-progress a:has-text('Open the study')")
    page.wait_for_function(f"() => location.hash === '#/study/{study}'")

    # the study page links to its DICOMweb addresses, which answer
    uid = local.get(f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"]
    metadata = page.locator(".dicomweb-links a:has-text('Metadata')")
    assert metadata.get_attribute("href") == f"/dicom-web/studies/{uid}/metadata"
    answer = page.request.get(local.url + metadata.get_attribute("href"))
    assert answer.ok and len(answer.json()) == 3
    instance = local.get("/instances").json()[0]
    tags = local.get(f"/instances/{instance}/simplified-tags").json()
    page.goto(local.url + f"/ui/#/instance/{instance}")
    rendered = page.locator(".dicomweb-links a:has-text('Rendered')").get_attribute("href")
    assert rendered == (
        f"/dicom-web/studies/{uid}/series/{tags['SeriesInstanceUID']}/instances/{tags['SOPInstanceUID']}/rendered"
    )
    assert page.request.get(local.url + rendered).headers["content-type"].startswith("image/")

    # the retrieval's job, in the list and on its own page
    page.click(".nav a:has-text('Jobs')")
    page.locator("table.data tbody tr", has_text="DicomMoveScu").click()
    page.wait_for_selector("#job-facts")
    assert page.locator(".nav a.active").inner_text() == "Jobs"
    facts = page.inner_text("#job-facts")
    assert "DicomMoveScu" in facts and "Success" in facts and "100%" in facts
    content = page.inner_text("#job-content")
    assert '"RemoteAet": "REMOTE"' in content and '"TargetAet": "LOCAL"' in content


def test_job_details_with_output_and_resubmit(isengard: Any, browser_page: Any) -> None:
    server = isengard({"DicomModalities": {"nobody": ["NOBODY", "127.0.0.1", free_port()]}})
    server.upload(*sorted(sample("Knix").rglob("*.dcm"))[:2])
    study = server.get("/studies").json()[0]
    archive = server.post(f"/studies/{study}/archive", json={"Asynchronous": True}).json()["ID"]
    failed = server.post("/modalities/nobody/store", json={"Resources": [study], "Asynchronous": True}).json()["ID"]
    page = browser_page()

    page.goto(server.url + f"/ui/#/job/{archive}")
    page.wait_for_selector("#job-facts:has-text('Success')")
    link = page.locator(".actions a:has-text('Download the ZIP')")
    assert link.get_attribute("href") == f"/jobs/{archive}/archive"
    assert page.request.get(server.url + link.get_attribute("href")).body()[:2] == b"PK"

    page.goto(server.url + f"/ui/#/job/{failed}")
    page.wait_for_selector("#job-facts:has-text('Failure')")
    facts = page.inner_text("#job-facts")
    assert "DicomModalityStore" in facts and "Error code" in facts
    assert server.get(f"/jobs/{failed}").json()["ErrorDescription"] in facts
    assert '"RemoteAet": "NOBODY"' in page.inner_text("#job-content")
    first_end = server.get(f"/jobs/{failed}").json()["CompletionTime"]
    page.click(".actions button:has-text('resubmit')")
    page.wait_for_function("() => document.querySelector('.page-header .state').textContent !== 'Failure'")
    page.wait_for_selector(".page-header .state:has-text('Failure')", timeout=30_000)  # nobody listens, again
    assert server.get(f"/jobs/{failed}").json()["CompletionTime"] > first_end


def test_lua_console_runs_a_script_when_enabled(isengard: Any, browser_page: Any) -> None:
    server = isengard({"ExecuteLuaEnabled": True})
    page = browser_page()
    page.goto(server.url + "/ui/")
    page.click(".nav a:has-text('Lua console')")
    page.fill("#lua-script", "print(1+1)")
    page.click("#lua-run")
    page.wait_for_function("() => document.getElementById('lua-output').textContent.trim() === '2'")
    page.fill("#lua-script", "error('broken')")
    page.click("#lua-run")
    page.wait_for_selector("#lua-output.error:has-text('broken')")


def test_lua_console_says_when_scripts_are_disabled(isengard: Any, browser_page: Any) -> None:
    server = isengard({"ExecuteLuaEnabled": False})
    page = browser_page()
    page.goto(server.url + "/ui/#/lua")
    assert "ExecuteLuaEnabled" in page.inner_text("#lua-disabled")
    assert page.locator("#lua-script").count() == 0

    # without the plugins, neither the console's link nor the DICOMweb links show
    bare = isengard({"DisabledPlugins": ["lua", "dicomweb"]}, name="bare")
    bare.upload(sample("Phenix", "IM-0001-0001.dcm"))
    study = bare.get("/studies").json()[0]
    page.goto(bare.url + f"/ui/#/study/{study}")
    page.wait_for_selector(".actions")
    assert page.locator("#nav-lua").is_hidden()
    assert page.locator(".dicomweb-links").count() == 0
    page.goto(bare.url + "/ui/#/lua")
    page.wait_for_selector("text=The lua plugin is not loaded")
