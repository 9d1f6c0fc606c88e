"""Records, states and errors of the review queue (no storage, no I/O).

A *case* is one CT of the dataset (identified by its case id, the VerSe case name
``split/stem`` or ``stem``); it moves through

    new -> automatic -> in progress -> corrected -> approved
                 (any state but approved) -> flagged (with a comment)

A *vertebra* is one label of the case's current label version, with its own status
(automatic / edited / verified), the engine's confidence, the QA flags of that version
and the reviewer's attributes (Genant grade, implant, transitional, fully in the FOV).
Every change to either is an :class:`Event` in the log.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SpineLabelError

#: Version of the store schema. A store written by a newer SpineLabel is refused (never
#: "upgraded" backwards); an older one is migrated when a migration exists.
SCHEMA_VERSION = 1

NEW, AUTOMATIC, IN_PROGRESS, CORRECTED, APPROVED, FLAGGED = (
    "new", "automatic", "in progress", "corrected", "approved", "flagged")
CASE_STATES = (NEW, AUTOMATIC, IN_PROGRESS, CORRECTED, APPROVED, FLAGGED)

V_AUTOMATIC, V_EDITED, V_VERIFIED = "automatic", "edited", "verified"
VERTEBRA_STATES = (V_AUTOMATIC, V_EDITED, V_VERIFIED)

#: What ``next`` hands out per role: annotators get machine proposals (and cases without
#: one, to label from scratch, and abandoned work); reviewers get corrected cases.
CLAIMABLE = {"annotate": (AUTOMATIC, IN_PROGRESS, NEW), "review": (CORRECTED,)}

#: Reviewer attributes of a vertebra and their allowed values.
ATTRIBUTES = {
    "fracture_grade": (0, 1, 2, 3),  # Genant semi-quantitative grade
    "implant": (False, True),
    "transitional": (False, True),
    "in_fov": (False, True),  # fully inside the field of view
}

DEFAULT_LEASE_S = 30 * 60.0


class QueueError(SpineLabelError):
    """A queue operation was refused (the message says why and names the case)."""


class ClaimError(QueueError):
    """The case is claimed by someone else, or the caller holds no claim on it."""


class StoreSchemaError(QueueError):
    """The store was written by a newer SpineLabel, or is not a SpineLabel store."""


class UnknownCaseError(QueueError):
    pass


@dataclass
class CaseRecord:
    """One case in the store. Paths are relative to the dataset folder (POSIX separators)."""

    case_id: str
    subject: str
    ct_path: str | None
    status: str = NEW
    current_version: int | None = None
    approved_version: int | None = None
    assignee: str | None = None
    claim_expires: float | None = None  # epoch seconds
    claimed_at: float | None = None
    priority: int = 0  # set by people; higher first under every strategy
    min_confidence: float | None = None  # lowest vertebra confidence of the current version
    qa_flags: int = 0  # number of QA flags of the current version
    comment: str | None = None
    updated: float | None = None
    # targets of the VerSe derivative written on approval (relative to the dataset)
    mask_path: str | None = None
    centroids_path: str | None = None
    snapshot_path: str | None = None

    def claimed_by_other(self, user: str, now: float) -> bool:
        return (self.assignee is not None and self.assignee != user
                and self.claim_expires is not None and self.claim_expires > now)


@dataclass
class VertebraRecord:
    case_id: str
    label: int  # VerSe value
    status: str = V_AUTOMATIC
    confidence: float | None = None
    qa: list[dict] = field(default_factory=list)  # [{"kind": ..., "message": ...}]
    fracture_grade: int | None = None
    implant: bool | None = None
    transitional: bool | None = None
    in_fov: bool | None = None


@dataclass
class VersionRecord:
    """A saved label version: mask (+ centroid JSON) files relative to the versions folder."""

    case_id: str
    n: int
    mask_file: str
    centroids_file: str | None
    created: float
    user: str
    source: str  # import | auto | submit | edit | revert
    engine: str | None = None
    model_version: str | None = None


@dataclass
class Event:
    """One entry of the event log: who did what to which case, when, and at what cost."""

    case_id: str | None
    at: float
    user: str
    kind: str  # init | claim | renew | release | takeover | auto | submit | edit | undo | revert | approve | flag | ...
    detail: dict = field(default_factory=dict)
    seconds: float | None = None  # time spent by the user on this step
    clicks: int | None = None
    engine: str | None = None
    model_version: str | None = None
    version: int | None = None
    id: int | None = None
