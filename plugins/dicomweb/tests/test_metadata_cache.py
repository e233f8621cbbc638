"""The series metadata cache (metadata_cache.py): the same answers, made once, current after every change."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pydicom

from isengard.testing import ServerProcess, sample

FLAIR = sorted(sample("Brainix", "Flair").glob("*.dcm"))


def metadata(server: ServerProcess, path: str, **headers: str) -> list[dict[str, Any]]:
    answer = server.get(f"/dicom-web{path}/metadata", headers={"Accept": "application/dicom+json", **headers})
    assert answer.status_code == 200, answer.text
    items = json.loads(answer.text.replace(server.url, "http://server"))  # BulkDataURIs alike on every server
    return sorted(items, key=lambda item: item["00080018"]["Value"][0])


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def attachment_names(server: ServerProcess, series_id: str) -> list[str]:
    return list(server.get(f"/series/{series_id}/attachments").json())


def test_the_cached_answer_equals_the_files_answer(isengard: Any) -> None:
    cached = isengard()
    plain = isengard({"DicomWeb": {"EnableMetadataCache": False}})
    series_id = cached.upload(*FLAIR)[0]["ParentSeries"]
    plain.upload(*FLAIR)
    study, series, _ = uids(FLAIR[0])
    path = f"/studies/{study}/series/{series}"
    expected = metadata(plain, path)
    assert attachment_names(cached, series_id) == []
    first = metadata(cached, path)  # made from the files, then kept
    assert "4301" in attachment_names(cached, series_id)
    assert metadata(cached, path) == first == expected  # from the cache
    assert metadata(cached, f"/studies/{study}") == metadata(plain, f"/studies/{study}")
    assert attachment_names(plain, plain.upload(FLAIR[0])[0]["ParentSeries"]) == []  # the option turns it off


def test_the_cache_is_read_instead_of_the_files(isengard: Any) -> None:
    server = isengard()
    series_id = server.upload(*FLAIR[:5])[0]["ParentSeries"]
    study, series, _ = uids(FLAIR[0])
    path = f"/studies/{study}/series/{series}"
    before = metadata(server, path)
    stored = [
        os.path.join(folder, name) for folder, _, names in os.walk(server.config["StorageDirectory"]) for name in names
    ]
    instance_ids = server.get(f"/series/{series_id}/instances").json()
    for instance in instance_ids:  # the files of the instances gone (the cache attachment kept)
        uuid = server.get(f"/instances/{instance['ID']}/attachments/dicom/info").json()["Uuid"]
        for file in stored:
            if os.path.basename(file) == uuid:
                os.remove(file)
    assert metadata(server, path) == before  # still answered: one read of the cache, no file parsed


def test_bulk_data_uris_follow_each_request(isengard: Any) -> None:
    server = isengard()
    server.upload(*FLAIR[:3])
    study, series, _ = uids(FLAIR[0])
    path = f"/studies/{study}/series/{series}"
    metadata(server, path)
    for host, expected in (("pacs.example.org", "http://pacs.example.org/dicom-web/"), (None, "http://server/")):
        headers = {"Forwarded": f"host={host};proto=http"} if host else {}
        items = metadata(server, path, **headers)
        uris = [item["7FE00010"]["BulkDataURI"] for item in items]
        assert all(uri.startswith(expected) for uri in uris), uris
        assert "\\u0001" not in str(items) and "\x01" not in str(items)


def test_the_cache_follows_added_deleted_and_overwritten_instances(isengard: Any) -> None:
    server = isengard({"OverwriteInstances": True})
    server.upload(*FLAIR[:4])
    study, series, _ = uids(FLAIR[0])
    path = f"/studies/{study}/series/{series}"
    assert len(metadata(server, path)) == 4
    added = server.upload(FLAIR[4])[0]
    assert len(metadata(server, path)) == 5
    assert server.client().delete(f"/instances/{added['ID']}").status_code == 200
    assert [item["00080018"]["Value"][0] for item in metadata(server, path)] == sorted(uids(p)[2] for p in FLAIR[:4])

    ds = pydicom.dcmread(FLAIR[0])
    ds.ImageComments = "overwritten"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert server.post("/instances", content=buffer.getvalue()).status_code == 200
    comments = {item["00080018"]["Value"][0]: item.get("00204000", {}).get("Value") for item in metadata(server, path)}
    assert comments[ds.SOPInstanceUID] == ["overwritten"]
