"""What the Slicer panel shows of the review queue and the automatic engines, without Qt
or MRML: the rows of the queue table, the status and confidence of each vertebra (and
whether the scene's labels differ from the saved version), the path option an engine
needs, the reviewer attributes, and one-line reports. The panel only puts these into
widgets; scripts (``scripts/slicer_batch.py``) print them.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass, field

import numpy as np

from .. import labels
from ..errors import SpineLabelInputError
from ..image import Image

#: Columns of the panel's queue table, in order.
CASE_COLUMNS = ("Case", "Status", "Priority", "Assignee", "Confidence", "QA flags", "Comment")
#: Status shown for a vertebra whose voxels in the scene differ from the saved version.
UNSAVED = "edited (unsaved)"
#: Genant semi-quantitative fracture grades (value, text); None: not graded yet.
GENANT_GRADES = ((None, "not graded"), (0, "0 normal"), (1, "1 mild (20-25 %)"), (2, "2 moderate (25-40 %)"),
                 (3, "3 severe (> 40 %)"))
#: Engine options that name a file or folder, and how to ask for them.
PATH_OPTIONS = {"checkpoint": "model checkpoint (folder with model.json, or the model file)",
                "folder": "folder of reference labels (a VerSe dataset)"}


def store_url(text: str | None) -> str | None:
    """The store URL of a text field: None (the dataset's own SQLite file) when blank."""
    text = (text or "").strip()
    return text or None


@contextlib.contextmanager
def open_queue(dataset: str | os.PathLike, store: str | None = None):
    """A :class:`~SpineLabelLib.queue.Queue` with its own store connection, closed on exit
    (background work opens its own, so no connection is shared between threads)."""
    from ..queue import Queue

    queue = Queue(dataset, store_url(store))
    try:
        yield queue
    finally:
        queue.close()


# -- the queue table ---------------------------------------------------------------------
def format_confidence(value: float | None) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def assignee_text(case, now: float) -> str:
    """Who holds the case: the user, ``user (lease expired)``, or ``-``."""
    if not case.assignee:
        return "-"
    if case.claim_expires is not None and case.claim_expires > now:
        return case.assignee
    return f"{case.assignee} (lease expired)"


def case_rows(cases, now: float) -> list[dict]:
    """One row per :class:`~SpineLabelLib.queue.model.CaseRecord`: ``case_id`` and
    ``cells`` (texts in :data:`CASE_COLUMNS` order)."""
    rows = []
    for c in cases:
        cells = (c.case_id, c.status, str(c.priority), assignee_text(c, now), format_confidence(c.min_confidence),
                 str(c.qa_flags), c.comment or "")
        rows.append({"case_id": c.case_id, "cells": cells})
    return rows


def queue_summary(cases, now: float) -> str:
    """One line over the case records: cases per state and the active claims."""
    from ..queue import CASE_STATES

    counts = {state: sum(1 for c in cases if c.status == state) for state in CASE_STATES}
    states = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    claimed = ", ".join(f"{c.case_id} by {c.assignee}" for c in cases
                        if c.assignee and c.claim_expires is not None and c.claim_expires > now)
    return f"{len(cases)} case(s): {states or 'none'}" + (f"; claimed: {claimed}" if claimed else "")


# -- one case of the queue -----------------------------------------------------------------
@dataclass
class QueueCase:
    """A case as the panel loads it: its record, CT, current labels (None before the first
    version) and the vertebra records of that version."""

    case: object
    ct: Image
    mask: Image | None = None
    centroids_ijk: dict | None = None
    records: list = field(default_factory=list)


def read_queue_case(queue, case_id: str) -> QueueCase:
    case = queue.case(case_id)
    ct = queue.ct(case_id)
    mask = centroids = None
    if case.current_version is not None:
        mask, centroids = queue.labels(case_id, ct=ct)
    return QueueCase(case, ct, mask, centroids, queue.store.vertebrae(case_id))


# -- vertebra status and confidence ---------------------------------------------------------
def changed_labels(mask: Image, saved: Image) -> list[int]:
    """Vertebra labels whose voxels differ between ``mask`` and ``saved`` (labels added,
    removed, grown or shrunk), head to feet. Different grids: every label of either."""
    if mask.shape != saved.shape:
        values = set(np.unique(mask.array).tolist()) | set(np.unique(saved.array).tolist())
    else:
        diff = mask.array != saved.array
        values = set(np.unique(mask.array[diff]).tolist()) | set(np.unique(saved.array[diff]).tolist())
    return labels.sort_anatomical(int(v) for v in values if labels.is_vertebra(int(v)))


def vertebra_status(mask: Image, saved: Image | None = None, records=None, confidence: dict | None = None,
                    default_status: str = "-") -> dict[int, tuple[str, float | None]]:
    """VerSe value -> (status, confidence) for every vertebra of ``mask`` (the scene).

    ``records``: the queue's :class:`VertebraRecord` list of the saved version, or
    ``confidence`` (value -> float) of an engine result with ``default_status``; ``saved``:
    the mask those describe. A vertebra whose voxels differ from ``saved`` is
    :data:`UNSAVED` and has no confidence (the engine's no longer applies)."""
    by_label = {int(r.label): r for r in (records or [])}
    changed = set(changed_labels(mask, saved)) if saved is not None else set()
    out = {}
    for v in labels.sort_anatomical(int(x) for x in np.unique(mask.array) if labels.is_vertebra(int(x))):
        if v in changed:
            out[v] = (UNSAVED, None)
        elif v in by_label:
            out[v] = (by_label[v].status, by_label[v].confidence)
        else:
            out[v] = (default_status, (confidence or {}).get(v))
    return out


# -- reviewer attributes --------------------------------------------------------------------
def attribute_values(record) -> dict:
    """The editor's values for a vertebra record (None: nothing recorded yet): grade None
    (not graded), implant and transitional False, fully in the FOV True."""
    if record is None:
        return {"fracture_grade": None, "implant": False, "transitional": False, "in_fov": True}
    return {"fracture_grade": record.fracture_grade, "implant": bool(record.implant),
            "transitional": bool(record.transitional), "in_fov": True if record.in_fov is None else bool(record.in_fov)}


def attributes_to_save(fracture_grade, implant: bool, transitional: bool, in_fov: bool) -> dict:
    """Keyword arguments for :meth:`Queue.set_attributes` (an ungraded vertebra keeps no grade)."""
    out = {"implant": bool(implant), "transitional": bool(transitional), "in_fov": bool(in_fov)}
    if fracture_grade is not None:
        grade = int(fracture_grade)
        if grade not in (0, 1, 2, 3):
            raise SpineLabelInputError(None, f"Genant grade must be 0-3, not {fracture_grade!r}")
        out["fracture_grade"] = grade
    return out


# -- automatic engines --------------------------------------------------------------------
def engine_path_option(name: str) -> str | None:
    """The option of engine ``name`` that names a file or folder (``checkpoint`` for
    monai, ``folder`` for reference), or None for engines that need none."""
    from ..auto.base import engine_class

    parameters = inspect.signature(engine_class(name).__init__).parameters
    return next((key for key in PATH_OPTIONS if key in parameters), None)


def engine_options(name: str, path: str | None = None) -> dict:
    """The options the panel passes to ``get_engine(name, **options)``: the path field
    for engines that need one (an error saying what is missing when it is blank)."""
    key = engine_path_option(name)
    if key is None:
        return {}
    path = (path or "").strip()
    if not path:
        raise SpineLabelInputError(None, f"the {name} engine needs a {PATH_OPTIONS[key]}: give its path (the "
                                         "panel's Model / folder field; --path of scripts/slicer_batch.py)")
    return {key: path}


# -- reports --------------------------------------------------------------------------------
def init_report_text(report, url: str) -> str:
    lines = [f"{len(report.added)} case(s) added ({len(report.imported)} with an existing mask imported as "
             f"version 1), {report.already} already in the queue; store {url}"]
    lines += [f"flagged {case_id}: {problem}" for case_id, problem in report.problems.items()]
    return "\n".join(lines)


def auto_report_text(report, engine: str) -> str:
    lines = [f"{len(report.done)} case(s) proposed by {engine} in {report.seconds:.1f} s, {len(report.failed)} failed, "
             f"{len(report.skipped)} skipped (no longer new)"]
    lines += [f"failed {case_id}: {error}" for case_id, error in report.failed.items()]
    return "\n".join(lines)


def export_report_text(report, out) -> str:
    lines = [f"{len(report.written)} case(s) exported to {out}, {len(report.left_out)} left out"]
    lines += [f"left out {case_id}: {why}" for case_id, why in report.left_out.items()]
    return "\n".join(lines)


def engine_result_text(result) -> str:
    """Summary of an :class:`EngineResult`: labels with confidence and reasons, notes."""
    lowest = result.case_confidence()
    head = (f"{result.engine}: {len(result.labels)} vertebra(e)"
            + ("" if lowest is None else f", lowest confidence {lowest:.2f}") + f" ({result.model_version})")
    return head + ("\n" + result.summary() if result.summary() else "")


# -- what must be installed in Slicer first ---------------------------------------------------
def engine_features(name: str) -> list[str]:
    """Features of :mod:`SpineLabelLib.slicer.dependencies` an engine needs (``monai``:
    MONAI and PyTorch; the others: the core packages only)."""
    from ..auto.base import engine_class

    return ["monai"] if engine_class(name).name == "monai" else []


def store_features(url: str | None) -> list[str]:
    """``["team"]`` (psycopg, dask) for a PostgreSQL store URL, else nothing."""
    scheme = (url or "").split("://", 1)[0].split("+", 1)[0].lower() if "://" in (url or "") else ""
    return ["team"] if scheme in ("postgresql", "postgres") else []


def parse_options(items) -> dict:
    """``["KEY=VALUE", ...]`` (command-line engine options) -> dict; values are read as
    JSON when they parse (``1.5``, ``true``), else kept as text."""
    import json

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpineLabelInputError(None, f"engine option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
