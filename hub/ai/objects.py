"""A model's result as DICOM: Microscopy Bulk Simple Annotations of what it found, and a
Comprehensive 3D SR measurement report (TID 1500) of what it measured, both made with highdicom.

Both name the algorithm (AlgorithmIdentificationSequence in the annotations, TID 4019 in the
report); the report's observer is the model as a device whose UID is derived from its name and
version, so every report of one model version names the same device. A report is UNVERIFIED
until a pathologist verifies it, and names the report it replaces (Predecessor Documents).
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from hub.ai.model import MEASURES, Model, Result

ANN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.91.1"
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
# What the model annotates: tissue regions, or nuclei (PS3.16 CID 7150 / SCT).
CATEGORY = Code("91723000", "SCT", "Anatomical structure")
KINDS = {"Tissue": Code("85756007", "SCT", "Tissue"), "Nucleus": Code("84640000", "SCT", "Nucleus")}
PROCEDURE = Code("112703", "DCM", "Whole Slide Imaging")
ANN_SERIES_NUMBER, SR_SERIES_NUMBER = 910, 911


def device_uid(model: Model) -> str:
    """The same UID for every report of one model version, and another for the next version."""
    return generate_uid(entropy_srcs=["tessera-ai-device", model.name, model.version])


def series_uid(image_uid: str, model: Model, kind: str) -> str:
    """The series holding one model's ``kind`` (ANN or SR) objects of one image, across its
    versions: re-analyses add instances to it, so its newest instance is the current result."""
    return generate_uid(entropy_srcs=["tessera-ai-series", image_uid, model.name, kind])


def software_versions(model: Model) -> str:
    return f"{model.name} {model.version}"[:64]


def annotations(
    image: Dataset, model: Model, result: Result, series: str, number: int
) -> hd.ann.MicroscopyBulkSimpleAnnotations:
    """The regions or points of ``result`` on ``image`` (level 0), in slide coordinates."""
    to_slide = hd.spatial.ImageToReferenceTransformer.for_image(image, for_total_pixel_matrix=True)
    if len(result.regions):
        graphic_type, graphic = (
            "POLYGON",
            [to_slide(np.asarray(r, dtype=float)) for r in result.regions],
        )
    else:
        graphic_type, graphic = (
            "POINT",
            [to_slide(p.reshape(1, 2)) for p in np.asarray(result.points, dtype=float)],
        )
    group = hd.ann.AnnotationGroup(
        number=1,
        uid=generate_uid(),
        label=result.label,
        annotated_property_category=CATEGORY,
        annotated_property_type=KINDS.get(result.label, KINDS["Tissue"]),
        graphic_type=graphic_type,
        graphic_data=graphic,
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=model.name,
            family=model.family,
            version=model.version,
            parameters=dict(model.parameters),
        ),
    )
    return hd.ann.MicroscopyBulkSimpleAnnotations(
        source_images=[image],
        annotation_coordinate_type="3D",
        annotation_groups=[group],
        series_instance_uid=series,
        series_number=ANN_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=number,
        manufacturer=model.manufacturer,
        manufacturer_model_name=model.name,
        software_versions=software_versions(model),
        device_serial_number=model.version,
        content_description=f"{result.label} found by {model.name} {model.version}"[:64],
        content_label="AI",
        series_description=f"AI {model.name}"[:64],
    )


def measurement_report(
    image: Dataset,
    model: Model,
    result: Result,
    series: str,
    number: int,
    replaces: Dataset | None,
    annotated: Dataset,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500: the measurements of ``result`` on ``image``, observed by the model as a device;
    its evidence is the image and the annotations of the same analysis."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[f"{k}={v}" for k, v in model.parameters.items()],
    )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(model),
        name=model.name,
        manufacturer_name=model.manufacturer,
        model_name=model.name,
    )
    observed = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    measurements = [
        hd.sr.Measurement(
            name=MEASURES[key][0], value=float(value), unit=MEASURES[key][1], algorithm_id=algorithm
        )
        for key, value in result.measurements.items()
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"{model.name} {model.version}"[:64]
        ),
        algorithm_id=algorithm,
        measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=observed,
        procedure_reported=PROCEDURE,
        imaging_measurements=[group],
    )
    now = datetime.now()
    return hd.sr.Comprehensive3DSR(
        evidence=[image, annotated],
        content=report,
        series_instance_uid=series,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=number,
        manufacturer=model.manufacturer,
        is_complete=True,
        is_verified=False,
        previous_versions=[replaces] if replaces is not None else None,
        manufacturer_model_name=model.name,
        software_versions=software_versions(model),
        series_description=f"AI {model.name} measurements"[:64],
        content_date=now.date(),
        content_time=now.time(),
    )
