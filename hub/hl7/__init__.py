"""The HL7 v2 door: orders from a RIS over MLLP feed the worklist (``hub.worklist``) that the
DIMSE Modality Worklist, slide upload and telehealth read; patient changes from the patient
administration correct and merge the archive's patients (``hub.patients``).

Messages: ORM^O01 (v2.3.1, IHE RAD-4/RAD-13) and OMI^O23 (v2.5+). ORC-1 NW creates a scheduled
procedure step, XO and SC update it, CA and DC cancel it. ADT^A08 updates a patient's
demographics and ADT^A40 merges a prior patient into a surviving one (``hub.hl7.adt``); other
ADT events are refused (AR, "unsupported event"). Each message is applied in one transaction
and answered with an ACK: AA, AE (understood, not applied) or AR (refused), the reason in MSA-3
and ERR-8.

Field mapping (DICOM PS3.17 Annex J, HL7 v2 order to Modality Worklist; where the Annex leaves
a choice, IHE RAD TF-2 RAD-4):

=========================================  ==================================================
Patient ID                                 PID-3.1 (first repetition); Issuer of Patient ID
                                           (PID-3.4) is not kept: the worklist has no column
Patient's Name                             PID-5 (XPN family^given^middle^suffix^prefix
                                           -> PN family^given^middle^prefix^suffix)
Patient's Birth Date, Sex                  PID-7, PID-8 (U -> empty; A, N -> O)
Referring Physician's Name                 PV1-8; without it OBR-16 (ordering provider), as
                                           the worklist has no Requesting Physician
Placer / Filler Order Number               ORC-2 (else OBR-2) / ORC-3 (else OBR-3): the key
                                           of the step (below), not stored
Accession Number                           OBR-18 (ORM), IPC-1 (OMI); else one is made
Requested Procedure ID                     OBR-19 (ORM), IPC-2 (OMI); else one is made
Scheduled Procedure Step ID                OBR-20 (ORM), IPC-4 (OMI); else one is made
Study Instance UID                         ZDS-1 (ORM), IPC-3 (OMI); else made from the key
Requested Procedure Code Sequence,         OBR-4.1-3 (a code only when value, text and coding
Requested Procedure Description            system are all given), OBR-4.2
Scheduled Protocol Code Sequence           IPC-6 (OMI), OBR-4.4-6 (ORM)
Scheduled Procedure Step Description       OBR-4.5 (ORM alternate text), IPC-6.2 (OMI)
Modality                                   IPC-5 (OMI), OBR-24 diagnostic service section
Scheduled Station AE Title                 IPC-9 (OMI)
Scheduled Procedure Step Start Date/Time   TQ1-7 (OMI), OBR-27.4, ORC-7.4; the time zone is
                                           dropped; without any, the time of arrival
=========================================  ==================================================

The key of a step is the placer order number with its assigning authority (EI.1-4), else the
filler's. The step's StudyInstanceUID is the order's own (ZDS-1, IPC-3), else
``2.25.<UUID5 of the key>``; XO/SC/CA/DC find the step by the one or the other, so a sender
that named a Study Instance UID in its NW must name it again (as IHE requires). A re-sent NW
finds its step and changes nothing (AA, "already scheduled"); a repeated CA likewise. An
update changes only what the message gives and never the patient fields (IHE RAD-13: patient
changes come by ADT). One IPC per order (one step per requested procedure).
"""
