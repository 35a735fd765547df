"""Patients as the hospital's patient administration keeps them.

An update (HL7 ADT^A08) corrects a patient's name, birth date and sex; a merge (ADT^A40) moves
a prior patient's studies to the surviving patient and keeps the prior ID among its other IDs,
and objects still arriving under the prior ID are filed with the survivor. The stored objects
stay as received: the index presents the corrected values (``hub.archive.corrected``) to
QIDO-RS, C-FIND and WADO-RS metadata, and the open worklist steps of the patient take them too.

Every change is logged with what it replaced (``patient_changes``) and audited, and an
administrator can revert it (``/api/admin/patients/changes``), latest first.
"""
