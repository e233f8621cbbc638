"""Plugins as a third party writes them: loaded by name, called for every event, able to refuse requests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from isengard.testing import sample

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "docs" / "examples"


def read_events(path: Path, until: callable, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@pytest.fixture
def recorder(isengard, tmp_path):
    path = tmp_path / "events.jsonl"
    server = isengard(
        {"Plugins": ["recorder"], "Recorder": {"Path": str(path), "DenyPath": "/forbidden", "RejectModality": "CT"}},
        env={"PYTHONPATH": str(HERE / "plugins")},
    )
    return server, path


def test_events_reach_plugins_in_order_with_sequence_numbers(recorder):
    server, path = recorder
    files = sorted(sample("Brainix", "Flair").iterdir())[:3]
    results = server.upload(*files)
    ids = {r["ID"] for r in results}
    events = read_events(path, lambda ev: sum(e["event"] == "stored" for e in ev) == 3)
    assert events[0] == {"event": "startup"}
    changes = [e for e in events if e["event"] == "change"]
    seqs = [c["Seq"] for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {c["ID"] for c in changes if c["ChangeType"] == "NewInstance"} == ids
    assert [c["ChangeType"] for c in changes[:4]] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    assert {e["id"] for e in events if e["event"] == "stored"} == ids
    assert all(e["origin"] == "RestApi" for e in events if e["event"] == "stored")
    # The log the plugin saw is the log clients read.
    logged = server.get("/changes?limit=100").json()["Changes"]
    assert [c["Seq"] for c in logged] == seqs


def test_stable_events_after_stable_age(recorder):
    server, path = recorder
    [result] = server.upload(sample("Brainix", "Flair", "IM-0001-0001.dcm"))
    study = server.get(f"/studies/{result['ParentStudy']}").json()
    assert study["IsStable"] is False
    events = read_events(path, lambda ev: sum(e["event"] == "stable" for e in ev) == 3)
    assert {(e["level"], e["id"]) for e in events if e["event"] == "stable"} == {
        ("Patient", result["ParentPatient"]),
        ("Study", result["ParentStudy"]),
        ("Series", result["ParentSeries"]),
    }
    assert {"StablePatient", "StableStudy", "StableSeries"} <= {
        c["ChangeType"] for c in server.get("/changes").json()["Changes"]
    }
    assert server.get(f"/studies/{result['ParentStudy']}").json()["IsStable"] is True


def test_delete_event(recorder):
    server, path = recorder
    [result] = server.upload(sample("Knix", "Loc", "IM-0001-0001.dcm"))
    assert server.client().delete(f"/patients/{result['ParentPatient']}").status_code == 200
    events = read_events(path, lambda ev: any(e["event"] == "deleted" for e in ev))
    assert {"event": "deleted", "level": "Patient", "id": result["ParentPatient"]} in events
    deleted = [e for e in events if e["event"] == "change" and e["ChangeType"] == "Deleted"]
    assert {e["ResourceType"] for e in deleted} == {"Patient", "Study", "Series", "Instance"}


def test_authorize_hook_refuses(recorder):
    server, _ = recorder
    r = server.get("/forbidden/anything")
    assert r.status_code == 403
    assert r.json()["HttpStatus"] == 403
    assert server.get("/system").status_code == 200


def test_accept_instance_hook_discards(recorder):
    server, _ = recorder
    r = server.post("/instances", content=sample("Phenix", "IM-0001-0001.dcm").read_bytes())  # a CT
    assert r.status_code == 403
    assert server.get("/instances").json() == []
    ok = server.post("/instances", content=sample("Brainix", "Flair", "IM-0001-0001.dcm").read_bytes())  # MR
    assert ok.status_code == 200


def test_plugins_route_lists_third_party_plugins(recorder):
    server, _ = recorder
    names = server.get("/plugins").json()
    assert {"recorder", "sqlite", "filesystem"} <= set(names)
    info = server.get("/plugins/recorder").json()
    assert info["ID"] == "recorder"
    assert "records every event" in info["Description"]
    assert server.get("/plugins/nope").status_code == 404


def test_documented_example_plugin_runs(isengard):
    server = isengard({"Plugins": ["hello_isengard"]}, env={"PYTHONPATH": str(EXAMPLES)})
    server.upload(sample("Brainix", "Flair", "IM-0001-0001.dcm"), sample("Phenix", "IM-0001-0001.dcm"))
    deadline = time.monotonic() + 10
    while (counts := server.get("/hello/modalities").json()) != {"MR": 1, "CT": 1} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counts == {"MR": 1, "CT": 1}


def test_missing_index_plugin_is_a_clear_error(isengard):
    with pytest.raises(RuntimeError, match="pip install isengard-sqlite"):
        isengard({"DisabledPlugins": ["sqlite", "postgres"]})
