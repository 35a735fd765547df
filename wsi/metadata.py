"""Slide facts + caller identifiers -> the VL Whole Slide Microscopy Image attributes."""

from __future__ import annotations

import copy
from datetime import datetime
from io import BytesIO

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from wsi.options import SlideIds
from wsi.sources.model import Channel, SlideInfo
from wsi.spacing import Spacing, slide_notes

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
UNKNOWN = "Unknown"
_SLICE_THICKNESS_MM = 0.001  # slide section thickness is not recorded by scanners; nominal 1 µm


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


def _da(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S")


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


class SlideDatasets:
    """Builds the instances of one slide: one study, one series, one frame of reference."""

    def __init__(self, slide: SlideInfo, ids: SlideIds, spacing: Spacing) -> None:
        self.slide = slide
        self.spacing = spacing
        now = datetime.now()
        self.acquired = slide.acquired or now
        self._base = self._shared(ids, now)

    def _shared(self, ids: SlideIds, now: datetime) -> Dataset:
        slide = self.slide
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = VL_WSI
        ds.StudyDate = ds.SeriesDate = _da(self.acquired)
        ds.StudyTime = ds.SeriesTime = _tm(self.acquired)
        ds.ContentDate = _da(now)
        ds.ContentTime = _tm(now)
        ds.AcquisitionDateTime = self.acquired.strftime("%Y%m%d%H%M%S")
        ds.AccessionNumber = ids.accession
        ds.Modality = "SM"
        ds.Manufacturer = slide.manufacturer or UNKNOWN
        ds.ReferringPhysicianName = ids.referring_physician
        if ids.study_description:
            ds.StudyDescription = ids.study_description
        ds.SeriesDescription = ids.series_description or slide.path.name
        ds.ManufacturerModelName = slide.model or UNKNOWN
        ds.VolumetricProperties = "VOLUME"
        ds.PatientName = ids.patient_name
        ds.PatientID = ids.patient_id
        ds.PatientBirthDate = ids.patient_birth_date
        ds.PatientSex = ids.patient_sex
        ds.DeviceSerialNumber = slide.serial or UNKNOWN
        ds.SoftwareVersions = slide.software or UNKNOWN
        ds.StudyInstanceUID = ids.study_uid or generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.StudyID = ids.study_id
        ds.SeriesNumber = 1
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = "SLIDE_CORNER"
        ds.DimensionOrganizationType = "TILED_FULL"
        bits = slide.planes.bits if slide.planes else 8
        if slide.planes:  # one channel per instance
            ds.SamplesPerPixel = 1
            ds.PresentationLUTShape = "IDENTITY"
            ds.RescaleIntercept = 0
            ds.RescaleSlope = 1
        else:
            ds.SamplesPerPixel = 3
            ds.PlanarConfiguration = 0
        ds.BitsAllocated = bits
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.FocusMethod = "AUTO"
        ds.ExtendedDepthOfField = "NO"
        ds.ImagedVolumeWidth = self._mm(slide.width * self.spacing.x)
        ds.ImagedVolumeHeight = self._mm(slide.height * self.spacing.y)
        ds.ImagedVolumeDepth = _SLICE_THICKNESS_MM * 1000
        # Rows run along -X and columns along -Y of the slide (the usual scanner orientation):
        # with the origin at (height, width) mm the whole image lies at positive slide
        # coordinates, from the slide corner, rather than beside the glass.
        origin = Dataset()
        origin.XOffsetInSlideCoordinateSystem = ds.ImagedVolumeHeight
        origin.YOffsetInSlideCoordinateSystem = ds.ImagedVolumeWidth
        ds.TotalPixelMatrixOriginSequence = [origin]
        ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
        ds.TotalPixelMatrixFocalPlanes = 1
        ds.NumberOfOpticalPaths = 1
        dim = Dataset()
        dim.DimensionOrganizationUID = generate_uid()
        ds.DimensionOrganizationSequence = [dim]
        ds.ContainerIdentifier = ids.specimen_id or slide.path.stem
        ds.IssuerOfTheContainerIdentifierSequence = self._issuer(ids)
        ds.ContainerTypeCodeSequence = [_code("433466003", "SCT", "Microscope slide")]
        ds.AcquisitionContextSequence = Sequence()
        specimen = Dataset()
        specimen.SpecimenIdentifier = ds.ContainerIdentifier
        specimen.SpecimenUID = generate_uid()
        specimen.IssuerOfTheSpecimenIdentifierSequence = self._issuer(ids)
        specimen.SpecimenPreparationSequence = Sequence()
        ds.SpecimenDescriptionSequence = [specimen]
        ds.OpticalPathSequence = [self._optical_path(None)]
        notes = slide_notes(slide, self.spacing)
        if notes:
            ds.ImageComments = "; ".join(notes)
        return ds

    @staticmethod
    def _mm(micrometres: float) -> float:
        return round(micrometres / 1000.0, 6)

    @staticmethod
    def _issuer(ids: SlideIds) -> Sequence:
        if not ids.issuer:
            return Sequence()
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = ids.issuer
        return Sequence([issuer])

    def _optical_path(self, channel: int | None) -> Dataset:
        """The optical path of an RGB instance (``channel`` None) or of one channel's instance.

        Fluorescence (a channel, or an RGB scan the source says is fluorescence) is labelled
        epifluorescence, with the excitation wavelength as the illumination and the emission
        wavelength as the image path's filter, where the source records them."""
        slide = self.slide
        path = Dataset()
        path.OpticalPathIdentifier = str(channel or 0)
        light: Channel | None = None
        if channel is not None:
            light = slide.channels[channel]
        elif slide.channels:
            light = slide.channels[0]
        if light is None:
            path.IlluminationTypeCodeSequence = [_code("111744", "DCM", "Brightfield illumination")]
        else:
            path.OpticalPathDescription = light.name
            path.IlluminationTypeCodeSequence = [
                _code("111743", "DCM", "Epifluorescence illumination")
            ]
            if light.emission_nm:
                path.ImagePathFilterPassThroughWavelength = round(light.emission_nm)
        if light is not None and light.excitation_nm:
            path.IlluminationWaveLength = light.excitation_nm
        else:
            path.IlluminationColorCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
        if channel is None:  # colour images carry their colour space; MONOCHROME2 ones none
            path.ICCProfile = slide.icc_profile or _srgb_profile()
            if not slide.icc_profile:
                path.ColorSpace = "SRGB"
        if slide.objective_power:
            path.ObjectiveLensPower = slide.objective_power
        return path

    def _photo_of_channels(self, ds: Dataset) -> str:
        """Make a fluorescence slide's instance a colour photograph of the glass (its label or
        overview, taken in white light), on an optical path of its own; returns its id."""
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        for keyword in ("PresentationLUTShape", "RescaleIntercept", "RescaleSlope"):
            delattr(ds, keyword)
        path = Dataset()
        path.OpticalPathIdentifier = str(len(self.slide.channels))
        path.OpticalPathDescription = "White light photograph of the glass"
        path.IlluminationTypeCodeSequence = [_code("111744", "DCM", "Brightfield illumination")]
        path.IlluminationColorCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
        path.ICCProfile = _srgb_profile()
        path.ColorSpace = "SRGB"
        ds.OpticalPathSequence = [path]
        return path.OpticalPathIdentifier

    def instance(
        self,
        *,
        kind: str,
        derived: bool,
        number: int,
        width: int,
        height: int,
        tile_width: int,
        tile_height: int,
        frames: int,
        photometric: str,
        lossy_history: list[tuple[str, str]],
        downsample: float = 1.0,
        channel: int | None = None,
    ) -> Dataset:
        """One instance; ``lossy_history`` is [(method, ratio DS)], the last ratio may be the
        writer's placeholder, filled in once the frames are written."""
        ds = copy.deepcopy(self._base)
        flavour = "RESAMPLED" if derived and kind in ("VOLUME", "THUMBNAIL") else "NONE"
        ds.ImageType = ["DERIVED" if derived else "ORIGINAL", "PRIMARY", kind, flavour]
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        ds.TotalPixelMatrixColumns = width
        ds.TotalPixelMatrixRows = height
        ds.Columns = tile_width
        ds.Rows = tile_height
        ds.NumberOfFrames = frames
        ds.PhotometricInterpretation = photometric
        ds.BurnedInAnnotation = "YES" if kind in ("LABEL", "OVERVIEW") else "NO"
        ds.SpecimenLabelInImage = "YES" if kind in ("LABEL", "OVERVIEW") else "NO"
        if lossy_history:
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionRatio = [ratio for _, ratio in lossy_history]
            ds.LossyImageCompressionMethod = [method for method, _ in lossy_history]
        else:
            ds.LossyImageCompression = "00"
        if kind == "LABEL":
            ds.BarcodeValue = ""
            ds.LabelText = ""
        optical = str(channel or 0)
        if channel is not None:
            ds.OpticalPathSequence = [self._optical_path(channel)]
        elif kind in ("LABEL", "OVERVIEW") and self.slide.planes:
            optical = self._photo_of_channels(ds)
        ds.SharedFunctionalGroupsSequence = [self._shared_groups(ds.ImageType, downsample, optical)]
        if kind in ("LABEL", "OVERVIEW"):
            # Scanners record no pixel spacing for these photographs of the glass, yet the IOD
            # requires one: nominal, from the long side of a 76 x 26 mm slide (overview) or of
            # its 26 x 26 mm label area.
            spacing = (76.0 if kind == "OVERVIEW" else 26.0) / max(width, height)
            measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
            measures.PixelSpacing = [round(spacing, 9), round(spacing, 9)]
            del ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth
        return ds

    def _shared_groups(self, image_type, downsample: float, optical_path: str) -> Dataset:
        measures = Dataset()
        measures.PixelSpacing = [
            round(self.spacing.y * downsample / 1000.0, 9),
            round(self.spacing.x * downsample / 1000.0, 9),
        ]
        measures.SliceThickness = _SLICE_THICKNESS_MM
        frame_type = Dataset()
        frame_type.FrameType = list(image_type)
        optical = Dataset()
        optical.OpticalPathIdentifier = optical_path
        groups = Dataset()
        groups.PixelMeasuresSequence = [measures]
        groups.WholeSlideMicroscopyImageFrameTypeSequence = [frame_type]
        groups.OpticalPathIdentificationSequence = [optical]
        return groups


def header_bytes(dataset: Dataset, transfer_syntax: str) -> bytes:
    """The Part-10 file up to (not including) Pixel Data: preamble, file meta, ``dataset``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    dataset.file_meta = meta
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
