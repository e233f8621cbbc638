"""/changes answers like Orthanc's: the same changes, in the same order, for the same uploads (tests/reference),
with Orthanc's paging (since, limit, last, Done, Last) and shapes (ChangeType, ResourceType, Path)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from isengard.testing import ServerProcess

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from reference_data import load, upload_samples

PLURALS = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServerProcess(tmp_path_factory.mktemp("changes"), {"StableAge": 1}).start()
    upload_samples(server)
    with server.client() as c:
        yield c
    server.stop()


def all_changes(client: httpx.Client, since: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = client.get("/changes", params={"since": since, "limit": 50}).json()
        out += page["Changes"]
        since = page["Last"]
        if page["Done"]:
            return out


def wait_until_stable(client: httpx.Client) -> list[dict[str, Any]]:
    stable = sum(1 for c in load("changes") if c[0].startswith("Stable"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        changes = all_changes(client)
        if sum(1 for c in changes if c["ChangeType"].startswith("Stable")) >= stable:
            return changes
        time.sleep(0.2)
    raise AssertionError("the resources did not become stable")


def test_uploads_log_orthanc_s_changes_in_orthanc_s_order(client: httpx.Client) -> None:
    """Per new instance: NewInstance, then NewSeries, NewStudy, NewPatient for the levels it created."""
    want = [c for c in load("changes") if not c[0].startswith("Stable")]
    changes = all_changes(client)
    got = [c for c in changes if not c["ChangeType"].startswith("Stable")]
    assert [[c["ChangeType"], c["ResourceType"], c["ID"], c["Path"]] for c in got] == want
    assert [c["Seq"] for c in changes] == list(range(1, len(changes) + 1))
    for change in got:
        assert set(change) == {"ChangeType", "Date", "ID", "Path", "ResourceType", "Seq"}
        assert re.fullmatch(r"\d{8}T\d{6}", change["Date"])


def test_every_patient_study_and_series_becomes_stable_once(client: httpx.Client) -> None:
    changes = wait_until_stable(client)
    stable = sorted(
        [c["ChangeType"], c["ResourceType"], c["ID"], c["Path"]] for c in changes if "Stable" in c["ChangeType"]
    )
    assert stable == sorted(c for c in load("changes") if c[0].startswith("Stable"))


def test_paging_with_since_limit_and_last(client: httpx.Client) -> None:
    changes = wait_until_stable(client)
    last = changes[-1]["Seq"]
    page = client.get("/changes", params={"since": 0, "limit": 5}).json()
    assert page == {"Changes": changes[:5], "Done": False, "Last": 5}
    page = client.get("/changes", params={"since": 5, "limit": 2}).json()
    assert (page["Changes"], page["Done"], page["Last"]) == (changes[5:7], False, 7)
    default = client.get("/changes").json()
    assert (len(default["Changes"]), default["Done"], default["Last"]) == (100, False, 100)
    end = client.get("/changes", params={"since": last - 3, "limit": 10}).json()
    assert (end["Changes"], end["Done"], end["Last"]) == (changes[-3:], True, last)
    assert client.get("/changes", params={"since": last + 100}).json() == {"Changes": [], "Done": True, "Last": last}
    assert client.get("/changes", params={"limit": 0}).json() == {"Changes": [], "Done": False, "Last": last}
    assert client.get("/changes", params={"last": ""}).json() == {"Changes": changes[-1:], "Done": True, "Last": last}
    bad = client.get("/changes", params={"since": "x"})
    assert bad.status_code == 400 and bad.json()["HttpStatus"] == 400


def test_metadata_and_attachment_updates_are_logged(client: httpx.Client) -> None:
    series = load("series")[0]["ID"]
    patient = load("patients")[0]["ID"]
    before = client.get("/changes", params={"last": ""}).json()["Last"]
    assert client.put(f"/series/{series}/metadata/1024", content=b"x").status_code == 200
    assert client.put(f"/patients/{patient}/attachments/1030", content=b"y").status_code == 200
    got = client.get("/changes", params={"since": before}).json()["Changes"]
    assert [[c["ChangeType"], c["ResourceType"], c["ID"], c["Path"]] for c in got] == [
        ["UpdatedMetadata", "Series", series, f"/series/{series}"],
        ["UpdatedAttachment", "Patient", patient, f"/patients/{patient}"],
    ]


def test_paths_follow_the_resource_type(client: httpx.Client) -> None:
    for change in all_changes(client):
        assert change["Path"] == f"/{PLURALS[change['ResourceType']]}/{change['ID']}"


def test_changes_of_deleted_resources_vanish_but_the_deletion_is_logged(client: httpx.Client) -> None:
    """As in Orthanc, nothing in the log points to a resource that is gone; unlike Orthanc 1.10, Isengard
    then logs one Deleted change per deleted resource, so that followers of /changes learn of deletions."""
    patient = load("patients")[-1]["ID"]
    studies = client.get(f"/patients/{patient}/studies").json()
    gone = {patient} | {s["ID"] for s in studies}
    assert client.delete(f"/patients/{patient}").status_code == 200
    about_gone = [c for c in all_changes(client) if c["ID"] in gone]
    assert {c["ChangeType"] for c in about_gone} == {"Deleted"}
    assert {c["ID"] for c in about_gone} == gone


def test_clearing_the_log_keeps_the_sequence(client: httpx.Client) -> None:
    last = client.get("/changes", params={"last": ""}).json()["Last"]
    assert client.delete("/changes").status_code == 200
    assert client.get("/changes").json() == {"Changes": [], "Done": True, "Last": last}
