"""Synthetic CT series for the benchmarks: realistic headers, 16-bit pixels, proper UID hierarchy, reproducible.

The same layout and seed always give byte-identical files, so Isengard and Orthanc are fed the same data on every
machine. Files are cached in a folder named after the layout; a folder is reused only once it is complete.

    .venv/bin/python benchmarks/generate.py --patients 10 --studies 2 --series 2 --instances 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from tqdm import tqdm

#: Where generated files are kept between runs ($ISENGARD_BENCH_DATA overrides).
DEFAULT_CACHE = Path(os.environ.get("ISENGARD_BENCH_DATA", Path.home() / ".cache" / "isengard-benchmarks"))

FAMILY_NAMES = (  # noqa: SIM905 - as a literal, the names would take a line each
    "SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ HERNANDEZ LOPEZ GONZALEZ WILSON "
    "ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK RAMIREZ LEWIS "
    "ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON BAKER HALL"
).split()
GIVEN_NAMES = (  # noqa: SIM905
    "JAMES MARY ROBERT PATRICIA MICHAEL JENNIFER WILLIAM LINDA DAVID ELIZABETH RICHARD BARBARA JOSEPH SUSAN "
    "THOMAS JESSICA CHARLES SARAH CHRISTOPHER KAREN DANIEL LISA MATTHEW NANCY ANTHONY BETTY MARK SANDRA"
).split()
#: (study description, series descriptions, body part): what a CT department produces.
PROTOCOLS = (
    ("CT CHEST W/O CONTRAST", ("AXIAL 5MM", "AXIAL 1.25MM LUNG", "CORONAL MPR"), "CHEST"),
    ("CT ABDOMEN PELVIS W CONTRAST", ("PORTAL VENOUS 5MM", "ARTERIAL 2.5MM", "DELAYED"), "ABDOMEN"),
    ("CT HEAD W/O CONTRAST", ("AXIAL BRAIN", "AXIAL BONE", "SAGITTAL MPR"), "HEAD"),
)
FIRST_STUDY_DAY = dt.date(2015, 1, 1)
STUDY_DAYS = 3652  # ten years of study dates


@dataclass(frozen=True)
class Layout:
    """P patients x S studies x series x instances, each instance ``size`` x ``size`` 16-bit pixels."""

    patients: int
    studies: int
    series: int
    instances: int
    size: int = 512
    seed: int = 1

    @property
    def count(self) -> int:
        return self.patients * self.studies * self.series * self.instances

    @property
    def key(self) -> str:
        return f"p{self.patients}-s{self.studies}-se{self.series}-i{self.instances}-px{self.size}-seed{self.seed}"


def uid(layout: Layout, *parts: object) -> str:
    """A UID derived from the layout's seed and the resource's position (same inputs, same UID)."""
    return generate_uid(entropy_srcs=[str(layout.seed), *map(str, parts)])


def phantom(size: int, rng: np.random.Generator, z: float) -> np.ndarray:
    """A CT-like slice in stored values (HU + 1024): air, an elliptic body, a bone ring, two organs, noise."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j].astype(np.float32)
    taper = 0.85 - 0.15 * z * z  # the body narrows towards the ends of the scan
    body = (x / taper) ** 2 + (y / (taper * 0.75)) ** 2
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[body < 1.0] = 40.0
    hu[(body < 0.85) & (body > 0.75)] = 700.0
    hu[((x + 0.3) ** 2 + y**2) < 0.04 * (1 + z)] = -850.0
    hu[((x - 0.3) ** 2 + (y + 0.1) ** 2) < 0.03] = 60.0
    hu += rng.normal(0.0, 12.0, size=(size, size)).astype(np.float32)
    return np.clip(hu + 1024.0, 0, 4095).astype(np.uint16)


def instance_dataset(layout: Layout, patient: int, study: int, series: int, number: int) -> Dataset:
    """One CT image with the headers a scanner writes (patient, study, series, equipment, geometry, pixels)."""
    prng = np.random.default_rng([layout.seed, patient])
    srng = np.random.default_rng([layout.seed, patient, study])
    family, given = FAMILY_NAMES[prng.integers(len(FAMILY_NAMES))], GIVEN_NAMES[prng.integers(len(GIVEN_NAMES))]
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(prng.integers(0, 365 * 65)))
    study_date = FIRST_STUDY_DAY + dt.timedelta(days=int(srng.integers(0, STUDY_DAYS)))
    study_time = f"{srng.integers(7, 19):02d}{srng.integers(0, 60):02d}{srng.integers(0, 60):02d}"
    description, series_names, body_part = PROTOCOLS[int(srng.integers(len(PROTOCOLS)))]
    thickness = 5.0 if series == 0 else 2.5
    z_mm = -number * thickness

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid(layout, "instance", patient, study, series, number)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    date = study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = ds.InstanceCreationDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = ds.InstanceCreationTime = study_time
    ds.AccessionNumber = f"A{layout.seed:02d}{patient:05d}{study:02d}"
    ds.Modality = "CT"
    ds.Manufacturer = "BENCH MEDICAL SYSTEMS"
    ds.InstitutionName = "ISENGARD GENERAL HOSPITAL"
    ds.ReferringPhysicianName = f"{FAMILY_NAMES[(patient + study) % len(FAMILY_NAMES)]}^GREGORY"
    ds.StationName = f"CT{1 + study % 3:02d}"
    ds.StudyDescription = description
    ds.SeriesDescription = series_names[series % len(series_names)]
    ds.ManufacturerModelName = "SYNTHETIC 64"
    ds.PatientName = f"{family}^{given}"
    ds.PatientID = f"BENCH{layout.seed:02d}{patient:06d}"
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = "F" if prng.integers(2) else "M"
    ds.PatientAge = f"{(study_date - birth).days // 365:03d}Y"
    ds.BodyPartExamined = body_part
    ds.SliceThickness = thickness
    ds.KVP = 120
    ds.DataCollectionDiameter = 500
    ds.ReconstructionDiameter = 380
    ds.GantryDetectorTilt = 0
    ds.TableHeight = 160
    ds.RotationDirection = "CW"
    ds.ExposureTime = 500
    ds.XRayTubeCurrent = int(150 + srng.integers(0, 200))
    ds.Exposure = 100
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = uid(layout, "study", patient, study)
    ds.SeriesInstanceUID = uid(layout, "series", patient, study, series)
    ds.StudyID = str(1000 + study)
    ds.SeriesNumber = series + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = number + 1
    ds.ImagePositionPatient = [-190.0, -190.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = uid(layout, "frame", patient, study)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z_mm
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = layout.size
    ds.PixelSpacing = [round(380 / layout.size, 6)] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    z = 2.0 * number / max(layout.instances - 1, 1) - 1.0
    pixels = phantom(layout.size, np.random.default_rng([layout.seed, patient, study, series, number]), z)
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def positions(layout: Layout) -> Iterator[tuple[int, int, int, int]]:
    for p in range(layout.patients):
        for st in range(layout.studies):
            for se in range(layout.series):
                for i in range(layout.instances):
                    yield p, st, se, i


def generate(layout: Layout, cache: Path = DEFAULT_CACHE, *, progress: bool = True) -> list[Path]:
    """The files of ``layout`` in ingest order (patient by patient), generating them unless already cached."""
    folder = cache / layout.key
    marker = folder / "complete.json"
    names = [f"{p:05d}/{st:02d}-{se:02d}-{i:04d}.dcm" for p, st, se, i in positions(layout)]
    if marker.exists():
        return [folder / n for n in names]
    shutil.rmtree(folder, ignore_errors=True)
    for (p, st, se, i), name in tqdm(
        zip(positions(layout), names, strict=True),
        total=layout.count,
        desc=f"generating {layout.key}",
        unit="file",
        disable=not progress,
    ):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        instance_dataset(layout, p, st, se, i).save_as(path, enforce_file_format=True)
    marker.write_text(json.dumps({**asdict(layout), "count": layout.count}))
    return [folder / n for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--studies", type=int, default=2, help="studies per patient")
    parser.add_argument("--series", type=int, default=2, help="series per study")
    parser.add_argument("--instances", type=int, default=50, help="instances per series")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each image")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated layouts")
    args = parser.parse_args()
    layout = Layout(args.patients, args.studies, args.series, args.instances, args.size, args.seed)
    files = generate(layout, args.cache)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {size / 1e6:.1f} MB in {args.cache / layout.key}")


if __name__ == "__main__":
    main()
