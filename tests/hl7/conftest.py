"""Fixtures of the HL7 tests (defined in hl7_support, whose name no other suite shares)."""

from hl7_support import hub, peer  # noqa: F401
