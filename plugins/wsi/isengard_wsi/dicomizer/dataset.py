"""The DICOM header of each level: a VL Whole Slide Microscopy Image (PS3.3 A.32.8), TILED_FULL.

Every attribute the IOD requires is written, Type 2 ones empty when nothing is known, so that the files are valid
without a --dataset; what the user's dataset gives (Orthanc's JSON of tags, as OrthancWSIDicomizer reads it) then
replaces the defaults, and the pixel and geometry attributes of the level come last, from the image itself.
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import ImageCms
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from isengard.dicom.create import CreationRequest, new_element, resolve_tag
from isengard.errors import OrthancError

from ..pyramid import WSI_SOP_CLASS
from .levels import TargetLevel

SOFTWARE = "Isengard WSI DICOMizer"
IMAGE_TYPE_BASE = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
IMAGE_TYPE_RESAMPLED = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
#: The associated images by OpenSlide's name (PS3.3 C.8.12.4.1.1: a thumbnail is resampled from the volume).
IMAGE_TYPE_ASSOCIATED = {
    "label": ["ORIGINAL", "PRIMARY", "LABEL", "NONE"],
    "macro": ["ORIGINAL", "PRIMARY", "OVERVIEW", "NONE"],
    "thumbnail": ["DERIVED", "PRIMARY", "THUMBNAIL", "RESAMPLED"],
}


class DatasetError(Exception):
    """A --dataset file that cannot be used; the message is shown to the user."""


@dataclass
class Geometry:
    """Where the specimen lies on the slide, in mm (OrthancWSIDicomizer's --imaged-* and --offset-*)."""

    width: float = 15
    height: float = 15
    depth: float = 1
    offset_x: float = 20
    offset_y: float = 40


@dataclass
class Series:
    """What every instance of the slide shares."""

    common: Dataset
    geometry: Geometry
    optical_path: str  # "brightfield" or "none"
    icc_profile: bytes | None
    pyramid_uid: str = field(default_factory=generate_uid)
    dimension_uid: str = field(default_factory=generate_uid)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def srgb_profile() -> bytes:
    """The ICC profile of the frames when none is given: sRGB, what Pillow encodes and decodes (PS3.3 C.11.15)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def defaults(name: str) -> Dataset:
    """Patient, study, series, equipment and specimen of a slide known by nothing but its file ``name``."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    now = datetime.datetime.now(datetime.UTC)
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", str(uuid.uuid4()), "", ""
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = generate_uid(), date, time, ""
    ds.ReferringPhysicianName, ds.AccessionNumber = "", ""
    ds.SeriesInstanceUID, ds.SeriesDate, ds.SeriesTime, ds.SeriesNumber, ds.Modality = (
        generate_uid(),
        date,
        time,
        1,
        "SM",
    )
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), "SLIDE_CORNER"
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = "Isengard", SOFTWARE, "0"
    ds.SoftwareVersions = software_version()
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = date, time, date + time
    ds.AcquisitionContextSequence = Sequence()
    ds.ContainerIdentifier = name[:64] or "SLIDE"
    ds.IssuerOfTheContainerIdentifierSequence, ds.ContainerTypeCodeSequence = Sequence(), Sequence()
    specimen = Dataset()
    specimen.SpecimenIdentifier, specimen.SpecimenUID = ds.ContainerIdentifier, generate_uid()
    specimen.IssuerOfTheSpecimenIdentifierSequence, specimen.SpecimenPreparationSequence = Sequence(), Sequence()
    ds.SpecimenDescriptionSequence = Sequence([specimen])
    ds.VolumetricProperties, ds.SpecimenLabelInImage, ds.BurnedInAnnotation = "VOLUME", "NO", "NO"
    ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
    return ds


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isengard-wsi")
    except PackageNotFoundError:
        return "0"


def read_dataset(path: Path | None, name: str) -> Dataset:
    """The defaults, then the tags of the user's JSON file (keywords or "gggg,eeee", sequences as lists)."""
    ds = defaults(name)
    if path is None:
        return ds
    try:
        tags = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read the dataset {path}: {e}") from None
    if not isinstance(tags, dict):
        raise DatasetError(f"the dataset {path} must be a JSON object of tags")
    request = CreationRequest(tags={}, encoding="ISO_IR 192", force=True)
    try:
        for name_, value in tags.items():
            tag = resolve_tag(name_)
            ds[tag] = new_element(tag, value, request)
    except OrthancError as e:
        raise DatasetError(f"bad tag in the dataset {path}: {e.details or e}") from None
    return ds


def sample_dataset() -> dict[str, Any]:
    """What --sample-dataset prints: the tags a user usually sets, in the form --dataset reads (the same fields as
    OrthancWSIDicomizer's sample, whose file --dataset also reads)."""
    return {
        "PatientID": "C123456789",
        "PatientName": "SOME^PATIENT",
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyID": "1",
        "SeriesNumber": "1",
        "ReferringPhysicianName": "SOME^PHYSICIAN",
        "AccessionNumber": "123456789",
        "Manufacturer": "MyManufacturer",
        "ManufacturerModelName": "MyModel",
        "DeviceSerialNumber": "MySerialNumber",
        "SoftwareVersions": "MyVersion",
        "FocusMethod": "AUTO",
        "ExtendedDepthOfField": "NO",
        "AcquisitionContextSequence": [],
        "ContainerIdentifier": "CI_12345",
        "IssuerOfTheContainerIdentifierSequence": [],
        "ContainerTypeCodeSequence": [],
        "SpecimenDescriptionSequence": [
            {
                "SpecimenIdentifier": "Specimen^Identifier",
                "SpecimenUID": generate_uid(),
                "IssuerOfTheSpecimenIdentifierSequence": [],
                "SpecimenPreparationSequence": [],
            }
        ],
        "SpecimenLabelInImage": "NO",
        "BurnedInAnnotation": "NO",
    }


def _optical_path(series: Series, colour: bool) -> Dataset:
    path = Dataset()
    path.IlluminationTypeCodeSequence = Sequence([_code("111744", "DCM", "Brightfield illumination")])
    path.OpticalPathIdentifier, path.OpticalPathDescription = "1", "Brightfield"
    path.IlluminationColorCodeSequence = Sequence([_code("414298005", "SCT", "Full Spectrum")])
    if colour and series.icc_profile:
        path.ICCProfile = series.icc_profile
    return path


def level_dataset(
    series: Series,
    level: TargetLevel,
    index: int,
    *,
    photometric: str,
    frames: int,
    lossy: tuple[str, float] | None,
    image_type: list[str] | None = None,
) -> Dataset:
    """The header of (part of) level ``index``; ``lossy`` is (method, ratio) when the pixels were ever lossy;
    ``image_type`` for an associated image (label, overview, thumbnail), else that of a VOLUME level."""
    ds = Dataset()
    ds.update(series.common)
    ds.SOPClassUID, ds.SOPInstanceUID = WSI_SOP_CLASS, generate_uid()
    ds.InstanceNumber = index + 1
    ds.PyramidUID = series.pyramid_uid
    ds.ImageType = image_type or (IMAGE_TYPE_BASE if index == 0 else IMAGE_TYPE_RESAMPLED)
    if ds.ImageType[2] in ("LABEL", "OVERVIEW"):  # a picture of the glass: the label, with what it says
        # new elements: the ones copied from series.common are shared by every instance
        ds.add_new(0x00480010, "CS", "YES")  # SpecimenLabelInImage
        ds.add_new(0x00280301, "CS", "YES")  # BurnedInAnnotation
    if ds.ImageType[2] == "LABEL":  # Slide Label module (PS3.3 C.8.12.8), Type 2: unknown unless --dataset says
        for keyword in ("BarcodeValue", "LabelText"):
            if keyword not in ds:
                setattr(ds, keyword, "")
    geometry = series.geometry
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = geometry.width, geometry.height, geometry.depth
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = level.width, level.height
    ds.TotalPixelMatrixFocalPlanes = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = geometry.offset_x, geometry.offset_y
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]  # OrthancWSIDicomizer's: rows along -Y, columns along -X
    ds.DimensionOrganizationType = "TILED_FULL"
    organization = Dataset()
    organization.DimensionOrganizationUID = series.dimension_uid
    ds.DimensionOrganizationSequence = Sequence([organization])
    ds.DimensionIndexSequence = Sequence([_dimension(series, 0x0048021E), _dimension(series, 0x0048021F)])
    colour = level.samples == 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = level.samples, photometric
    if colour:
        ds.PlanarConfiguration = 0
    else:  # MONOCHROME2 whole-slide images must say how to display them (PS3.3 C.8.12.4.1.5)
        ds.PresentationLUTShape, ds.RescaleIntercept, ds.RescaleSlope = "IDENTITY", 0, 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = level.tile_height, level.tile_width, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01" if lossy else "00"
    if lossy:
        ds.LossyImageCompressionMethod, ds.LossyImageCompressionRatio = lossy[0], f"{lossy[1]:.2f}"
    if series.optical_path == "brightfield":
        ds.NumberOfOpticalPaths = 1
        ds.OpticalPathSequence = Sequence([_optical_path(series, colour)])
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(geometry.height / level.height), _ds(geometry.width / level.width)]  # row, column
    measures.SliceThickness = geometry.depth
    shared.PixelMeasuresSequence = Sequence([measures])
    frame_type = Dataset()
    frame_type.FrameType = ds.ImageType
    shared.WholeSlideMicroscopyImageFrameTypeSequence = Sequence([frame_type])
    identification = Dataset()
    identification.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = Sequence([identification])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    return ds


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (PS3.5 6.2)."""
    return format(value, ".10g")


def _dimension(series: Series, pointer: int) -> Dataset:
    """A dimension of the tiles' positions (column, then row), as PS3.3 C.8.12.4.1.3 suggests for TILED_FULL."""
    item = Dataset()
    item.DimensionOrganizationUID = series.dimension_uid
    item.DimensionIndexPointer, item.FunctionalGroupPointer = pointer, 0x0048021A  # PlanePositionSlideSequence
    return item
