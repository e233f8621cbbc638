"""Administration routes: log levels, metrics, bulk operations, re-indexing, reset."""

from __future__ import annotations

import json
import time

import pytest

from isengard.testing import sample


@pytest.fixture(scope="module")
def loaded(module_server):
    module_server.upload(*sorted(sample("Knix", "Loc").iterdir())[:4], sample("Phenix", "IM-0001-0001.dcm"))
    return module_server


def test_tools_lists_its_routes(loaded):
    names = loaded.get("/tools").json()
    assert {"find", "lookup", "now", "generate-uid", "log-level-http", "metrics-prometheus", "bulk-delete"} <= set(
        names
    )
    assert names == sorted(names)


@pytest.mark.parametrize("category", ["generic", "http", "dicom", "sqlite", "plugins", "jobs", "lua"])
def test_log_level_categories_round_trip(loaded, category):
    with loaded.client() as c:
        assert c.put(f"/tools/log-level-{category}", content="trace").status_code == 200
        assert c.get(f"/tools/log-level-{category}").text == "trace"
        assert c.put(f"/tools/log-level-{category}", content="default").status_code == 200
        assert c.get(f"/tools/log-level-{category}").text == "default"
        bad = c.put(f"/tools/log-level-{category}", content="loud")
    assert bad.status_code == 400 and bad.json()["OrthancError"] == "Parameter out of range"


def test_global_log_level(loaded):
    with loaded.client() as c:
        assert c.put("/tools/log-level", content="verbose").status_code == 200
        assert c.get("/tools/log-level").text == "verbose"
        c.put("/tools/log-level", content="default")


def test_metrics_in_prometheus_format(loaded):
    text = loaded.get("/tools/metrics-prometheus").text
    metrics = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()}
    assert metrics["orthanc_count_instances"] == 5
    assert metrics["orthanc_count_patients"] == 2
    assert metrics["orthanc_disk_size_mb"] > 0
    with loaded.client() as c:
        assert c.put("/tools/metrics", content="0").status_code == 200
        assert c.get("/tools/metrics").text == "0"
        assert c.get("/tools/metrics-prometheus").text == ""
        c.put("/tools/metrics", content="1")


def test_bulk_content_at_another_level(loaded):
    patients = loaded.get("/patients").json()
    body = loaded.post("/tools/bulk-content", json={"Resources": patients}).json()
    assert {b["ID"] for b in body} == set(patients)
    assert all(b["Type"] == "Patient" and "LastUpdate" in b["Metadata"] for b in body)
    series = loaded.post("/tools/bulk-content", json={"Resources": patients, "Level": "Series"}).json()
    assert {s["ID"] for s in series} == set(loaded.get("/series").json())
    assert loaded.post("/tools/bulk-content", json={"Resources": ["nope"]}).json() == []
    bad = loaded.post("/tools/bulk-content", json={"Resources": "nope"})
    assert bad.status_code == 400 and bad.json()["OrthancStatus"] == 8


def test_default_encoding_can_be_changed(loaded):
    with loaded.client() as c:
        assert c.get("/tools/default-encoding").text == "Latin1"
        assert c.put("/tools/default-encoding", content="Utf8").status_code == 200
        assert c.get("/tools/default-encoding").text == "Utf8"
        assert c.put("/tools/default-encoding", content="Klingon").status_code == 400
        c.put("/tools/default-encoding", content="Latin1")


def test_bulk_delete(isengard):
    server = isengard()
    results = server.upload(sample("Phenix", "IM-0001-0001.dcm"), sample("Beaufix", "IM-0001-0001.dcm"))
    body = {"Resources": [results[0]["ParentPatient"], results[1]["ID"], "unknown-id"]}
    assert server.post("/tools/bulk-delete", json=body).status_code == 200
    assert server.get("/instances").json() == []


def test_reconstruct_after_extra_main_tags_change(isengard):
    server = isengard()
    [result] = server.upload(sample("Phenix", "IM-0001-0001.dcm"))
    study = result["ParentStudy"]
    assert "InstitutionAddress" not in server.get(f"/studies/{study}").json()["MainDicomTags"]
    server.config["ExtraMainDicomTags"] = {
        "Study": ["InstitutionAddress"],
        "Series": ["SeriesDescription", "0018,0050"],
    }
    server.restart()
    assert "SliceThickness" not in server.get(f"/series/{result['ParentSeries']}").json()["MainDicomTags"]
    assert server.post(f"/studies/{study}/reconstruct").status_code == 200
    series = server.get(f"/series/{result['ParentSeries']}").json()
    assert series["MainDicomTags"]["SliceThickness"] == "0.75"  # Phenix's 0018,0050
    found = server.post("/tools/find", json={"Level": "Series", "Query": {"SliceThickness": "0.75"}}).json()
    assert found == [result["ParentSeries"]]
    assert server.post("/studies/unknown/reconstruct").status_code == 404


def test_reset_reloads_the_configuration(isengard):
    server = isengard()
    assert server.get("/system").json()["Name"] == "IsengardTest"
    config_path = server.workdir / "config.json"
    config = json.loads(config_path.read_text())
    config["Name"] = "Renamed"
    config_path.write_text(json.dumps(config))
    assert server.post("/tools/reset").status_code == 200
    deadline = time.monotonic() + 20
    name = None
    while time.monotonic() < deadline:
        try:
            name = server.get("/system").json()["Name"]
            if name == "Renamed":
                break
        except Exception:
            pass
        time.sleep(0.1)
    assert name == "Renamed"
    assert server.process.poll() is None  # the same process restarted in place
