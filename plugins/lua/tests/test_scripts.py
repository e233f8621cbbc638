"""Lua scripts on a real server: /tools/execute-script, the HTTP filter, broken and endless scripts, the sandbox.

The scripts are Orthanc's own examples (Orthanc Book, users/lua.rst) where one exists: they must run unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isengard.testing import ServerProcess, assert_orthanc_error, sample


def scripts(tmp_path: Path, **sources: str) -> list[str]:
    """Write scripts beside the test and name them relative to the server's configuration folder."""
    names = []
    for name, source in sources.items():
        (tmp_path / f"{name}.lua").write_text(source)
        names.append(f"../{name}.lua")  # the configuration lives in tmp_path/server0/
    return names


def wait_for_log(server: ServerProcess, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = server.log_path.read_text(errors="replace")
        if text in log or time.monotonic() > deadline:
            assert text in log, log[-3000:]
            return log
        time.sleep(0.1)


def test_execute_script_answers_what_print_wrote(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"ExecuteLuaEnabled": True, "Name": "Minas"})
    with server.client() as c:
        r = c.post("/tools/execute-script", content=b'print(42)\nprint("a", 1, nil, true)')
        assert r.status_code == 200 and r.text == "42\na, 1, nil, true\n"
        r = c.post("/tools/execute-script", content=b'print(ParseJson(RestApiGet("/system"))["Name"])')
        assert r.text == "Minas\n"
        r = c.post("/tools/execute-script", content=b'print(RestApiGet("/nope"))')
        assert r.text == "nil\n"
        # a variable set by one request is seen by the next, as in Orthanc (one interpreter)
        c.post("/tools/execute-script", content=b"counter = 41")
        assert c.post("/tools/execute-script", content=b"print(counter + 1)").text == "42\n"
        uid = c.post("/tools/execute-script", content=b"print(GenerateDicomUid())").text.strip()
        assert uid.startswith("1.2.") and len(uid) <= 64
        r = c.post("/tools/execute-script", content=b'print(DumpJson({ a = "12", b = { "x" }}, true))')
        assert json.loads(r.text) == {"a": "12", "b": ["x"]}
        # without keepStrings numbers-looking strings become numbers; an empty table is a list (as Orthanc 1.10)
        r = c.post("/tools/execute-script", content=b"print(DumpJson({a='12', b={1,2}, c='x'}), DumpJson({}))")
        assert r.text == '{"a":12,"b":[1,2],"c":"x"}, []\n'


def test_execute_script_reports_lua_errors_with_their_line(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"ExecuteLuaEnabled": True, "HttpDescribeErrors": True})
    with server.client() as c:
        r = c.post("/tools/execute-script", content=b"local a = 1\nx = nil + 1")
        body = assert_orthanc_error(r, 500, "Cannot execute a Lua command")
        assert body["OrthancStatus"] == 2031
        assert body["Details"].startswith("line:2: attempt to perform arithmetic on a nil value"), body
        assert c.get("/system").status_code == 200


def test_execute_script_is_refused_unless_enabled(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard()
    with server.client() as c:
        r = c.post("/tools/execute-script", content=b"print(42)")
        assert_orthanc_error(r, 403)  # Orthanc's answer has no body: Isengard's says why, as every error does
    assert "/tools/execute-script is disallowed" in server.log_path.read_text()


def test_rest_calls_from_lua_need_no_credentials(isengard: Callable[..., ServerProcess]) -> None:
    """Orthanc's RestApi* functions bypass the HTTP layer: neither credentials nor remote access rules apply."""
    server = isengard({"ExecuteLuaEnabled": True, "AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}})
    with server.client(auth=("alice", "pw")) as c:
        r = c.post("/tools/execute-script", content=b"print(ParseJson(RestApiGet('/system'))['ApiVersion'])")
        assert r.status_code == 200 and r.text.strip() == str(c.get("/system").json()["ApiVersion"])
        assert c.get("/system", auth=("alice", "wrong")).status_code == 401


def test_sandbox_hides_files_processes_and_python(isengard: Callable[..., ServerProcess]) -> None:
    server = isengard({"ExecuteLuaEnabled": True})
    with server.client() as c:
        r = c.post(
            "/tools/execute-script",
            content=b"print(io, os.execute, os.remove, loadfile, dofile, require, package, debug, python)",
        )
        assert r.text == "nil, nil, nil, nil, nil, nil, nil, nil, nil\n"
        r = c.post("/tools/execute-script", content=b'print(type(os.time()), load("return 1 + 1")())')
        assert r.text == "number, 2\n"
        # Python functions handed to Lua cannot be explored to reach Python's globals
        r = c.post("/tools/execute-script", content=b"print(RestApiGet.__globals__)")
        assert r.status_code == 500
        # nor take the server's memory
        r = c.post(
            "/tools/execute-script", content=b"local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 999) .. i end"
        )
        assert r.json()["Details"] == "LuaMemoryError"
        assert c.post("/tools/execute-script", content=b"print('alive')").text == "alive\n"


def test_http_filter_makes_the_server_read_only(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    filter_script = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  -- Only allow GET requests for non-admin users
  if method == 'GET' then
    return true
  elseif username == 'admin' then
    return true
  else
    return false
  end
end
"""
    server = isengard({"LuaScripts": scripts(tmp_path, readonly=filter_script)})
    with server.client() as c:
        assert c.get("/system").status_code == 200
        assert c.get("/instances").json() == []
        assert_orthanc_error(c.post("/instances", content=sample("Phenix", "IM-0001-0001.dcm").read_bytes()), 403)
        assert_orthanc_error(c.delete("/patients/0946fcb6-cf12ab43-bad958c1-bf057ad5-0fc6f54c"), 403)
        assert_orthanc_error(c.post("/tools/generate-uid?level=study"), 403)
        assert c.get("/instances").json() == []


def test_http_filter_sees_orthanc_arguments(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    script = """
function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  if uri == '/system' then return true end  -- the test fixture's readiness probe
  return method == 'GET' and uri == '/statistics' and ip == '127.0.0.1' and username == 'alice'
    and headers['x-token'] == 'secret'
end
"""
    config = {"LuaScripts": scripts(tmp_path, check=script), "RegisteredUsers": {"alice": "pw"}}
    server = isengard({**config, "AuthenticationEnabled": True})
    with server.client() as c:
        assert c.get("/statistics", headers={"X-Token": "secret"}).status_code == 200
        assert c.get("/statistics", headers={"X-Token": "wrong"}).status_code == 403
        assert c.get("/changes", headers={"X-Token": "secret"}).status_code == 403


def test_broken_scripts_are_logged_with_their_line(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    broken = "function Oops(\n"  # a syntax error: the rest of LuaScripts still loads
    failing = "\n\nfunction OnStoredInstance(instanceId, tags, metadata, origin)\n  local x = nil\n  return x.y\nend\n"
    server = isengard({"LuaScripts": [*scripts(tmp_path, broken=broken, failing=failing), "no.lua"]})
    log = wait_for_log(server, "broken.lua:2:")
    assert "Lua error in the script" in log
    with server.client() as c:
        r = c.post("/instances", content=sample("Phenix", "IM-0001-0001.dcm").read_bytes())
        assert r.status_code == 200
        wait_for_log(server, "failing.lua:5: attempt to index a nil value")
        assert len(c.get("/instances").json()) == 1
        assert c.get("/system").status_code == 200


def test_endless_loop_is_cut_off(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    endless = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  while true do end
end
function ReceivedInstanceFilter(dicom, origin, info)
  if origin['RequestOrigin'] == 'Lua' then while true do end end
  return true
end
"""
    server = isengard(
        {"LuaScripts": scripts(tmp_path, endless=endless), "ExecuteLuaEnabled": True, "LuaMaxInstructions": 10**7}
    )
    with server.client() as c:
        started = time.monotonic()
        assert c.post("/instances", content=sample("Phenix", "IM-0001-0001.dcm").read_bytes()).status_code == 200
        wait_for_log(server, "instruction budget")
        # pcall cannot swallow the budget: the loop around it is cut too
        r = c.post("/tools/execute-script", content=b"while true do pcall(function() while true do end end) end")
        assert_orthanc_error(r, 500, "Cannot execute a Lua command")
        assert "instruction budget" in r.json()["Details"]
        # nor can a coroutine, nor a loop that keeps starting coroutines
        r = c.post(
            "/tools/execute-script",
            content=b"while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        )
        assert "instruction budget" in r.json()["Details"]
        assert time.monotonic() - started < 30  # cut off, not endless (about 1 s here)
        # a nested callback (the filter of an upload made by a script) that spends its budget fails alone
        [instance] = c.get("/instances").json()
        again = f"RestApiPost('/instances', RestApiGet('/instances/{instance}/file')) print('after')"
        assert c.post("/tools/execute-script", content=again.encode()).text == "after\n"
        assert c.post("/tools/execute-script", content=b"print('alive')").text == "alive\n"


def test_callbacks_get_orthanc_arguments(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    script = """
function Initialize() print('init ' .. ParseJson(RestApiGet('/system'))['Name']) end
-- the tags are converted once for both callbacks, but each gets its own table: this write is not seen below
function ReceivedInstanceFilter(dicom, origin, info) dicom['Modality'] = 'XX' return true end
function OnStoredInstance(instanceId, tags, metadata, origin)
  print('stored ' .. instanceId .. ' ' .. tags['Modality'] .. ' ' .. origin['RequestOrigin'] .. ' '
        .. metadata['Origin'] .. ' ' .. tags['PatientID'])
end
function OnStableSeries(seriesId, tags, metadata)
  print('stable series ' .. seriesId .. ' ' .. tags['Modality'])
end
function OnStableStudy(studyId, tags, metadata)
  print('stable study ' .. studyId .. ' ' .. tags['PatientID'])
end
function Finalize() print('finalize') end
"""
    server = isengard({"LuaScripts": scripts(tmp_path, events=script), "StableAge": 1})
    wait_for_log(server, "init IsengardTest")
    [stored] = server.upload(sample("Phenix", "IM-0001-0001.dcm"))
    instance: Any = server.get(f"/instances/{stored['ID']}").json()
    study: Any = server.get(f"/studies/{stored['ParentStudy']}").json()
    wait_for_log(server, f"stored {stored['ID']} CT RestApi RestApi {study['PatientMainDicomTags']['PatientID']}")
    wait_for_log(server, f"stable series {instance['ParentSeries']} CT")
    wait_for_log(server, f"stable study {stored['ParentStudy']} {study['PatientMainDicomTags']['PatientID']}")
    server.stop()
    wait_for_log(server, "finalize")


def test_heart_beat_configuration_and_http_client(tmp_path: Path, isengard: Callable[..., ServerProcess]) -> None:
    script = """
beats = 0
function OnHeartBeat()
  beats = beats + 1
  if beats == 2 then
    local config = GetOrthancConfiguration()
    SetHttpCredentials('alice', 'pw')
    SetHttpTimeout(5)
    local url = 'http://127.0.0.1:' .. config['HttpPort'] .. '/system'
    local system = ParseJson(HttpGet(url))
    print('beat ' .. config['Name'] .. ' ' .. system['DicomAet'] .. ' ' .. tostring(HttpGet(url .. 'x')))
  end
end
"""
    config = {"LuaScripts": scripts(tmp_path, beat=script), "LuaHeartBeatPeriod": 1, "Name": "Beating"}
    server = isengard({**config, "AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}})
    wait_for_log(server, "beat Beating ORTHANC nil")


def test_rest_api_builtin_flag_and_headers(isengard: Callable[..., ServerProcess]) -> None:
    """RestApi*(uri, [body,] builtin, headers): builtin=true reaches Orthanc's own REST API only, where the
    routes a plugin added (here the explorer's) do not exist; headers reach the route."""
    server = isengard({"ExecuteLuaEnabled": True, "Name": "Minas"})
    [stored] = server.upload(sample("Phenix", "IM-0001-0001.dcm"))
    preview = f"/instances/{stored['ID']}/preview"
    with server.client() as c:

        def run(source: str) -> str:
            r = c.post("/tools/execute-script", content=source.encode())
            assert r.status_code == 200, r.text
            return r.text

        assert run("print(RestApiGet('/app/explorer.html') ~= nil, RestApiGet('/app/explorer.html', true))") == (
            "true, nil\n"
        )
        assert run("print(RestApiGet('/app/explorer.html', false) ~= nil)") == "true\n"
        assert run("print(ParseJson(RestApiGet('/system', true))['Name'])") == "Minas\n"
        assert run("print(ParseJson(RestApiPost('/tools/lookup', '1.2.3', true))[1])") == "nil\n"  # [] is built in
        assert run("print(RestApiPost('/tools/execute-script', 'x = 1', true) ~= nil)") == "true\n"  # Orthanc's core
        # the Accept header chooses the preview's format, PNG by default
        assert run(f"local p = RestApiGet('{preview}', true) print(p:byte(1, 2))") == "137, 80\n"
        jpeg = f"local p = RestApiGet('{preview}', true, {{ Accept = 'image/jpeg' }}) print(p:byte(1, 2))"
        assert run(jpeg) == "255, 216\n"
        jpeg = f"local p = RestApiGet('{preview}', false, {{ accept = 'image/jpeg' }}) print(p:byte(1, 2))"
        assert run(jpeg) == "255, 216\n"
        # RestApiDelete answers true, or nil (not false) as Orthanc
        assert run(f"print(RestApiDelete('/instances/{stored['ID']}', true), RestApiDelete('/ui/x'))") == (
            "true, nil\n"
        )
        assert c.get("/instances").json() == []
