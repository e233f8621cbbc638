"""The explorer in a real browser (headless Chromium) against a real server: what a person clicks, end to end."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from isengard.testing import SlowStoreScp, free_port, sample


def dicom_files(folder: str, count: int) -> list[Path]:
    return sorted(p for p in sample(folder).rglob("*.dcm"))[:count]


def wait_image_loaded(page: Any, selector: str) -> int:
    """The picture's natural width once decoded: 0 would mean a broken image."""
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }", arg=selector
    )
    return int(page.eval_on_selector(selector, "i => i.naturalWidth"))


def study_rows(page: Any) -> list[str]:
    page.wait_for_selector("#study-count")
    return page.locator("table.data tbody tr.clickable").all_inner_texts()


def test_upload_through_the_drop_zone(isengard: Any, browser_page: Any, screenshot: Any) -> None:
    server = isengard()
    files = dicom_files("Brainix/Flair", 6) + dicom_files("Knix", 4)
    page = browser_page()
    page.goto(server.url + "/ui/#/upload")
    page.set_input_files("#upload-input", [str(p) for p in files])
    page.wait_for_function("() => document.getElementById('upload-summary').textContent.startsWith('Done')")
    assert page.inner_text("#upload-summary") == "Done: 10 uploaded"
    assert page.locator("#upload-results .status.ok").all_inner_texts() == ["Success"] * 10
    assert page.eval_on_selector("#upload-progress", "p => p.value") == 1
    screenshot(page, "upload")
    assert server.get("/statistics").json()["CountInstances"] == 10

    # a file dropped on the zone (a drag from the desktop carries a DataTransfer like this one)
    data = base64.b64encode(sample("Phenix", "IM-0001-0001.dcm").read_bytes()).decode()
    page.evaluate(
        """([name, encoded]) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        ["phenix.dcm", data],
    )
    page.wait_for_function("() => document.getElementById('upload-summary').textContent === 'Done: 1 uploaded'")
    assert page.locator("#upload-results li").all_inner_texts()[0].startswith("phenix.dcm")
    assert server.get("/statistics").json()["CountInstances"] == 11
    # the sidebar follows
    page.wait_for_function("() => document.getElementById('sidebar-stats').textContent.includes('11')")

    # a folder with sub-folders: Comunix/Ct and Comunix/Pet
    page.set_input_files("#upload-folder-input", str(sample("Comunix")))
    page.wait_for_function("() => document.getElementById('upload-summary').textContent === 'Done: 4 uploaded'")
    names = page.locator("#upload-results .file-name").all_inner_texts()
    assert sorted(n.split("/", 1)[1].split("/")[0] for n in names) == ["Ct", "Ct", "Pet", "Pet"]
    assert server.get("/statistics").json()["CountInstances"] == 15


def test_browse_from_the_root_to_an_instance_and_its_image(isengard: Any, browser_page: Any, screenshot: Any) -> None:
    server = isengard()
    server.upload(*dicom_files("Brainix/Flair", 8))
    page = browser_page()
    page.goto(server.url + "/")
    assert page.url == server.url + "/ui/"
    rows = study_rows(page)
    assert len(rows) == 1 and "BRAINIX" in rows[0] and "8" in rows[0].split()

    page.click(".nav a:has-text('Patients')")
    page.locator("table.data tbody tr.clickable", has_text="BRAINIX").click()
    page.wait_for_selector(".page-header h1:has-text('BRAINIX')")
    assert "1 study" in page.inner_text(".page-header")

    page.locator("table.data tbody tr.clickable").first.click()
    page.wait_for_selector(".breadcrumbs")
    assert "8 instances" in page.inner_text(".page-header")
    page.locator("table.data tbody tr.clickable").first.click()

    assert wait_image_loaded(page, ".stack-image") > 0
    assert page.inner_text(".stack-counter") == "1 / 8"
    page.hover(".stack-viewport")
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => document.querySelector('.stack-counter').textContent === '2 / 8'")
    page.fill(".stack-slider", "7")
    page.wait_for_function("() => document.querySelector('.stack-counter').textContent === '8 / 8'")
    assert wait_image_loaded(page, ".stack-image") > 0
    screenshot(page, "series")

    page.click("text=Open instance")
    assert wait_image_loaded(page, "#instance-image") > 0
    tags = page.inner_text(".tag-list.root")
    assert "0010,0010" in tags and "PatientName" in tags and "BRAINIX" in tags
    page.fill(".tag-filter", "ReferencedImageSequence")
    visible = page.locator(".tag-list.root > li.tag-row:visible").all_inner_texts()
    assert len(visible) == 1 and "ReferencedImageSequence" in visible[0]
    page.fill(".tag-filter", "")
    sequence = page.locator("li.sequence", has_text="ReferencedImageSequence").first
    sequence.locator("summary").first.click()
    assert "ReferencedSOPInstanceUID" in sequence.inner_text()
    screenshot(page, "instance")

    with page.expect_download() as download:
        page.click("text=Download DICOM")
    data = Path(download.value.path()).read_bytes()
    assert data[128:132] == b"DICM"


def test_search_by_patient_name_modality_and_label(isengard: Any, browser_page: Any, screenshot: Any) -> None:
    server = isengard()
    server.upload(*dicom_files("Brainix/Flair", 2), *dicom_files("Knix", 2), *dicom_files("Comunix", 4))
    server.upload(*dicom_files("Phenix", 1), *dicom_files("PatientWith2studies", 4))
    page = browser_page()
    page.goto(server.url + "/ui/")
    assert len(study_rows(page)) == 6
    page.click("th:has-text('Date')")
    page.wait_for_selector("th.sorted-asc")
    dates = page.locator("table.data tbody tr td:nth-child(3)").all_inner_texts()
    assert dates == sorted(dates) and len(dates) == 6
    screenshot(page, "studies")

    page.fill("input[name=PatientName]", "kni")  # a part of the name, in another case
    page.click("button:has-text('Search')")
    page.wait_for_function("() => location.hash.includes('PatientName=kni')")
    rows = study_rows(page)
    assert len(rows) == 1 and "KNIX" in rows[0]

    page.click("button:has-text('Clear')")
    page.wait_for_function("() => !location.hash.includes('PatientName')")
    page.fill("input[name=modality]", "MR")
    page.click("button:has-text('Search')")
    page.wait_for_function("() => location.hash.includes('modality=MR')")
    rows = study_rows(page)
    assert len(rows) == 2 and all("MR" in row for row in rows)

    knix = server.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": "KNIX"}}).json()[0]
    with server.client() as client:
        assert client.put(f"/studies/{knix}/labels/followup").status_code == 200
    page.goto(server.url + "/ui/#/studies?labels=followup")
    rows = study_rows(page)
    assert len(rows) == 1 and "KNIX" in rows[0] and "followup" in rows[0]


def test_delete_a_study_only_after_confirmation(isengard: Any, browser_page: Any) -> None:
    server = isengard()
    server.upload(*dicom_files("Brainix/Flair", 2), *dicom_files("Knix", 2))
    knix = server.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": "KNIX"}}).json()[0]
    page = browser_page()
    page.goto(server.url + f"/ui/#/study/{knix}")
    page.click(".actions button:has-text('Delete')")
    page.click("dialog button:has-text('Cancel')")
    assert server.get("/statistics").json()["CountStudies"] == 2

    page.click(".actions button:has-text('Delete')")
    assert "cannot be undone" in page.inner_text("dialog")
    page.click("dialog button:has-text('Delete')")
    page.wait_for_function("() => location.hash === '#/studies'")
    rows = study_rows(page)
    assert len(rows) == 1 and "BRAINIX" in rows[0]
    assert server.get(f"/studies/{knix}").status_code == 404
    assert server.get("/statistics").json()["CountStudies"] == 1


def test_protect_and_label_a_patient(isengard: Any, browser_page: Any) -> None:
    server = isengard()
    server.upload(*dicom_files("Knix", 1))
    patient = server.get("/patients").json()[0]
    page = browser_page()
    page.goto(server.url + f"/ui/#/patient/{patient}")
    page.click(".actions button:has-text('Protect')")
    page.wait_for_selector(".actions button:has-text('Unprotect')")
    assert server.get(f"/patients/{patient}/protected").text == "1"
    page.fill(".label-input", "teaching")
    page.press(".label-input", "Enter")
    page.wait_for_selector(".chip:has-text('teaching')")
    assert server.get(f"/patients/{patient}/labels").json() == ["teaching"]
    page.click(".chip-remove")
    page.wait_for_selector(".chip", state="detached")
    assert server.get(f"/patients/{patient}/labels").json() == []


def test_send_to_a_modality_then_see_the_job(isengard: Any, browser_page: Any, screenshot: Any) -> None:
    port = free_port()
    server = isengard(
        {"DicomAet": "EXPLORER", "DicomPort": port, "DicomModalities": {"self": ["EXPLORER", "127.0.0.1", port]}}
    )
    server.upload(*dicom_files("Knix", 3))
    series = server.get("/series").json()[0]
    page = browser_page()
    page.goto(server.url + f"/ui/#/series/{series}")
    page.click(".actions button:has-text('Send')")
    page.select_option("dialog select[name=target]", "modality: self")
    page.click("dialog button:has-text('Send')")
    page.wait_for_selector(".toast:has-text('Sent to self')")
    assert page.inner_text(".job-watch").endswith("Success 100%")

    page.click(".nav a:has-text('Jobs')")
    row = page.locator("table.data tbody tr", has_text="DicomModalityStore")
    row.wait_for()
    assert "Success" in row.inner_text() and "100%" in row.inner_text()
    screenshot(page, "jobs")


def test_pause_resume_and_cancel_a_job(isengard: Any, browser_page: Any) -> None:
    scp = SlowStoreScp(delay=1.0)
    try:
        server = isengard({"DicomModalities": {"slow": [scp.aet, "127.0.0.1", scp.port]}})
        server.upload(*dicom_files("Knix", 6))
        job = server.post(
            "/modalities/slow/store", json={"Resources": server.get("/instances").json(), "Asynchronous": True}
        )
        job_id = job.json()["ID"]
        page = browser_page()
        page.goto(server.url + "/ui/#/jobs")
        row = page.locator("table.data tbody tr", has_text="DicomModalityStore")
        for command, state in (("pause", "Paused"), ("resume", "Running"), ("cancel", "Failure")):
            row.locator(f"button:has-text('{command}')").click()
            row.locator(f".state:has-text('{state}')").wait_for()
            assert server.get(f"/jobs/{job_id}").json()["State"] == state
        assert row.locator("button").all_inner_texts() == ["resubmit"]
        assert len(scp.received) < 6
    finally:
        scp.stop()


def test_basic_authentication_through_the_browser(isengard: Any, browser_page: Any) -> None:
    server = isengard({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "wonderland"}})
    server.upload(*dicom_files("Knix", 1))
    page = browser_page(http_credentials={"username": "alice", "password": "wonderland"})
    page.goto(server.url + "/ui/")
    assert len(study_rows(page)) == 1
    page.click(".nav a:has-text('System')")
    page.wait_for_selector("text=Statistics")
    assert "explorer" in page.inner_text("table.data")
