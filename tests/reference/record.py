"""Record the answers of a reference Orthanc that the integration tests compare Isengard with (see README.md).

    python tests/reference/record.py --reference http://localhost:8043 \
        --scratch http://localhost:18943 --compressed http://localhost:18944

``--reference`` must hold every sample of the shared data, loaded in the order of ``find`` (only GET is sent to
it). ``--scratch`` and ``--compressed`` are empty Orthancs that the script writes to (UserMetadata and
UserContentType as in README.md; StorageCompression false and true respectively).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pydicom

from isengard.testing import SAMPLES

HERE = Path(__file__).parent
LEVELS = ("patients", "studies", "series", "instances")
#: Answers that change with each reception (dates, uuids, stability) are left out of the recordings.
VOLATILE = {"LastUpdate", "FileUuid", "IsStable", "Uuid", "ReceptionDate"}
#: Instances whose full tags, header and content are recorded: transfer syntaxes, character sets, sequences,
#: private tags, multi-frame and the quirks of Orthanc's own reading (see README.md).
TAG_SAMPLES = (
    "Brainix/Flair/IM-0001-0001.dcm",
    "Knee/T1/IM-0001-0001.dcm",
    "Comunix/Pet/IM-0001-0001.dcm",
    "Phenix/IM-0001-0001.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.2.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.90.dcm",
    "Formats/JpegLossless.dcm",
    "HierarchicalAnonymization/2019-03-28/PR000000.dcm",
    "HierarchicalAnonymization/StructuredReports/IM0",
    "Encodings/ISO_IR13.dcm",
    "Encodings/DavidClunie/SCSH32",
    "Encodings/DavidClunie/SCSX2",
    "Encodings/DavidClunie/SCSARAB",
    "Encodings/Lena-utf8.dcm",
)
CONTENT_SAMPLES = (
    "Brainix/Flair/IM-0001-0001.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.2.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm",
)
COMPRESSED_SAMPLES = (
    "Brainix/Flair/IM-0001-0001.dcm",
    "Phenix/IM-0001-0001.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm",
)


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def save(name: str, data: Any) -> None:
    (HERE / name).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n")


def upload_order(ref: httpx.Client) -> tuple[list[str], set[str]]:
    """Sample paths in the order the reference received them (its NewInstance changes), duplicates included,
    and the identifiers of the instances that came from these samples (the reference may hold others)."""
    seq: dict[str, int] = {}
    ids: dict[str, str] = {}
    since = 0
    while True:
        page = ref.get("/changes", params={"since": since, "limit": 1000}).json()
        for change in page["Changes"]:
            if change["ChangeType"] == "NewInstance":
                sop = ref.get(f"/instances/{change['ID']}").json()["MainDicomTags"]["SOPInstanceUID"]
                seq.setdefault(sop, change["Seq"])
                ids[sop] = change["ID"]
        since = page["Last"]
        if page["Done"]:
            break
    found = []
    for path in sorted(p for p in SAMPLES.rglob("*") if p.is_file()):
        try:
            sop = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)
        except Exception:  # not DICOM: the reference refused it too
            continue
        if sop in seq:
            found.append((seq[sop], str(path.relative_to(SAMPLES)), sop))
    return [p for _, p, _ in sorted(found)], {ids[sop] for _, _, sop in found}


def content_tree(client: httpx.Client, instance: str, path: str = "", depth: int = 0) -> dict[str, Any]:
    """Every /content path to depth 3: lists as lists, raw values by their MD5 and size."""
    r = client.get(f"/instances/{instance}/content{path}")
    if r.headers.get("content-type", "").startswith("application/json"):
        out: dict[str, Any] = {path or "/": r.json()}
        if depth < 3:
            for child in r.json():
                out.update(content_tree(client, instance, f"{path}/{child}", depth + 1))
        return out
    return {path: {"md5": hashlib.md5(r.content).hexdigest(), "size": len(r.content)}}


def sample_resources(ref: httpx.Client, instances: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The expanded resources of every level that hold an instance of the samples, in the reference's order."""
    out = {"instances": [r for r in ref.get("/instances", params={"expand": ""}).json() if r["ID"] in instances]}
    for level, child_level, parent_key in (
        ("series", "instances", "ParentSeries"),
        ("studies", "series", "ParentStudy"),
        ("patients", "studies", "ParentPatient"),
    ):
        parents = {r[parent_key] for r in out[child_level]}
        out[level] = [r for r in ref.get(f"/{level}", params={"expand": ""}).json() if r["ID"] in parents]
    return out


def record_reference(ref: httpx.Client) -> None:
    order, sample_instances = upload_order(ref)
    save("upload-order.json", order)
    resources = sample_resources(ref, sample_instances)
    for level in LEVELS:
        save(f"{level}.json", strip(resources[level]))
    ids = {level: [r["ID"] for r in resources[level]] for level in LEVELS}
    known = {i for level in LEVELS for i in ids[level]}
    children = {}
    for parent, routes in (("patients", ("studies", "series", "instances")), ("studies", ("series", "instances"))):
        for rid in ids[parent]:
            for child in routes:
                children[f"/{parent}/{rid}/{child}"] = [c["ID"] for c in ref.get(f"/{parent}/{rid}/{child}").json()]
    save("children.json", children)
    save(
        "statistics.json",
        {f"/{lvl}/{rid}": ref.get(f"/{lvl}/{rid}/statistics").json() for lvl in LEVELS for rid in ids[lvl][:60]},
    )
    save(
        "attachments.json",
        {rid: strip(ref.get(f"/instances/{rid}/attachments/dicom/info").json()) for rid in ids["instances"]},
    )
    save(
        "metadata.json",
        {
            f"/{lvl}/{rid}": strip(ref.get(f"/{lvl}/{rid}/metadata", params={"expand": ""}).json())
            for lvl in LEVELS
            for rid in ids[lvl]
        },
    )
    shared = {}
    for lvl in LEVELS[:3]:
        for rid in ids[lvl][:3]:
            shared[f"/{lvl}/{rid}"] = ref.get(f"/{lvl}/{rid}/shared-tags").json()
    save("shared-tags.json", shared)
    by_path = {}
    for sample in TAG_SAMPLES:
        sop = str(pydicom.dcmread(SAMPLES / sample, stop_before_pixels=True, force=True).SOPInstanceUID)
        [found] = [
            i for i in ids["instances"] if ref.get(f"/instances/{i}").json()["MainDicomTags"]["SOPInstanceUID"] == sop
        ]
        by_path[sample] = found
    save("tags.json", {s: ref.get(f"/instances/{i}/tags").json() for s, i in by_path.items()})
    save("header.json", {s: ref.get(f"/instances/{i}/header").json() for s, i in by_path.items()})
    save("content.json", {s: content_tree(ref, by_path[s]) for s in CONTENT_SAMPLES})
    changes, since = [], 0
    while True:
        page = ref.get("/changes", params={"since": since, "limit": 1000}).json()
        changes += [
            [c["ChangeType"], c["ResourceType"], c["ID"], c["Path"]] for c in page["Changes"] if c["ID"] in known
        ]
        since = page["Last"]
        if page["Done"]:
            break
    save("changes.json", changes)
    save("system.json", ref.get("/system").json())


def record_scratch(scratch: httpx.Client, compressed: httpx.Client) -> None:
    """What Orthanc answers to writes: deletions, and the DICOM attachment compressed (zlib is deterministic)."""
    answers: dict[str, Any] = {}
    files = (
        "PatientWith2studies/TEST_1_study_1234.dcm",
        "PatientWith2studies/TEST_1_study_2345.dcm",
        "Brainix/Flair/IM-0001-0001.dcm",
        "Brainix/Flair/IM-0001-0002.dcm",
        "Brainix/Epi/IM-0001-0001.dcm",
    )
    up = {f: scratch.post("/instances", content=(SAMPLES / f).read_bytes()).json() for f in files}
    answers["uploads"] = up
    steps = (
        ("instances", files[2], "ID"),
        ("instances", files[3], "ID"),
        ("studies", files[0], "ParentStudy"),
        ("patients", files[4], "ParentPatient"),
        ("series", files[1], "ParentSeries"),
    )
    answers["deletions"] = [
        [f"/{lvl}/{up[f][key]}", scratch.delete(f"/{lvl}/{up[f][key]}").json()] for lvl, f, key in steps
    ]
    answers["statistics"] = scratch.get("/statistics").json()
    infos = {}
    for sample in COMPRESSED_SAMPLES:
        instance = compressed.post("/instances", content=(SAMPLES / sample).read_bytes()).json()["ID"]
        infos[sample] = {
            "attachments": compressed.get(f"/instances/{instance}/attachments", params={"full": ""}).json(),
            "dicom": strip(compressed.get(f"/instances/{instance}/attachments/dicom/info").json()),
            "statistics": compressed.get(f"/instances/{instance}/statistics").json(),
        }
    answers["compressed"] = infos
    save("writes.json", answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default="http://localhost:8043")
    parser.add_argument("--scratch")
    parser.add_argument("--compressed")
    args = parser.parse_args()
    with httpx.Client(base_url=args.reference, timeout=60) as ref:
        record_reference(ref)
    if args.scratch and args.compressed:
        with (
            httpx.Client(base_url=args.scratch, timeout=60) as s,
            httpx.Client(base_url=args.compressed, timeout=60) as z,
        ):
            record_scratch(s, z)


if __name__ == "__main__":
    main()
