"""The Lua plugin's IncomingWorklistRequestFilter rewrites the queries the worklist plugin answers.

Both plugins are installed together here, as the README's set-up installs them: the filter sees the worklist
query as a table (Orthanc Book, users/lua.rst) and its answer is what the worklist plugin matches.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from isengard.testing import ServerProcess

SCRIPT = """
function IncomingWorklistRequestFilter(query, origin)
  -- Orthanc's Short format: tags as "gggg,eeee", sequences as arrays of tables
  if origin['RemoteAet'] == 'OLDCT' then
    query['0010,0010'] = 'SMITH*'
    query['0040,0100'][1]['0008,0060'] = 'CT'
  end
  return query
end
"""


def _find(port: int, aet: str) -> list[str]:
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.ScheduledProcedureStepSequence = [Dataset()]
    ae = AE(ae_title=aet)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="ISENGARD")
    assert assoc.is_established
    try:
        names = [
            str(identifier.PatientName)
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind)
            if status and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        assoc.release()
    return sorted(names)


def test_lua_filter_rewrites_worklist_queries(tmp_path: Path) -> None:
    (tmp_path / "filter.lua").write_text(SCRIPT)
    worklists = tmp_path / "worklists"
    worklists.mkdir()
    config = {
        "DicomAet": "ISENGARD",
        "DicomAlwaysAllowFindWorklist": True,
        "Worklists": {"Enable": True, "Database": str(worklists)},
        "LuaScripts": [str(tmp_path / "filter.lua")],
    }
    server = ServerProcess(tmp_path / "server", config).start()
    try:
        with server.client() as c:
            for pid, name in (("P1", "SMITH^JOHN"), ("P2", "DOE^JANE")):
                step = {"Modality": "CT", "ScheduledProcedureStepStartDate": "20261125"}
                tags = {"PatientID": pid, "PatientName": name, "ScheduledProcedureStepSequence": [step]}
                assert c.post("/worklists/create", json={"Tags": tags}).status_code == 200
        port = server.config["DicomPort"]
        assert _find(port, "NEWCT") == ["DOE^JANE", "SMITH^JOHN"]  # not rewritten: universal matching
        assert _find(port, "OLDCT") == ["SMITH^JOHN"]  # rewritten by the script before matching
    finally:
        server.discard()
