"""Core errors, with the PS3.7 / PS3.18 failure reason each maps to."""

from __future__ import annotations

# PS3.7 Annex C / PS3.18 failure reasons used by the archive.
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
# PS3.4 B.2.3: stored, although the data set does not meet its IOD.
WARNING_DOES_NOT_MATCH_SOP_CLASS = 0xB007


class ArchiveError(Exception):
    """Base class of errors the doors translate into protocol statuses."""


class IngestError(ArchiveError):
    """An object was refused; nothing of it is stored."""

    def __init__(self, reason: int, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.conflict = conflict  # True where the refusal is a clash with stored state (HTTP 409)


def uid_in_use() -> IngestError:
    """The one answer to every UID clash (study, series or instance) a write meets, whether
    with the writer's own objects or with objects it may not read: it names nothing stored, so
    it tells another user's study apart from nothing at all."""
    return IngestError(
        PROCESSING_FAILURE, "A UID of this object is in use by other stored objects", conflict=True
    )


class NotFound(ArchiveError):
    """The requested study, series, instance or frame does not exist."""


class NotAcceptable(ArchiveError):
    """The object exists but cannot be given in the requested form (HTTP 406)."""
