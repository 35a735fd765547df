"""Live POCUS guidance: WebRTC sessions between a clinic and a specialist, with DICOM capture."""
