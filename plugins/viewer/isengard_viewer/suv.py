"""Body-weight SUV of PET series, by the vendor-neutral pseudo-code of the QIBA FDG-PET/CT profile (appendix G).

SUVbw = activity concentration (Bq/ml) x patient weight (g) / injected dose decayed to the time the images are
corrected to (Bq). The profile computes it only from BQML images corrected for attenuation and decay (CorrectedImage
has ATTN and DECY). With DecayCorrection START the dose decays from the radiopharmaceutical start time to the scan
start: SeriesDate/SeriesTime, unless a post-processed series was given a later series time than its earliest
AcquisitionDate/AcquisitionTime, which is then the scan start (the profile reads a GE private date there; the
earliest acquisition is the vendor-neutral stand-in). With ADMIN the images are already corrected to the
administration time: the injected dose itself is the reference. Images in GML are SUVbw already.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from isengard.dicom.imaging import first_number as number


@dataclass(frozen=True)
class Suv:
    """The factor from the stored real-world values to SUVbw, or why there is none."""

    factor: float | None
    reason: str = ""


def _date_time(date: object, time: object) -> datetime.datetime | None:
    try:
        day, moment = DA(str(date)), TM(str(time))
    except ValueError:
        return None
    if not date or not time or day is None or moment is None:
        return None
    return datetime.datetime.combine(day, moment)


def _datetime(value: object) -> datetime.datetime | None:
    try:
        parsed = DT(str(value)) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed is not None else None


def scan_start(ds: Dataset, acquisitions: list[datetime.datetime]) -> datetime.datetime | None:
    """The series start, unless it comes after the earliest acquisition (a post-processed series)."""
    series = _date_time(ds.get("SeriesDate"), ds.get("SeriesTime"))
    earliest = min(acquisitions, default=None)
    if series is None or (earliest is not None and series > earliest):
        return earliest
    return series


def acquisition_time(ds: Dataset) -> datetime.datetime | None:
    """AcquisitionDateTime, else AcquisitionDate (or SeriesDate) with AcquisitionTime."""
    return _datetime(ds.get("AcquisitionDateTime")) or _date_time(
        ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime")
    )


def suv_factor(ds: Dataset, acquisitions: list[datetime.datetime]) -> Suv:
    """The SUVbw factor of a PET series, from one of its headers and the acquisition times of all of them."""
    units = str(ds.get("Units", "")).strip().upper()
    if units == "GML":
        return Suv(1.0)
    if units != "BQML":
        return Suv(None, f"Units is {units or 'absent'}, not BQML")
    corrected = {str(v).strip().upper() for v in (ds.get("CorrectedImage") or [])}
    if not {"ATTN", "DECY"} <= corrected:
        return Suv(None, "CorrectedImage lacks ATTN or DECY: the images are not corrected for attenuation and decay")
    weight = number(ds.get("PatientWeight"))
    if not weight or weight <= 0:
        return Suv(None, "PatientWeight is absent or zero")
    drugs = ds.get("RadiopharmaceuticalInformationSequence") or []
    drug = drugs[0] if drugs else Dataset()
    half_life, dose = number(drug.get("RadionuclideHalfLife")), number(drug.get("RadionuclideTotalDose"))
    if not half_life or not dose or half_life <= 0 or dose <= 0:
        return Suv(None, "RadionuclideHalfLife or RadionuclideTotalDose is absent or zero")
    correction = str(ds.get("DecayCorrection", "")).strip().upper()
    if correction == "ADMIN":
        return Suv(weight * 1000.0 / dose)
    if correction != "START":
        return Suv(None, f"DecayCorrection is {correction or 'absent'}, neither START nor ADMIN")
    scan = scan_start(ds, acquisitions)
    if scan is None:
        return Suv(None, "SeriesDate/SeriesTime and AcquisitionTime are absent")
    start = _datetime(drug.get("RadiopharmaceuticalStartDateTime"))
    if start is None:
        start = _date_time(scan.date().strftime("%Y%m%d"), drug.get("RadiopharmaceuticalStartTime"))
        if start is not None and start > scan:  # injected before midnight, scanned after
            start -= datetime.timedelta(days=1)
    if start is None:
        return Suv(None, "RadiopharmaceuticalStartDateTime and RadiopharmaceuticalStartTime are absent")
    decay = (scan - start).total_seconds()
    if decay < 0:
        return Suv(None, "the radiopharmaceutical start time is after the scan start")
    return Suv(weight * 1000.0 / (dose * 2.0 ** (-decay / half_life)))
