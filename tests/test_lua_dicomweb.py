"""The Lua plugin's ReceivedInstanceFilter applies to instances received by the DICOMweb plugin's STOW-RS too.

Both plugins installed together, as the README's set-up installs them: ingest has one filter, whatever the door.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pydicom

from isengard.testing import ServerProcess, sample

SCRIPT = """
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.Modality == 'MR'
end
"""
CT = sample("Phenix", "IM-0001-0001.dcm")
MR = sample("Brainix", "Flair", "IM-0001-0001.dcm")


def _stow(url: str, *files: Path) -> httpx.Response:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes() + b"\r\n" for f in files
    )
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    return httpx.post(f"{url}/dicom-web/studies", content=body + f"--{boundary}--\r\n".encode(), headers=headers)


def test_stow_rs_goes_through_the_lua_filter(tmp_path: Path) -> None:
    (tmp_path / "filter.lua").write_text(SCRIPT)
    server = ServerProcess(tmp_path / "server", {"LuaScripts": [str(tmp_path / "filter.lua")]}).start()
    try:
        refused = _stow(server.url, CT)
        assert refused.status_code == 409  # every instance failed (PS3.18 10.5.3)
        assert "00081198" in refused.json()  # FailedSOPSequence
        partial = _stow(server.url, CT, MR)
        assert partial.status_code == 202
        with server.client() as c:
            assert c.get("/statistics").json()["CountInstances"] == 1
            [kept] = c.get("/instances?expand").json()
        assert kept["MainDicomTags"]["SOPInstanceUID"] == str(pydicom.dcmread(MR).SOPInstanceUID)
        assert len(partial.json()["00081199"]["Value"]) == 1  # ReferencedSOPSequence: the MR
    finally:
        server.discard()
