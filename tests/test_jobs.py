"""Jobs over REST with real servers: asynchronous C-STORE and C-MOVE as jobs, the state machine (pause, resume,
cancel, resubmit), priorities with one job at a time, errors, the history size, a server killed or stopped in the
middle of a job, and two servers sharing one index (a request on one obeyed by the other, which takes over the
jobs of the first when it dies).

The slow peer is a pynetdicom SCP that sleeps in its C-STORE handler; the C-MOVE peer is a second Isengard.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from isengard.testing import (
    ServerProcess,
    SlowStoreScp,
    assert_orthanc_error,
    free_port,
    sample,
    storage_files,
    wait_job,
)

FLAIR = [sample("Brainix", "Flair", f"IM-0001-{i:04d}.dcm") for i in range(1, 23)]
EPI = sample("Brainix", "Epi", "IM-0001-0001.dcm")
JOB_KEYS = {"Content", "CreationTime", "EffectiveRuntime", "ErrorCode", "ErrorDescription", "ErrorDetails", "ID"}
JOB_KEYS |= {"Priority", "Progress", "State", "Timestamp", "Type"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def store_job(server: ServerProcess, modality: str, resources: list[str], **options: Any) -> str:
    r = server.post(f"/modalities/{modality}/store", json={"Resources": resources, "Asynchronous": True, **options})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer == {"ID": answer["ID"], "Path": f"/jobs/{answer['ID']}"}
    return str(answer["ID"])


@pytest.fixture(scope="module")
def slow() -> Iterator[SlowStoreScp]:
    scp = SlowStoreScp(delay=0.25)
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, slow: SlowStoreScp
) -> Iterator[tuple[ServerProcess, ServerProcess, list[dict[str, Any]]]]:
    """(server, pacs, the instances uploaded to the server): one job at a time on the server."""
    port, pacs_port = free_port(), free_port()
    pacs = ServerProcess(
        tmp_path_factory.mktemp("pacs"),
        {"DicomAet": "PACS", "DicomPort": pacs_port, "DicomModalities": {"jobs": ["JOBS", "127.0.0.1", port]}},
    ).start()
    server = ServerProcess(
        tmp_path_factory.mktemp("jobs"),
        {
            "DicomAet": "JOBS",
            "DicomPort": port,
            "ConcurrentJobs": 1,
            "JobsHistorySize": 100,
            "DicomAssociationCloseDelay": 0,  # no idle association to wait for when the server stops
            "DicomModalities": {
                "slow": ["SLOW", "127.0.0.1", slow.port],
                "dead": ["DEAD", "127.0.0.1", free_port()],
                "pacs": ["PACS", "127.0.0.1", pacs_port],
            },
        },
    ).start()
    uploaded = server.upload(*FLAIR[:6])
    pacs.upload(EPI)
    yield server, pacs, uploaded
    server.discard()
    pacs.discard()


@pytest.fixture
def server(servers: tuple[ServerProcess, ServerProcess, list[dict[str, Any]]]) -> ServerProcess:
    return servers[0]


@pytest.fixture
def study(servers: tuple[ServerProcess, ServerProcess, list[dict[str, Any]]]) -> str:
    return str(servers[2][0]["ParentStudy"])


@pytest.fixture
def instance(servers: tuple[ServerProcess, ServerProcess, list[dict[str, Any]]]) -> str:
    return str(servers[2][0]["ID"])


def test_an_asynchronous_store_is_a_job(server: ServerProcess, slow: SlowStoreScp, study: str, instance: str) -> None:
    slow.received.clear()
    job_id = store_job(server, "slow", [study], Priority=3)
    assert job_id in server.get("/jobs").json()
    done = wait_job(server, job_id, "Success")
    assert set(done) == JOB_KEYS | {"CompletionTime"}
    assert done["Content"] == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 6,
        "LocalAet": "JOBS",
        "ParentResources": [study],
        "RemoteAet": "SLOW",
    }
    assert (done["Type"], done["Priority"], done["Progress"], done["ErrorCode"]) == ("DicomModalityStore", 3, 100, 0)
    assert (done["ErrorDescription"], done["ErrorDetails"]) == ("Success", "")
    assert done["CreationTime"] < done["CompletionTime"] <= done["Timestamp"]
    assert 1.0 < done["EffectiveRuntime"] < 10
    assert sorted(slow.received) == sorted(sop_uid(p) for p in FLAIR[:6])
    assert done in server.get("/jobs?expand").json() or done["ID"] in server.get("/jobs").json()
    # the synchronous answer is the Content of the same request run as a job
    options = {"MoveOriginatorAet": "MOVER", "MoveOriginatorID": 7}
    sync = server.post("/modalities/slow/store", json={"Resources": [instance], **options}).json()
    job_id = store_job(server, "slow", [instance], Synchronous=False, **options)
    assert wait_job(server, job_id, "Success")["Content"] == sync


def test_pause_and_resume_a_running_job(server: ServerProcess, slow: SlowStoreScp, study: str) -> None:
    slow.received.clear()
    slow.hold(allowed=3)  # the rest waits for the pause, however slow the machine
    job_id = store_job(server, "slow", [study])
    running = wait_job(server, job_id, "Running", progress=17)
    assert "EstimatedTimeOfArrival" in running and "CompletionTime" not in running
    assert server.post(f"/jobs/{job_id}/pause").json() == {}
    slow.unhold()
    paused = wait_job(server, job_id, "Paused")
    sent = len(slow.received)
    time.sleep(0.6)
    assert len(slow.received) == sent < 6  # nothing more is sent while paused
    again = server.get(f"/jobs/{job_id}").json()
    assert again["Progress"] == paused["Progress"] == round(100 * sent / 6)
    assert "EstimatedTimeOfArrival" not in again
    assert server.post(f"/jobs/{job_id}/pause").json() == {}  # paused already: nothing to do
    with server.client() as c:
        assert_orthanc_error(c.post(f"/jobs/{job_id}/resubmit"), 400, "Bad sequence of calls")
        assert_orthanc_error(c.delete(f"/jobs/{job_id}"), 404)  # only finished jobs can be deleted
    assert server.post(f"/jobs/{job_id}/resume").json() == {}
    wait_job(server, job_id, "Success")
    assert sorted(slow.received) == sorted(sop_uid(p) for p in FLAIR[:6])  # each once: went on where it stopped
    with server.client() as c:
        assert_orthanc_error(c.post(f"/jobs/{job_id}/resume"), 400, "Bad sequence of calls")


def test_cancel_then_resubmit(server: ServerProcess, slow: SlowStoreScp, study: str) -> None:
    slow.received.clear()
    slow.hold(allowed=3)
    job_id = store_job(server, "slow", [study])
    wait_job(server, job_id, "Running", progress=17)
    assert server.post(f"/jobs/{job_id}/cancel").json() == {}
    slow.unhold()
    failed = wait_job(server, job_id, "Failure")
    assert (failed["ErrorCode"], failed["ErrorDescription"]) == (37, "This job was canceled")
    assert 0 < failed["Progress"] < 100 and "CompletionTime" in failed
    sent = len(slow.received)
    assert server.post(f"/jobs/{job_id}/cancel").json() == {}  # finished: nothing to do, as in Orthanc
    assert server.post(f"/jobs/{job_id}/pause").json() == {}
    assert server.get(f"/jobs/{job_id}").json()["State"] == "Failure"
    assert server.post(f"/jobs/{job_id}/resubmit").json() == {}
    done = wait_job(server, job_id, "Success")
    assert (done["ErrorCode"], done["ErrorDescription"], done["Progress"]) == (0, "Success", 100)
    assert done["EffectiveRuntime"] < failed["EffectiveRuntime"] + 2.5  # counted from the resubmission
    assert len(slow.received) == sent + 6  # from the start again


def test_priorities_and_the_queue(server: ServerProcess, slow: SlowStoreScp, study: str, instance: str) -> None:
    slow.hold()  # the blocker runs until every other job is queued
    blocker = store_job(server, "slow", [study])
    wait_job(server, blocker, "Running")
    low = store_job(server, "slow", [instance])
    paused = store_job(server, "slow", [instance])
    high = store_job(server, "slow", [instance], Priority=10)
    cancelled = store_job(server, "slow", [instance], Priority=20)
    assert server.get(f"/jobs/{low}").json()["State"] == "Pending"
    assert server.post(f"/jobs/{paused}/pause").json() == {}
    assert server.get(f"/jobs/{paused}").json()["State"] == "Paused"
    assert server.post(f"/jobs/{cancelled}/cancel").json() == {}
    never_ran = server.get(f"/jobs/{cancelled}").json()
    assert (never_ran["State"], never_ran["ErrorCode"], never_ran["Progress"]) == ("Failure", 37, 0)
    assert never_ran["EffectiveRuntime"] == 0
    slow.unhold()
    finished = {job_id: wait_job(server, job_id, "Success") for job_id in (blocker, high, low)}
    assert server.get(f"/jobs/{paused}").json()["State"] == "Paused"
    assert finished[blocker]["CompletionTime"] < finished[high]["CompletionTime"] < finished[low]["CompletionTime"]
    assert server.post(f"/jobs/{paused}/resume").json() == {}
    wait_job(server, paused, "Success")


def test_failures_and_errors(server: ServerProcess, instance: str) -> None:
    job_id = store_job(server, "dead", [instance])
    failed = wait_job(server, job_id, "Failure")
    assert (failed["ErrorCode"], failed["ErrorDescription"]) == (9, "Error in the network protocol")
    assert "DEAD" in failed["ErrorDetails"]
    with server.client() as c:
        assert_orthanc_error(c.get(f"/jobs/{UNKNOWN}"), 404)
        for action in ("cancel", "pause", "resume", "resubmit"):
            assert_orthanc_error(c.post(f"/jobs/{UNKNOWN}/{action}"), 400)  # Orthanc's status here
        assert_orthanc_error(c.delete(f"/jobs/{UNKNOWN}"), 404)
        error = assert_orthanc_error(c.get(f"/jobs/{job_id}/archive"), 404, "Accessing an inexistent item")
        assert error["Details"] == "Job has no such output: archive"
        assert_orthanc_error(c.delete(f"/jobs/{job_id}/archive"), 404)
        for body in ({"Priority": "high"}, {"Priority": 1.5}, {"Asynchronous": "maybe"}, {"Synchronous": 0}):
            r = c.post("/modalities/slow/store", json={"Resources": [instance], **body})
            assert_orthanc_error(r, 400, "Bad file format")
        before = set(c.get("/jobs").json())
        r = c.post("/modalities/slow/store", json={"Resources": [UNKNOWN.replace("-", "")], "Asynchronous": True})
        assert r.status_code == 400 and set(c.get("/jobs").json()) == before  # checked before any job exists
        assert c.delete(f"/jobs/{job_id}").text == ""
        assert_orthanc_error(c.get(f"/jobs/{job_id}"), 404)
        assert job_id not in c.get("/jobs").json()


def test_asynchronous_move_and_retrieve(servers: tuple[ServerProcess, ServerProcess, list[dict[str, Any]]]) -> None:
    server, pacs, _ = servers
    ds = pydicom.dcmread(EPI, stop_before_pixels=True)
    study_uid = str(ds.StudyInstanceUID)
    [epi] = pacs.get("/instances").json()
    series = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": ds.SeriesInstanceUID}
    body = {"Level": "Series", "Resources": [series]}
    r = server.post("/modalities/pacs/move", json={**body, "TargetAet": "JOBS", "Asynchronous": True}).json()
    done = wait_job(server, r["ID"], "Success")
    assert done["Type"] == "DicomMoveScu"
    assert done["Content"] == {
        "Description": "REST API",
        "LocalAet": "JOBS",
        "Query": [{"0008,0052": "SERIES", "0020,000d": study_uid, "0020,000e": ds.SeriesInstanceUID}],
        "RemoteAet": "PACS",
        "TargetAet": "JOBS",
    }
    assert epi in server.get("/instances").json()
    assert server.client().delete(f"/instances/{epi}").status_code == 200
    query = server.post("/modalities/pacs/query", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
    query_id = query.json()["ID"]
    r = server.post(f"/queries/{query_id}/retrieve", json={"TargetAet": "JOBS", "Synchronous": False}).json()
    done = wait_job(server, r["ID"], "Success")
    content = done["Content"]
    assert (done["Type"], content["TargetAet"], content["RemoteAet"]) == ("DicomMoveScu", "JOBS", "PACS")
    assert done["Content"]["Query"] == [
        {"0008,0050": ds.AccessionNumber, "0008,0052": "STUDY", "0010,0020": ds.PatientID, "0020,000d": study_uid}
    ]
    assert epi in server.get("/instances").json()


def test_outputs_and_the_history_size(isengard: Any) -> None:
    """A plugin's job type (tests/plugins/output_jobs.py) stores an output, kept until the job leaves the history."""
    server = isengard(
        {"Plugins": ["output_jobs"], "JobsHistorySize": 2, "ConcurrentJobs": 1, "OrphanedFilesGracePeriod": 0},
        env={"PYTHONPATH": str(Path(__file__).parent / "plugins")},
    )
    jobs, files = [], []
    for text in ("first", "second", "third"):
        jobs.append(server.post("/test-jobs/echo", json={"Text": text}).json()["ID"])
        done = wait_job(server, jobs[-1], "Success")
        assert (done["Type"], done["Content"]) == ("Echo", {"Description": "test", "Length": len(text)})
        files.append(storage_files(server) - set().union(*files))
        r = server.get(f"/jobs/{jobs[-1]}/archive")
        assert (r.status_code, r.content, r.headers["content-type"]) == (200, text.encode(), "text/plain")
        assert r.headers["content-disposition"] == 'filename="echo.txt"'
    assert sorted(server.get("/jobs").json()) == sorted(jobs[1:])  # the oldest left the history, with its file
    assert storage_files(server) == files[1] | files[2] and all(len(f) == 1 for f in files)
    with server.client() as c:
        assert c.delete(f"/jobs/{jobs[1]}/archive").text == ""
        assert_orthanc_error(c.get(f"/jobs/{jobs[1]}/archive"), 404)
        assert c.delete(f"/jobs/{jobs[2]}").text == ""
    assert storage_files(server) == set()
    job_id = server.post("/test-jobs/echo", json={"Text": "kept"}).json()["ID"]
    wait_job(server, job_id, "Success")
    server.restart()  # the orphan sweep at start-up (every file is old enough here) spares the outputs
    time.sleep(0.5)
    assert server.get(f"/jobs/{job_id}/archive").content == b"kept"


def test_a_server_killed_or_stopped_mid_job_goes_on_after_restart(isengard: Any, slow: SlowStoreScp) -> None:
    modalities = {"slow": ["SLOW", "127.0.0.1", slow.port]}
    server = isengard({"DicomModalities": modalities, "JobsLeaseDuration": 3, "DicomAssociationCloseDelay": 0})
    uploaded = server.upload(*FLAIR[6:12])
    study = uploaded[0]["ParentStudy"]
    wanted = sorted(sop_uid(p) for p in FLAIR[6:12])
    for how in ("kill", "stop"):
        slow.received.clear()
        slow.hold(allowed=3)
        job_id = store_job(server, "slow", [study])
        wait_job(server, job_id, "Running", progress=17)
        if how == "kill":
            server.kill()
            slow.unhold()
        else:
            slow.unhold()  # a stopping server waits for the instance in flight
            server.stop()
        server.start()
        done = wait_job(server, job_id, "Success")
        assert done["Content"]["FailedInstancesCount"] == 0
        assert set(slow.received) == set(wanted), how
        assert len(slow.received) <= 7, how  # went on from where it was: one instance sent twice at most


def test_two_servers_share_one_index(isengard: Any, slow: SlowStoreScp, tmp_path: Path) -> None:
    shared = {
        "IndexDirectory": str(tmp_path / "index"),
        "StorageDirectory": str(tmp_path / "storage"),
        "DicomModalities": {"slow": ["SLOW", "127.0.0.1", slow.port]},
        "JobsLeaseDuration": 3,
        "DicomAssociationCloseDelay": 0,
        "DicomScuTimeout": 120,  # a held C-STORE is a slow peer, not a dead one
    }
    first = isengard(shared, name="first")
    uploaded = first.upload(*FLAIR[12:18])
    slow.received.clear()
    slow.hold(allowed=1)  # the transfer goes exactly as far as the test allows, however slow the machine
    job_id = store_job(first, "slow", [uploaded[0]["ParentStudy"]])
    slow.wait_received(1)  # run by the first (the second does not exist yet), now held on the second instance
    second = isengard(shared, name="second")
    assert job_id in second.get("/jobs").json()
    assert second.post(f"/jobs/{job_id}/pause").json() == {}  # obeyed by the first, through the index
    slow.allow(1)
    assert wait_job(first, job_id, "Paused")["Progress"] == 33  # two of six sent
    assert first.post(f"/jobs/{job_id}/resume").json() == {}
    wait_job(second, job_id, "Running", progress=33)  # the third is held back: still running when killed
    first.kill()  # the second takes over whatever the first was running
    slow.unhold()
    done = wait_job(second, job_id, "Success")
    assert done["Content"]["InstancesCount"] == 6
    assert sorted(set(slow.received)) == sorted(sop_uid(p) for p in FLAIR[12:18])
    assert len(slow.received) <= 7
