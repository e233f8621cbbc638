"""Lua over real DICOM: auto-routing between two servers and filtering what arrives by REST and by C-STORE."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from isengard.testing import (
    ServerProcess,
    assert_orthanc_error,
    dicom_variant,
    free_port,
    require_tool,
    sample,
)

CT = sample("Phenix", "IM-0001-0001.dcm")
MR = sample("Beaufix", "IM-0001-0001.dcm")


def lua_script(tmp_path: Path, name: str, source: str) -> str:
    (tmp_path / name).write_text(source)
    return str(tmp_path / name)


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return result


def storescu(server: ServerProcess, *files: Path) -> None:
    tool = require_tool("storescu", "C-STORE into the server")
    port = str(server.config["DicomPort"])
    done = subprocess.run(
        [tool, "-aet", "LUATEST", "-aec", "ORTHANC", "127.0.0.1", port, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_orthanc_paper_routing_script(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """Mammograms go to the portal, everything is deleted from the router (the Orthanc paper's example)."""
    portal = isengard({"DicomAet": "PORTAL"}, name="portal")
    routing = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Modality'] == 'MG' then
    SendToModality(instanceId, 'portal')
  end
  Delete(instanceId)
end
"""
    router = isengard(
        {
            "LuaScripts": [lua_script(tmp_path, "routing.lua", routing)],
            "DicomModalities": {"portal": ["PORTAL", "127.0.0.1", portal.config["DicomPort"]]},
        },
        name="router",
    )
    mammogram = tmp_path / "mg.dcm"
    mammogram.write_bytes(dicom_variant(CT, Modality="MG", SOPInstanceUID=generate_uid()))
    mr = tmp_path / "mr.dcm"
    mr.write_bytes(dicom_variant(CT, Modality="MR", SOPInstanceUID=generate_uid()))
    router.upload(mammogram, CT)
    storescu(router, mr)
    with router.client() as r, portal.client() as p:
        wait_until(lambda: r.get("/instances").json() == [] and r.get("/statistics").json()["CountInstances"] == 0)
        [routed] = wait_until(lambda: p.get("/instances").json())
        tags = p.get(f"/instances/{routed}/simplified-tags").json()
        assert tags["Modality"] == "MG"
        assert tags["SOPInstanceUID"] == pydicom.dcmread(mammogram).SOPInstanceUID
        time.sleep(1)  # nothing else arrives
        assert p.get("/instances").json() == [routed]
        assert p.get(f"/instances/{routed}/metadata/RemoteAET").text == "ORTHANC"


def test_received_instance_filter_rejects_by_modality_over_rest_and_c_store(
    tmp_path: Path, isengard: Callable[..., ServerProcess]
) -> None:
    only_mr = """
function ReceivedInstanceFilter(dicom, origin, info)
  -- Only allow incoming MR images
  if dicom.Modality == 'MR' then
    return true
  else
    print('refused ' .. dicom.Modality .. ' from ' .. origin['RequestOrigin'] .. ' ' .. info['TransferSyntaxUID'])
    return false
  end
end
"""
    server = isengard({"LuaScripts": [lua_script(tmp_path, "filter.lua", only_mr)]})
    with server.client() as c:
        assert_orthanc_error(c.post("/instances", content=CT.read_bytes()), 403)
        assert c.post("/instances", content=MR.read_bytes()).status_code == 200
        storescu(server, CT)  # Orthanc answers success and drops the file
        assert c.get("/statistics").json()["CountInstances"] == 1
        [kept] = c.get("/instances?expand").json()
        assert kept["MainDicomTags"]["SOPInstanceUID"] == pydicom.dcmread(MR).SOPInstanceUID
    log = server.log_path.read_text()
    assert "refused CT from RestApi 1.2.840.10008.1.2.1" in log
    assert "refused CT from DicomProtocol" in log


def test_scripts_route_through_the_rest_api(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """Orthanc's AutoroutingModification.lua sample: modify, upload, send, delete, with origin "Lua"."""
    portal = isengard({"DicomAet": "PORTAL"}, name="portal")
    script = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  -- Ignore the instances that result from the present Lua script to avoid infinite loops
  if origin['RequestOrigin'] ~= 'Lua' then
    local replace = {}
    replace['StationName'] = 'My Medical Device'
    local remove = { 'MilitaryRank' }
    local command = {}
    command['Replace'] = replace
    command['Remove'] = remove
    local modifiedFile = RestApiPost('/instances/' .. instanceId .. '/modify', DumpJson(command, true))
    local modifiedId = ParseJson(RestApiPost('/instances/', modifiedFile)) ['ID']
    RestApiPost('/modalities/sample/store', modifiedId)
    RestApiDelete('/instances/' .. instanceId)
    print('modified ' .. modifiedId)
  end
end
"""
    router = isengard(
        {
            "LuaScripts": [lua_script(tmp_path, "modify.lua", script)],
            "DicomModalities": {"sample": ["PORTAL", "127.0.0.1", portal.config["DicomPort"]]},
        },
        name="router",
    )
    router.upload(CT)
    with router.client() as r, portal.client() as p:
        [routed] = wait_until(lambda: p.get("/instances").json())
        assert p.get(f"/instances/{routed}/simplified-tags").json()["StationName"] == "My Medical Device"
        [left] = wait_until(lambda: r.get("/instances").json())
        assert r.get(f"/instances/{left}/metadata/Origin").text == "Lua"
        assert routed == left


def test_find_filter_rewrites_incoming_queries(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """IncomingFindRequestFilter patches a query before the server answers it (Orthanc Book's sample)."""
    script = """
function IncomingFindRequestFilter(query, origin)
  print('find from ' .. origin['RemoteAet'] .. ' for ' .. query['0010,0020'])
  local v = query
  v['5555,0010'] = nil
  if v['0010,0020'] == 'ALIAS' then v['0010,0020'] = 'REAL' end
  return v
end
"""
    server = isengard({"LuaScripts": [lua_script(tmp_path, "find.lua", script)], "DicomAlwaysAllowFind": True})
    patient = tmp_path / "real.dcm"
    patient.write_bytes(dicom_variant(CT, PatientID="REAL", SOPInstanceUID=generate_uid()))
    server.upload(patient)
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "ALIAS"
    query.PatientName = ""
    query.add_new(0x55550010, "LO", "ACME")
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.config["DicomPort"], ae_title="ORTHANC")
    assert assoc.is_established
    try:
        answers = [ds for status, ds in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind) if ds]
    finally:
        assoc.release()
    assert [a.PatientID for a in answers] == ["REAL"]
    assert "find from FINDER for ALIAS" in server.log_path.read_text()


def test_job_callbacks(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    script = """
function OnJobSubmitted(jobId) print('submitted ' .. jobId) end
function OnJobSuccess(jobId) print('success ' .. jobId) end
function OnJobFailure(jobId) print('failure ' .. jobId) end
"""
    port = free_port()
    modalities = {"self": ["ORTHANC", "127.0.0.1", port], "nowhere": ["NOWHERE", "127.0.0.1", free_port()]}
    server = isengard(
        {"LuaScripts": [lua_script(tmp_path, "jobs.lua", script)], "DicomPort": port, "DicomModalities": modalities}
    )
    [stored] = server.upload(CT)
    with server.client() as c:
        body = {"Resources": [stored["ID"]], "Asynchronous": True}
        good = c.post("/modalities/self/store", json=body).json()["ID"]
        bad = c.post("/modalities/nowhere/store", json=body).json()["ID"]
        for job, outcome in ((good, "Success"), (bad, "Failure")):
            wait_until(lambda job=job: c.get(f"/jobs/{job}").json()["State"] in ("Success", "Failure"))
            assert c.get(f"/jobs/{job}").json()["State"] == outcome
    wait_until(lambda: f"failure {bad}" in server.log_path.read_text())
    log = server.log_path.read_text()
    assert f"submitted {good}" in log and f"submitted {bad}" in log and f"success {good}" in log


def test_modify_and_send_to_peer(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """The Orthanc Book's modify-then-route script, to an HTTP peer."""
    peer = isengard(name="peer")
    script = """
function OnStoredInstance(instanceId, tags, metadata)
  -- Ignore the instances that result from a modification to avoid infinite loops
  if (metadata['ModifiedFrom'] == nil and metadata['AnonymizedFrom'] == nil) then
    local replace = {}
    replace['StationName'] = 'My Medical Device'
    local remove = { 'MilitaryRank' }
    Delete(SendToPeer(ModifyInstance(instanceId, replace, remove, true), 'other'))
    Delete(instanceId)
  end
end
"""
    router = isengard(
        {"LuaScripts": [lua_script(tmp_path, "peer.lua", script)], "OrthancPeers": {"other": [peer.url]}},
        name="router",
    )
    router.upload(CT)
    with router.client() as r, peer.client() as p:
        [routed] = wait_until(lambda: p.get("/instances").json())
        assert p.get(f"/instances/{routed}/simplified-tags").json()["StationName"] == "My Medical Device"
        wait_until(lambda: r.get("/instances").json() == [])


def test_outgoing_find_filter_rewrites_queries_sent(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """OutgoingFindRequestFilter(query, modality) patches what /modalities/{id}/query sends (Book's sample)."""
    script = """
function OutgoingFindRequestFilter(query, modality)
  print('query to ' .. modality)
  for key, value in pairs(query) do
    if value == 'ALIAS' then query[key] = 'REAL' end
  end
  return query
end
"""
    remote = isengard({"DicomAlwaysAllowFind": True, "DicomAet": "REMOTE"}, name="remote")
    patient = tmp_path / "real.dcm"
    patient.write_bytes(dicom_variant(CT, PatientID="REAL", SOPInstanceUID=generate_uid()))
    remote.upload(patient)
    local = isengard({"LuaScripts": [lua_script(tmp_path, "outgoing.lua", script)]}, name="local")
    with local.client() as c:
        assert c.put("/modalities/remote", json=["REMOTE", "127.0.0.1", remote.config["DicomPort"]]).status_code == 200
        body = {"Level": "Patient", "Query": {"PatientID": "ALIAS"}}
        query = c.post("/modalities/remote/query", json=body).json()
        answers = c.get(f"{query['Path']}/answers?expand&simplify").json()
    assert [a["PatientID"] for a in answers] == ["REAL"]
    assert "query to remote" in local.log_path.read_text()


def test_deleted_and_updated_callbacks(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """OnUpdated<Level>(id) when a metadata changes, OnDeleted<Level>(id) for each resource a deletion removes."""
    script = "".join(
        f"function On{event}{level}(id) print('{event} {level} ' .. id) end\n"
        for event in ("Deleted", "Updated")
        for level in ("Patient", "Study", "Series", "Instance")
    )
    server = isengard({"LuaScripts": [lua_script(tmp_path, "changes.lua", script)], "UserMetadata": {"Sample": 1024}})
    [stored] = server.upload(CT)
    instance, study = stored["ID"], stored["ParentStudy"]
    with server.client() as c:
        assert c.put(f"/instances/{instance}/metadata/Sample", content=b"a").status_code == 200
        assert c.put(f"/studies/{study}/metadata/Sample", content=b"b").status_code == 200
        wait_until(lambda: f"Updated Study {study}" in server.log_path.read_text())
        assert c.delete(f"/instances/{instance}").status_code == 200
    wait_until(lambda: f"Deleted Patient {stored['ParentPatient']}" in server.log_path.read_text())
    log = server.log_path.read_text()
    assert f"Updated Instance {instance}" in log
    assert "Updated Patient" not in log and "Updated Series" not in log
    for level, public_id in (("Instance", instance), ("Series", stored["ParentSeries"]), ("Study", study)):
        assert f"Deleted {level} {public_id}" in log


def test_c_store_filter_discards_by_dimse_status(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    """ReceivedCStoreInstanceFilter(dicom, origin, info) sees C-STOREs only; a status other than 0 discards."""
    script = """
function ReceivedCStoreInstanceFilter(dicom, origin, info)
  print('c-store filter: ' .. dicom.Modality .. ' ' .. origin['RequestOrigin'] .. ' ' .. origin['RemoteAet'] ..
        ' ' .. info['TransferSyntaxUID'] .. ' ' .. tostring(info['HasPixelData']))
  if dicom.Modality == 'MR' then
    return 0xA700
  end
  return 0
end
function ReceivedInstanceFilter(dicom, origin, info)
  print('instance filter: ' .. dicom.Modality .. ' ' .. origin['RequestOrigin'])
  return true
end
"""
    server = isengard({"LuaScripts": [lua_script(tmp_path, "cstore.lua", script)], "DicomAlwaysAllowStore": True})
    mr = tmp_path / "mr.dcm"  # an uncompressed MR
    mr.write_bytes(dicom_variant(CT, Modality="MR", SOPInstanceUID=generate_uid()))
    storescu(server, CT)
    # the SCU is answered the status the script returned
    ae = AE(ae_title="LUATEST")
    ds = pydicom.dcmread(mr)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", int(server.config["DicomPort"]), ae_title="ORTHANC")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0xA700
    finally:
        assoc.release()
    with server.client() as c:
        [kept] = c.get("/instances", params={"expand": ""}).json()
        assert kept["MainDicomTags"]["SOPInstanceUID"] == pydicom.dcmread(CT).SOPInstanceUID
    syntax = pydicom.dcmread(CT).file_meta.TransferSyntaxUID
    log = server.log_path.read_text()
    assert f"c-store filter: CT DicomProtocol LUATEST {syntax} true" in log
    assert "c-store filter: MR DicomProtocol" in log
    assert "instance filter: CT DicomProtocol" in log and "instance filter: MR" not in log
    # REST uploads never reach it
    server.upload(MR)
    log = server.log_path.read_text()
    assert "instance filter: MR RestApi" in log and "c-store filter: MR RestApi" not in log
