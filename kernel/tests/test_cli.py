"""The command line: sample configuration, version, import into a running server."""

from __future__ import annotations

import subprocess
import sys

from isengard import ORTHANC_VERSION, __version__
from isengard.config import parse_json_with_comments
from isengard.testing import sample


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isengard.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert __version__ in out.stdout and ORTHANC_VERSION in out.stdout


def test_config_writes_a_commented_sample_and_never_overwrites(tmp_path):
    target = tmp_path / "orthanc.json"
    assert run_cli(f"--config={target}").returncode == 0
    values = parse_json_with_comments(target.read_text(), str(target))
    assert values["HttpPort"] == 8042 and values["DicomAet"] == "ORTHANC"
    before = target.read_text()
    again = run_cli(f"--config={target}")
    assert again.returncode == 2 and "not overwriting" in again.stderr
    assert target.read_text() == before
    stdout = run_cli("--config=-")
    assert parse_json_with_comments(stdout.stdout, "stdout") == values


def test_bad_configuration_is_reported_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    out = run_cli(str(bad))
    assert out.returncode == 2
    assert "not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_import_sends_a_tree_with_a_summary(isengard, tmp_path):
    server = isengard()
    folder = tmp_path / "tree"
    (folder / "nested").mkdir(parents=True)
    for i, f in enumerate(sorted(sample("Knix", "Loc").iterdir())[:5]):
        (folder / ("nested" if i % 2 else "") / f.name).write_bytes(f.read_bytes())
    (folder / "notes.txt").write_text("not DICOM")
    out = subprocess.run(
        [sys.executable, "-m", "isengard.cli", "import", str(folder), "--url", server.url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "6 files: 1 Failure, 5 Success" in out.stdout
    assert "notes.txt" in out.stderr
    assert len(server.get("/instances").json()) == 5
    again = subprocess.run(
        [sys.executable, "-m", "isengard.cli", "import", str(folder / "nested"), "--url", server.url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2 files: 2 AlreadyStored" in again.stdout
