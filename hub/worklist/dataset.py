"""Worklist items as DICOM: the MWL C-FIND answer and the attributes images copy from it.

The MWL answer follows PS3.4 K.6.1 (Modality Worklist Information Model); the image
attributes follow PS3.17 Annex J (HIS/RIS integration: what a modality copies from the
worklist into the images it acquires).
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.sequence import Sequence

from hub.worklist.model import Code, WorklistItem


def _code_items(codes: list[Code]) -> Sequence:
    items = []
    for code in codes:
        ds = Dataset()
        ds.CodeValue = code.value
        ds.CodingSchemeDesignator = code.scheme
        ds.CodeMeaning = code.meaning
        items.append(ds)
    return Sequence(items)


# The study a worklist item schedules, referenced the way RIS systems do (PS3.4 K.6.1.2.2
# keeps Detached Study Management as the referenced SOP class); an empty sequence would be
# invalid in the image (Type 3 in the General Study module).
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"


def _referenced_study(item: WorklistItem) -> Sequence:
    ref = Dataset()
    ref.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    ref.ReferencedSOPInstanceUID = item.study_uid
    return Sequence([ref])


def _patient(ds: Dataset, item: WorklistItem) -> None:
    ds.PatientName = item.patient_name
    ds.PatientID = item.patient_id
    ds.PatientBirthDate = item.birth_date
    ds.PatientSex = item.sex
    ds.PatientAge = item.age or None
    ds.PatientWeight = _format_ds(item.weight_kg)
    ds.PatientSize = _format_ds(item.size_m)


def _format_ds(value: float | None) -> str | None:
    # DS is at most 16 characters; repr of a float can be longer.
    return None if value is None else f"{value:.6g}"


def worklist_dataset(item: WorklistItem) -> Dataset:
    """Every attribute the MWL SCP can return for one scheduled procedure step."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    _patient(ds, item)
    ds.AccessionNumber = item.accession
    ds.ReferringPhysicianName = item.referring_physician
    ds.StudyInstanceUID = item.study_uid
    ds.ReferencedStudySequence = _referenced_study(item)
    ds.RequestedProcedureID = item.requested_procedure_id
    ds.RequestedProcedureDescription = item.requested_procedure_description
    ds.RequestedProcedureCodeSequence = _code_items(item.requested_procedure_codes)
    sps = Dataset()
    sps.ScheduledStationAETitle = item.station_ae
    sps.ScheduledProcedureStepStartDate = item.start_date
    sps.ScheduledProcedureStepStartTime = item.start_time
    sps.Modality = item.modality
    sps.ScheduledPerformingPhysicianName = item.performing_physician
    sps.ScheduledProcedureStepDescription = item.sps_description
    sps.ScheduledProtocolCodeSequence = _code_items(item.protocol_codes)
    sps.ScheduledProcedureStepID = item.sps_id
    sps.ScheduledProcedureStepStatus = item.status
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


def image_attributes(item: WorklistItem) -> Dataset:
    """What an image acquired for this step copies from the worklist (PS3.17 Annex J).

    Merge the result into the image dataset: patient module, StudyInstanceUID,
    AccessionNumber, ReferencedStudySequence and a RequestAttributesSequence item carrying
    the requested procedure, the scheduled step and its protocol codes.
    """
    ds = Dataset()
    _patient(ds, item)
    ds.StudyInstanceUID = item.study_uid
    ds.AccessionNumber = item.accession
    ds.ReferringPhysicianName = item.referring_physician
    ds.ReferencedStudySequence = _referenced_study(item)
    if item.requested_procedure_description:
        ds.StudyDescription = item.requested_procedure_description
    if item.requested_procedure_codes:
        ds.ProcedureCodeSequence = _code_items(item.requested_procedure_codes)
    request = Dataset()
    request.AccessionNumber = item.accession
    request.StudyInstanceUID = item.study_uid
    request.RequestedProcedureID = item.requested_procedure_id
    request.RequestedProcedureDescription = item.requested_procedure_description
    request.RequestedProcedureCodeSequence = _code_items(item.requested_procedure_codes)
    request.ScheduledProcedureStepID = item.sps_id
    request.ScheduledProcedureStepDescription = item.sps_description
    request.ScheduledProtocolCodeSequence = _code_items(item.protocol_codes)
    ds.RequestAttributesSequence = Sequence([request])
    if item.protocol_codes:
        ds.PerformedProtocolCodeSequence = _code_items(item.protocol_codes)
    return ds
