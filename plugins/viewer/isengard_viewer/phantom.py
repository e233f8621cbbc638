"""Synthetic CT and PET series, RT structures and RT doses with objects at known patient positions, to check
geometry end to end.

A phantom is a field of one value with a sphere and a cube in it, sampled at each voxel centre of a series whose
slices may be rotated, tilted, unevenly spaced, duplicated or incomplete, exactly as the DICOM attributes say.
A PET may share a CT's frame of reference (fusion); an RT Structure Set outlines the sphere and the cube on the
CT's slices; an RT Dose is an analytic Gaussian. Whatever a viewer computes from the files can then be compared
with the shapes' true positions and values.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field, replace

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"


@dataclass(frozen=True)
class Shapes:
    """A sphere and an axis-aligned cube (patient mm), and the values inside them and around."""

    sphere_center: tuple[float, float, float]
    sphere_radius: float
    sphere_value: float
    cube_center: tuple[float, float, float]
    cube_half_side: float
    cube_value: float
    background: float

    def values(self, points: np.ndarray) -> np.ndarray:
        """The phantom's value at each (…, 3) point."""
        inside_sphere = np.linalg.norm(points - np.array(self.sphere_center), axis=-1) <= self.sphere_radius
        inside_cube = np.all(np.abs(points - np.array(self.cube_center)) <= self.cube_half_side, axis=-1)
        values = np.full(points.shape[:-1], self.background, np.float64)
        values[inside_cube] = self.cube_value
        values[inside_sphere] = self.sphere_value
        return values


def rotation(x_degrees: float = 0.0, y_degrees: float = 0.0, z_degrees: float = 0.0) -> np.ndarray:
    """Rotations about the patient axes, x first: its columns are the rotated row, column and normal."""
    a, b, c = np.radians([x_degrees, y_degrees, z_degrees])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Series:
    """The grid of a series: the first voxel, directions, spacing and where each slice is along ``advance``."""

    rows: int = 64
    columns: int = 80
    pixel_spacing: tuple[float, float] = (0.8, 0.7)  # between rows, between columns (PixelSpacing)
    offsets: tuple[float, ...] = tuple(2.0 * k for k in range(40))  # mm along ``advance`` from ``origin``
    origin: tuple[float, float, float] = (-27.3, -13.9, -101.7)
    orientation: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: row, column, normal
    advance: tuple[float, float, float] | None = None  # slice travel direction; None: the normal (no tilt)
    modality: str = "CT"

    @property
    def row(self) -> np.ndarray:
        return self.orientation[:, 0]

    @property
    def column(self) -> np.ndarray:
        return self.orientation[:, 1]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.column)

    def slice_origin(self, offset: float) -> np.ndarray:
        advance = self.normal if self.advance is None else np.array(self.advance) / np.linalg.norm(self.advance)
        return np.array(self.origin) + offset * advance

    def voxel_centres(self, offset: float) -> np.ndarray:
        """(rows, columns, 3) patient positions of one slice's pixels."""
        j, i = np.mgrid[0 : self.rows, 0 : self.columns]
        return (
            self.slice_origin(offset)
            + (i * self.pixel_spacing[1])[..., None] * self.row
            + (j * self.pixel_spacing[0])[..., None] * self.column
        )

    def center(self) -> np.ndarray:
        """The centre of the voxel centres of the first and last slices."""
        middle = (
            (self.columns - 1) * self.pixel_spacing[1] * self.row
            + (self.rows - 1) * self.pixel_spacing[0] * self.column
        ) / 2
        return (self.slice_origin(self.offsets[0]) + self.slice_origin(self.offsets[-1])) / 2 + middle


def shapes_for(
    series: Series,
    *,
    sphere_value: float = 200.0,
    cube_value: float = -700.0,
    background: float = 0.0,
    radius: float = 10.0,
) -> Shapes:
    """A sphere and a cube inside the volume, away from its centre and from each other."""
    center = series.center()
    return Shapes(
        sphere_center=tuple(center + np.array([5.3, -4.1, 3.2])),
        sphere_radius=radius,
        sphere_value=sphere_value,
        cube_center=tuple(center + np.array([-12.0, 10.0, -8.0])),
        cube_half_side=7.0,
        cube_value=cube_value,
        background=background,
    )


def _base(series: Series, study: str, series_uid: str, frame_of_reference: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientName, ds.PatientID = "Phantom^Geometry", "PHANTOM"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_of_reference
    ds.StudyDate = ds.SeriesDate = "20240102"
    ds.StudyTime, ds.SeriesTime = "090000", "093000"
    ds.Modality = series.modality
    ds.Rows, ds.Columns = series.rows, series.columns
    ds.PixelSpacing = [f"{v:g}" for v in series.pixel_spacing]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SliceThickness = f"{abs(series.offsets[1] - series.offsets[0]) if len(series.offsets) > 1 else 2.0:g}"
    return ds


def _orientation(series: Series) -> list[str]:
    return [f"{v:.10f}" for v in (*series.row, *series.column)]


def _position(series: Series, offset: float) -> list[str]:
    return [f"{v:.6f}" for v in series.slice_origin(offset)]


def ct_series(
    series: Series, shapes: Shapes, *, localizer: bool = False, duplicate: int | None = None, geometry: bool = True
) -> list[Dataset]:
    """One CT image per offset, HU stored as unsigned + 1024; ``duplicate`` repeats that slice (new UID)."""
    study, series_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    offsets = list(series.offsets) + ([series.offsets[duplicate]] if duplicate is not None else [])
    for number, offset in enumerate(offsets, start=1):
        ds = _base(series, study, series_uid, frame_of_reference)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = CT_IMAGE, generate_uid(), number
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if geometry:
            ds.ImageOrientationPatient, ds.ImagePositionPatient = _orientation(series), _position(series, offset)
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelRepresentation = 0
        ds.PixelData = np.round(shapes.values(series.voxel_centres(offset)) + 1024).astype("<u2").tobytes()
        datasets.append(ds)
    if localizer:
        scout = replace(series, orientation=rotation(x_degrees=-90.0), offsets=(0.0,))
        ds = ct_series(scout, shapes)[0]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_of_reference
        ds.ImageType, ds.InstanceNumber = ["ORIGINAL", "PRIMARY", "LOCALIZER"], len(datasets) + 1
        datasets.append(ds)
    return datasets


def enhanced_ct(series: Series, shapes: Shapes) -> Dataset:
    """The same CT as one Enhanced CT Image: geometry in the shared and per-frame functional groups."""
    slices = ct_series(series, shapes)
    ds = _base(series, slices[0].StudyInstanceUID, generate_uid(), slices[0].FrameOfReferenceUID)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = ENHANCED_CT_IMAGE, generate_uid(), 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames, ds.PixelRepresentation = len(slices), 0
    del ds.PixelSpacing, ds.SliceThickness
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = slices[0].PixelSpacing
    shared.PixelMeasuresSequence[0].SliceThickness = slices[0].SliceThickness
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = slices[0].ImageOrientationPatient
    shared.PixelValueTransformationSequence = [Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleIntercept = "-1024"
    shared.PixelValueTransformationSequence[0].RescaleSlope = "1"
    shared.PixelValueTransformationSequence[0].RescaleType = "HU"
    shared.FrameVOILUTSequence = [Dataset()]
    shared.FrameVOILUTSequence[0].WindowCenter, shared.FrameVOILUTSequence[0].WindowWidth = "40", "400"
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for single in reversed(slices):  # stored from the top: order comes from the positions, not the frames
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = single.ImagePositionPatient
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = b"".join(single.PixelData for single in reversed(slices))
    return ds


@dataclass(frozen=True)
class PetDose:
    """What SUVbw needs: QIBA's attributes, with the scan one hour and a quarter after injection."""

    weight: float = 72.5  # kg
    total_dose: float = 350e6  # Bq
    half_life: float = 6586.2  # s, fluorine 18
    start: str = "081500"
    scan: str = "093000"

    @property
    def decay_seconds(self) -> float:
        parse = lambda text: datetime.datetime.strptime(text, "%H%M%S")  # noqa: E731
        return (parse(self.scan) - parse(self.start)).total_seconds()


def _space(like: Dataset | None) -> tuple[str, str, str]:
    """Study, new series and frame of reference UIDs: those of ``like`` (same study, same patient space), else new."""
    if like is None:
        return generate_uid(), generate_uid(), generate_uid()
    return like.StudyInstanceUID, generate_uid(), like.FrameOfReferenceUID


def pet_series(
    series: Series, shapes: Shapes, dose: PetDose, *, decay_correction: str = "START", like: Dataset | None = None
) -> list[Dataset]:
    """A PET in Bq/ml, signed 16 bits with a slope of its own per slice (as GE writes them); ``like``: an image
    whose study and frame of reference it shares (a PET/CT)."""
    study, series_uid, frame_of_reference = _space(like)
    datasets = []
    for number, offset in enumerate(series.offsets, start=1):
        ds = _base(series, study, series_uid, frame_of_reference)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = PET_IMAGE, generate_uid(), number
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.SeriesTime = ds.AcquisitionTime = dose.scan
        ds.AcquisitionDate = ds.SeriesDate
        ds.ImageOrientationPatient, ds.ImagePositionPatient = _orientation(series), _position(series, offset)
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", decay_correction, ["ATTN", "DECY"]
        ds.PatientWeight = f"{dose.weight:g}"
        drug = Dataset()
        drug.RadiopharmaceuticalStartTime = dose.start
        drug.RadionuclideHalfLife = f"{dose.half_life:g}"
        drug.RadionuclideTotalDose = f"{dose.total_dose:g}"
        ds.RadiopharmaceuticalInformationSequence = [drug]
        values = shapes.values(series.voxel_centres(offset))
        slope = float(values.max()) / 32000.0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
        ds.PixelRepresentation = 1
        ds.PixelData = np.round(values / float(ds.RescaleSlope)).astype("<i2").tobytes()
        datasets.append(ds)
    return datasets


@dataclass(frozen=True)
class StructureColors:
    """ROI Display Colors of the phantom's structures: not grey, so they stand out on a CT picture."""

    sphere: tuple[int, int, int] = (0, 255, 0)
    cube: tuple[int, int, int] = (255, 0, 255)


def _slice_frame(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    orientation = np.array(ds.ImageOrientationPatient, dtype=np.float64)
    row, column = orientation[:3], orientation[3:]
    return np.array(ds.ImagePositionPatient, dtype=np.float64), row, column, np.cross(row, column)


def rt_structure_set(
    ct: list[Dataset], shapes: Shapes, *, colors: StructureColors = StructureColors(), points: int = 72
) -> Dataset:
    """ROI 1 "Sphere": circles where the sphere cuts each CT slice; ROI 2 "Cube": squares (its row and column
    directions) where the cube does. Contours are CLOSED_PLANAR in the slices' planes, referencing them."""
    first = ct[0]
    ds = _base(Series(modality="RTSTRUCT"), first.StudyInstanceUID, generate_uid(), first.FrameOfReferenceUID)
    for keyword in ("Rows", "Columns", "PixelSpacing", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(ds, keyword)
    for keyword in ("BitsAllocated", "BitsStored", "HighBit", "SliceThickness"):
        delattr(ds, keyword)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = RT_STRUCTURE_SET, generate_uid(), 1
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "PHANTOM", "20240102", "100000"
    angles = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    center, radius = np.array(shapes.sphere_center), shapes.sphere_radius
    cube, half = np.array(shapes.cube_center), shapes.cube_half_side
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
    outlines: dict[int, list[tuple[np.ndarray, Dataset]]] = {1: [], 2: []}
    for image in ct:
        origin, row, column, normal = _slice_frame(image)
        depth = float((center - origin) @ normal)
        if abs(depth) < radius:
            middle, r = center - depth * normal, float(np.sqrt(radius**2 - depth**2))
            circle = middle + r * (np.cos(angles)[:, None] * row + np.sin(angles)[:, None] * column)
            outlines[1].append((circle, image))
        depth = float((cube - origin) @ normal)
        if abs(depth) <= half:
            middle = cube - depth * normal
            outlines[2].append((middle + square[:, :1] * row + square[:, 1:] * column, image))
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, name, color in ((1, "Sphere", colors.sphere), (2, "Cube", colors.cube)):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, first.FrameOfReferenceUID
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
        ds.RTROIObservationsSequence.append(observation)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor, item.ContourSequence = number, list(color), []
        for polygon, image in outlines[number]:
            contour = Dataset()
            reference = Dataset()
            reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = (
                image.SOPClassUID,
                image.SOPInstanceUID,
            )
            contour.ContourImageSequence = [reference]
            contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(polygon)
            contour.ContourData = [f"{v:.4f}" for v in polygon.reshape(-1)]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
    return ds


@dataclass(frozen=True)
class GaussianDose:
    """An analytic dose: ``peak`` Gy at ``center``, falling as a Gaussian of ``sigma`` mm."""

    center: tuple[float, float, float]
    peak: float = 60.0
    sigma: float = 12.0

    def values(self, points: np.ndarray) -> np.ndarray:
        squared = np.sum((points - np.array(self.center)) ** 2, axis=-1)
        return self.peak * np.exp(-squared / (2 * self.sigma**2))

    def radius(self, level: float, offset: float = 0.0) -> float:
        """Where the dose equals ``level`` (mm from the centre's projection) on a plane ``offset`` mm away."""
        return float(np.sqrt(2 * self.sigma**2 * np.log(self.peak / level) - offset**2))


def rt_dose(grid: Series, dose: GaussianDose, like: Dataset) -> Dataset:
    """One multi-frame RT Dose on ``grid`` (no tilt), unsigned 32 bits times DoseGridScaling, with relative
    GridFrameOffsetVector, in the study and frame of reference of ``like``."""
    study, series_uid, frame_of_reference = _space(like)
    ds = _base(replace(grid, modality="RTDOSE"), study, series_uid, frame_of_reference)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = RT_DOSE, generate_uid(), 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.NumberOfFrames, ds.FrameIncrementPointer = len(grid.offsets), 0x3004000C
    ds.ImageOrientationPatient, ds.ImagePositionPatient = _orientation(grid), _position(grid, grid.offsets[0])
    ds.GridFrameOffsetVector = [f"{v - grid.offsets[0]:g}" for v in grid.offsets]
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    scaling = dose.peak / 4e9
    ds.DoseGridScaling = f"{scaling:.10g}"
    frames = [dose.values(grid.voxel_centres(offset)) for offset in grid.offsets]
    ds.PixelData = np.round(np.stack(frames) / float(ds.DoseGridScaling)).astype("<u4").tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """A Part 10 file, in Explicit VR Little Endian unless the dataset was compressed (``Dataset.compress``)."""
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
