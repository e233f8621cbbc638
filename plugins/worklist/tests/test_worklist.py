"""The worklist plugin against dcmtk: the same .wl files and queries asked of Isengard and of ``wlmscpfs``.

The worklist databases and queries are dcmtk's own (samples/Worklists, dump files turned into DICOM with
``dump2dcm``), sent with dcmtk's ``findscu -W`` and with pynetdicom. Answers are compared as sets of datasets
with their non-empty values: ``wlmscpfs`` adds empty attributes of its own to the steps it returns and pads values
to an even length, neither of which is a difference a modality sees. The top-level values are also compared with
what Orthanc's worklists plugin answers to the same queries (samples/Worklists/Dcmtk/Expected).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, PatientRootQueryRetrieveInformationModelFind

from isengard.testing import ServerProcess, assert_orthanc_error, free_port, require_tool, sample, wait_for_port

SUCCESS, PENDING, MATCHING_TERMINATED, UNABLE_TO_PROCESS = 0x0000, 0xFF00, 0xFE00, 0xC000
CALLED = "WLMSCP"
QUERIES = sorted(sample("Worklists", "Dcmtk", "Queries").glob("*.dump"), key=lambda p: int(p.stem[len("wlistqry") :]))


def dump2dcm(dump: Path, target: Path) -> Path:
    subprocess.run([require_tool("dump2dcm"), "-q", str(dump), str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """dcmtk's worklist database as .wl files, and its queries as DICOM files."""
    root = tmp_path_factory.mktemp("worklists")
    (root / "db").mkdir()
    (root / "queries").mkdir()
    for dump in sample("Worklists", "Dcmtk", "Database").glob("*.dump"):
        dump2dcm(dump, root / "db" / (dump.stem + ".wl"))
    for dump in QUERIES:
        dump2dcm(dump, root / "queries" / (dump.stem + ".dcm"))
    return {"db": root / "db", "queries": root / "queries"}


@contextlib.contextmanager
def run_wlmscpfs(folder: Path, root: Path) -> Iterator[int]:
    """dcmtk's worklist server on the files of ``folder``, laid out as it wants them: a folder per called AET."""
    shutil.copytree(folder, root / CALLED)
    (root / CALLED / "lockfile").touch()
    port = free_port()
    process = subprocess.Popen([require_tool("wlmscpfs"), "-dfp", str(root), str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def wlmscpfs(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with run_wlmscpfs(files["db"], tmp_path_factory.mktemp("wlmscpfs")) as port:
        yield port


def start(tmp_path: Path, worklists: dict[str, Any], **config: Any) -> ServerProcess:
    base = {"DicomAet": CALLED, "DicomAlwaysAllowFindWorklist": True, "Worklists": worklists}
    return ServerProcess(tmp_path, {**base, **config}).start()


@pytest.fixture(scope="module")
def server(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    worklists = {"Enable": True, "Database": str(files["db"])}
    process = start(tmp_path_factory.mktemp("server"), worklists, DicomAlwaysAllowFind=True)
    yield process
    process.discard()


def findscu(port: int, query: Path, out: Path) -> list[Dataset]:
    """The answers dcmtk's findscu receives, in the order they came."""
    out.mkdir(parents=True, exist_ok=True)
    command = [require_tool("findscu"), "-W", "-X", "-od", str(out), "-aec", CALLED, "127.0.0.1", str(port)]
    subprocess.run([*command, str(query)], check=True, capture_output=True)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def find(
    port: int, query: Dataset, *, aet: str = "FINDSCU", model: str = ModalityWorklistInformationFind
) -> tuple[list[Dataset], int]:
    """(answers, final status) of a C-FIND asked with pynetdicom."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED)
    assert assoc.is_established
    answers, final = [], None
    try:
        for status, identifier in assoc.send_c_find(query, model):
            if status and status.Status in (PENDING, 0xFF01):
                answers.append(identifier)
            elif status:
                final = status.Status
    finally:
        assoc.release()
    return answers, final


def values(ds: Dataset) -> dict[str, Any]:
    """A dataset's non-empty values, sequences as lists of non-empty items, without the character set (see the
    top: an empty value and no value, an empty sequence and no sequence, are the same to a modality)."""
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag == 0x00080005 or elem.tag.element == 0:
            continue
        if elem.VR == "SQ":
            items = sorted((i for i in (values(item) for item in elem.value) if i), key=json.dumps)
            if items:
                out[elem.keyword] = items
        elif elem.value not in (None, "", b""):
            out[elem.keyword] = str(elem.value).strip(" \x00")
    return out


def answer_set(answers: list[Dataset]) -> list[str]:
    return sorted(json.dumps(values(a), sort_keys=True) for a in answers)


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.stem)
def test_same_answers_as_wlmscpfs(query: Path, files: dict[str, Path], wlmscpfs: int, server: ServerProcess,
                                  tmp_path: Path) -> None:  # fmt: skip
    request = files["queries"] / (query.stem + ".dcm")
    expected = findscu(wlmscpfs, request, tmp_path / "dcmtk")
    got = findscu(server.config["DicomPort"], request, tmp_path / "isengard")
    assert answer_set(got) == answer_set(expected)
    # and the top-level values Orthanc's worklists plugin answers (its integration tests' expectations)
    number = query.stem[len("wlistqry") :]
    orthanc = json.loads(sample("Worklists", "Dcmtk", "Expected", f"all-{number}.json").read_text())
    assert sorted(map(top_level, got)) == sorted(top_level_lines(lines) for lines in orthanc)


def top_level(ds: Dataset) -> str:
    """The non-empty top-level text values of an answer, keyed "gggg,eeee"."""
    out = {
        f"{e.tag.group:04x},{e.tag.element:04x}": str(e.value).strip()
        for e in ds
        if e.VR != "SQ" and e.tag != 0x00080005 and e.value not in (None, "")
    }
    return json.dumps(out, sort_keys=True)


def top_level_lines(lines: list[str]) -> str:
    """The same from dcmdump lines as Orthanc's expectations hold them: '(0010,0010) PN [VIVALDI^ANTONIO ]'."""
    out = {}
    for line in lines:
        if "[" in line and line[12:14] != "SQ":
            out[line[1:10].lower()] = line[line.index("[") + 1 : line.rindex("]")].strip()
    return json.dumps(out, sort_keys=True)


#: Queries as modalities send them (group lengths, empty sequences, dozens of empty keys) and what they find:
#: (AccessionNumber, ScheduledStationAETitle) of each answer. wlmscpfs cannot be asked: it ignores these worklists
#: as "incomplete" (they lack attributes it requires), where Orthanc serves them.
SEQUENCE_QUERIES = {
    "orig.7814": [("AN123457", "STATION_AET")] * 2,
    "7814.without.length": [("AN123457", "STATION_AET")] * 2,
    "7814.without.seq": [("AN123457", "STATION_AET")] * 2,
    "7814.without.station.aet": [("AN123457", "ORTHANCTEST")] * 2 + [("AN123457", "STATION_AET")] * 2,
    "basic.7705": [("AN123456", "STATION_AET")] * 2,
}


def test_sequences(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    for station in ("STATION_AET", "NO_STATION_AET"):
        for dump in sample("Worklists", "Sequences", station).glob("*.dump"):
            dump2dcm(dump, folder / f"{station}-{dump.stem}.wl")
    server = start(tmp_path / "server", {"Enable": True, "Database": str(folder)})
    try:
        for name, expected in SEQUENCE_QUERIES.items():
            query = dump2dcm(sample("Worklists", "Sequences", "Queries", name + ".dump"), tmp_path / f"{name}.dcm")
            answers = findscu(server.config["DicomPort"], query, tmp_path / name)
            found = [(a.AccessionNumber, a.ScheduledProcedureStepSequence[0].ScheduledStationAETitle) for a in answers]
            assert sorted(found) == expected, name
            asked = {int(e.tag) for e in pydicom.dcmread(query) if e.tag.element != 0 and e.tag != 0x00080005}
            assert all({int(e.tag) for e in a if e.tag != 0x00080005} == asked for a in answers), name
    finally:
        server.discard()


#: Identifiers of the matching test below (step keys, and top-level ones as top_<keyword>), asked of both servers.
#: Where the two differ on purpose, the test after it checks Isengard alone: names are matched case-insensitively
#: (Orthanc's CaseSensitivePN), and wlmscpfs neither takes wildcards on ScheduledStationAETitle nor matches
#: StudyInstanceUID, which PS3.4 K.6 allows.
COMMON_QUERIES: list[dict[str, str]] = [
    {"Modality": "CT"},
    {"top_PatientName": "VIVALDI*"},
    {"top_PatientName": "*WOLF*", "Modality": "CT"},
    {"ScheduledProcedureStepStartDate": "19951015-19960101", "ScheduledProcedureStepStartTime": "090000-"},
    {"ScheduledProcedureStepStartDate": "19951015", "ScheduledProcedureStepStartTime": "0800-0900"},
    {"ScheduledProcedureStepStartTime": "0800-0900"},
    {"ScheduledProcedureStepStartDate": "-19951231"},
    {"ScheduledPerformingPhysicianName": "JOHN*"},
    {"ScheduledStationAETitle": "AA33"},
    {"top_PatientID": "AV35674\\HF"},
    {"top_AccessionNumber": "0000?"},
    {"top_PatientSex": "M", "Modality": "MR"},
    {"top_RequestedProcedurePriority": "HIGH", "ScheduledStationName": "STN*"},
    {"top_PatientName": "NOBODY"},
]


@pytest.mark.parametrize("keys", COMMON_QUERIES, ids=lambda k: ",".join(f"{n}={v}" for n, v in k.items()))
def test_pynetdicom_same_as_wlmscpfs(keys: dict[str, str], wlmscpfs: int, server: ServerProcess) -> None:
    expected, expected_status = find(wlmscpfs, worklist_query(**keys))
    got, status = find(server.config["DicomPort"], worklist_query(**keys))
    assert status == expected_status == SUCCESS
    assert answer_set(got) == answer_set(expected)


def worklist_query(**keys: Any) -> Dataset:
    """An identifier asking for the patient's name and ID, with ``keys`` in a ScheduledProcedureStepSequence item
    (and the top-level keys given as ``top_<keyword>``)."""
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    step = Dataset()
    for name, value in keys.items():
        if name.startswith("top_"):
            setattr(query, name[4:], value)
        else:
            setattr(step, name, value)
    query.ScheduledProcedureStepSequence = [step]
    return query


def names(answers: list[Dataset]) -> list[str]:
    return sorted(str(a.PatientName) for a in answers)


def test_matching_rules(server: ServerProcess) -> None:
    port = server.config["DicomPort"]
    # single value in the step, returned as asked (only the matching step, only the keys asked for)
    answers, status = find(port, worklist_query(Modality="MR", ScheduledStationAETitle=""))
    assert status == SUCCESS and answers
    for a in answers:
        assert [e.keyword for e in a] == [
            "SpecificCharacterSet", "PatientName", "PatientID", "ScheduledProcedureStepSequence"
        ]  # fmt: skip
        assert [s.Modality for s in a.ScheduledProcedureStepSequence] == ["MR"]
    # a multi-valued ScheduledStationAETitle ("AA32\AA33") matches one of its values
    assert names(find(port, worklist_query(ScheduledStationAETitle="AA33"))[0]) == ["VIVALDI^ANTONIO"]
    # date ranges; wildcards and case-insensitive names; universal matching
    in_range = find(port, worklist_query(ScheduledProcedureStepStartDate="19951001-19951031"))[0]
    assert "VIVALDI^ANTONIO" in names(in_range)
    assert all("19951001" <= a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate <= "19951031"
               for a in in_range)  # fmt: skip
    assert set(names(find(port, worklist_query(top_PatientName="m?zart*"))[0])) == {"MOZART^WOLFGANG^AMADEUS"}
    assert names(find(port, worklist_query(ScheduledStationAETitle="AA3*"))[0]) == ["HAYDN^FRANZ^JOSEPH",
                                                                                   "VIVALDI^ANTONIO"]  # fmt: skip
    assert len(find(port, worklist_query())[0]) == 10
    # UID lists
    uids = "1.2.276.0.7230010.3.2.101\\1.2.276.0.7230010.3.2.108"
    assert names(find(port, worklist_query(top_StudyInstanceUID=uids))[0]) == ["BEETHOVEN^LUDWIG^VAN",
                                                                                "VIVALDI^ANTONIO"]  # fmt: skip
    # a key the worklists lack is returned empty
    answers = find(port, worklist_query(top_PatientWeight=None, top_AccessionNumber="00000"))[0]
    assert len(answers) == 1 and "PatientWeight" in answers[0] and answers[0].PatientWeight in (None, "")


def test_character_sets(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    dump2dcm(sample("Worklists", "Encodings", "database.dump"), folder / "utf8.wl")
    shutil.copy(sample("Worklists", "Encodings", "issue49-latin1.wl"), folder / "latin1.wl")
    undeclared = pydicom.dcmread(sample("Worklists", "Encodings", "issue49-latin1.wl"))
    del undeclared[0x00080005]  # the same Latin-1 bytes, the character set left unsaid
    undeclared.AccessionNumber = "UNDECLARED"
    undeclared.save_as(folder / "undeclared.wl")
    server = start(tmp_path / "server", {"Enable": True, "Database": str(folder)})
    try:
        port = server.config["DicomPort"]
        query = Dataset()
        query.SpecificCharacterSet = "ISO_IR 192"
        query.PatientName = "*ü*"
        answers, status = find(port, query)
        assert status == SUCCESS and [str(a.PatientName) for a in answers] == ["Test-éüäöòДΘĝדصķћ๛ﾈİ"]
        assert answers[0].SpecificCharacterSet == "ISO_IR 192"
        query.PatientName = "VANILLÉ*"  # asked in UTF-8, found in a Latin-1 worklist, answered in Latin-1
        query.AccessionNumber = ""
        answers, _ = find(port, query)
        assert sorted((a.AccessionNumber, str(a.PatientName)) for a in answers) == [
            ("123456", "VANILLÉ^LAURA^^^Mme"),
            ("UNDECLARED", "VANILLÉ^LAURA^^^Mme"),  # read in the DefaultEncoding (Latin1), as Orthanc
        ]
        assert [a.SpecificCharacterSet for a in answers] == ["ISO_IR 100"] * 2
    finally:
        server.discard()


def test_filter_issuer_aet_and_limit(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    for dump in sample("Worklists", "Sequences", "STATION_AET").glob("*.dump"):
        dump2dcm(dump, folder / (dump.stem + ".wl"))
    config = {"Enable": True, "Database": str(folder), "FilterIssuerAet": True}
    server = start(tmp_path / "server", config)
    try:
        port = server.config["DicomPort"]
        query = Dataset()
        query.PatientName = ""
        everything = len(list(folder.glob("*.wl")))
        mine = find(port, query, aet="STATION_AET")[0]
        assert 0 < len(mine) < everything  # the worklists of another station are left out
        assert find(port, query, aet="NOBODY")[0] == []
        # naming a station in the query replaces the filter
        assert len(find(port, worklist_query(ScheduledStationAETitle="STATION_AET"), aet="NOBODY")[0]) == len(mine)
    finally:
        server.discard()
    config = {"Enable": True, "Database": str(folder), "LimitAnswers": 2}
    server = start(tmp_path / "limited", config)
    try:
        answers, status = find(server.config["DicomPort"], worklist_query())
        assert len(answers) == 2 and status == MATCHING_TERMINATED
    finally:
        server.discard()


@pytest.mark.parametrize("in_folder", [True, False], ids=["folder", "index"])
def test_rest_then_dicom(in_folder: bool, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    worklists = {"Enable": True, "Database": str(folder) if in_folder else ""}
    server = start(tmp_path / "server", worklists)
    try:
        client = server.client()
        tags = {
            "PatientID": "PID-45",
            "PatientName": "Müller^Anna",
            "AccessionNumber": "ACC-1",
            "ScheduledProcedureStepSequence": [
                {"Modality": "CT", "ScheduledStationAETitle": "CT01", "ScheduledProcedureStepStartDate": "20251201"}
            ],
        }
        created = client.post("/worklists/create", json={"Tags": tags}).json()
        assert created["Path"] == f"/worklists/{created['ID']}"
        assert (folder / f"{created['ID']}.wl").exists() == in_folder
        shown = client.get(created["Path"]).json()
        assert shown["ID"] == created["ID"] and shown["Tags"]["PatientName"] == "Müller^Anna"
        assert shown["Tags"]["ScheduledProcedureStepSequence"][0]["Modality"] == "CT"
        assert "StudyInstanceUID" in shown["Tags"]
        listed = client.get("/worklists").json()
        assert [w["ID"] for w in listed] == [created["ID"]]
        assert ("CreationDate" in listed[0]) != in_folder  # Orthanc dates the worklists of its database only
        assert client.get(created["Path"], params={"format": "Short"}).json()["Tags"]["0010,0020"] == "PID-45"

        port = server.config["DicomPort"]
        answers, status = find(port, worklist_query(Modality="CT", ScheduledProcedureStepStartDate="20251201-"))
        assert status == SUCCESS and [str(a.PatientName) for a in answers] == ["Müller^Anna"]
        assert find(port, worklist_query(Modality="MR"))[0] == []

        tags["ScheduledProcedureStepSequence"][0]["Modality"] = "MR"
        assert client.put(created["Path"], json={"Tags": tags}).status_code == 200
        assert len(find(port, worklist_query(Modality="MR"))[0]) == 1
        if not in_folder:  # kept in the index: a restart (or another server on the index) sees it
            server.restart()
            assert len(find(port, worklist_query(Modality="MR"))[0]) == 1

        assert client.delete(created["Path"]).status_code == 200
        assert client.get("/worklists").json() == []
        assert find(port, worklist_query())[0] == []
        assert client.get(created["Path"]).status_code == 404
        assert client.delete(created["Path"]).status_code == 404
        assert_orthanc_error(client.post("/worklists/create", json={"Tags": "nope"}), 400, "Bad file format")
        unscheduled = {"Tags": {"PatientID": "P2"}}  # no scheduled step: refused unless forced, as Orthanc
        assert_orthanc_error(client.post("/worklists/create", json=unscheduled), 400, "Bad file format")
        forced = client.post("/worklists/create", json={**unscheduled, "Force": True}).json()
        assert client.delete(forced["Path"]).status_code == 200
        assert_orthanc_error(client.post("/worklists/create", json={"Tags": {"NoSuchTag": "x"}}), 400)
        assert_orthanc_error(client.post("/worklists/create", content=b"not json"), 400)
    finally:
        server.discard()


def test_files_are_read_at_each_query(tmp_path: Path, files: dict[str, Path]) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    server = start(tmp_path / "server", {"Enable": True, "Database": str(folder)})
    try:
        port = server.config["DicomPort"]
        answers, status = find(port, worklist_query())
        assert answers == [] and status == SUCCESS  # an empty folder answers nothing
        shutil.copy(files["db"] / "wklist1.wl", folder / "a.wl")
        assert names(find(port, worklist_query())[0]) == ["VIVALDI^ANTONIO"]
        time.sleep(0.01)
        shutil.copy(files["db"] / "wklist2.wl", folder / "a.wl")  # replaced: read again
        assert len(find(port, worklist_query())[0]) == 1
        (folder / "a.wl").unlink()
        (folder / "notes.txt").write_text("not a worklist")
        (folder / "broken.wl").write_bytes(b"not DICOM at all")
        assert find(port, worklist_query())[0] == []
    finally:
        server.discard()


def test_bad_queries_fail(server: ServerProcess) -> None:
    port = server.config["DicomPort"]
    two_items = worklist_query()
    two_items.ScheduledProcedureStepSequence.append(Dataset())
    assert find(port, two_items) == ([], UNABLE_TO_PROCESS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the invalid date it is asked to send
        wildcard_in_date = worklist_query(ScheduledProcedureStepStartDate="1995*")
    assert find(port, wildcard_in_date) == ([], UNABLE_TO_PROCESS)
    # a worklist identifier on another information model is not the plugin's: the kernel refuses it
    query = worklist_query()
    assert find(port, query, model=PatientRootQueryRetrieveInformationModelFind) == ([], UNABLE_TO_PROCESS)


def test_disabled_plugin_answers_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    server = start(tmp_path / "server", {"Enable": False, "Database": str(files["db"])})
    try:
        assert find(server.config["DicomPort"], worklist_query()) == ([], UNABLE_TO_PROCESS)
        assert server.get("/worklists").status_code == 404
    finally:
        server.discard()
