"""Record the pictures of a reference Orthanc that tests/test_imaging.py compares Isengard's with.

    python tests/reference/imaging/record.py --reference http://localhost:8043 --scratch http://localhost:18950

``--reference`` must hold the samples of the shared data (only GET is sent to it); ``--scratch`` is an Orthanc
(1.10, no plugins) that receives the files of synthetic.py. Each recording is a small PNG named after its case.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
import pydicom

from isengard.model import hash_identifier
from isengard.testing import sample

HERE = Path(__file__).parent

#: Recording name: (a sample path, or "synthetic:NAME"; the route below /instances/{id}/).
RECORDINGS: dict[str, tuple[str, str]] = {
    "brainix-preview": ("Brainix/Epi/IM-0001-0001.dcm", "preview"),
    "brainix-rendered": ("Brainix/Epi/IM-0001-0001.dcm", "rendered"),
    "signed-ct-rendered-w160-smooth": ("TransferSyntaxes/1.2.840.10008.1.2.4.70.dcm", "rendered?width=160&smooth=1"),
    "phenix-rendered-lung-w128": ("Phenix/IM-0001-0001.dcm", "rendered?window-center=-600&window-width=1600&width=128"),
    "slope-rendered-h128": ("TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm", "rendered?height=128"),
    "monochrome1-jpeg-rendered-w200": ("Issue44/Monochrome1-Jpeg.dcm", "rendered?width=200"),
    "palette-preview": ("synthetic:palette", "preview"),
    "signed-rescale-frame1-rendered": ("synthetic:signed-rescale", "frames/1/rendered"),
    "monochrome1-12bit-rendered": ("synthetic:monochrome1-12bit", "rendered"),
    "monochrome1-12bit-preview": ("synthetic:monochrome1-12bit", "preview"),
}


def instance_id(data: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    uids = [str(ds.get(k, "")) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    return hash_identifier(*uids)


def main() -> None:
    import synthetic  # this folder is on sys.path when the script runs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()
    for name, (source, route) in RECORDINGS.items():
        if source.startswith("synthetic:"):
            data = synthetic.build(source.removeprefix("synthetic:"))
            httpx.post(f"{args.scratch}/instances", content=data).raise_for_status()
            base = args.scratch
        else:
            data = sample(*source.split("/")).read_bytes()
            base = args.reference
        answer = httpx.get(f"{base}/instances/{instance_id(data)}/{route}")
        answer.raise_for_status()
        (HERE / f"{name}.png").write_bytes(answer.content)
        print(f"{name}.png: {len(answer.content)} bytes")


if __name__ == "__main__":
    main()
