"""``spinelabel export``: a clean VerSe release (BIDS layout) from the queue's labels.

Each exported case gets ``rawdata/sub-X/..._ct.nii.gz`` and, under ``derivatives/sub-X/``,
the mask, centroid JSON and snapshot of its approved version (``approved_only``) or of its
current version. Cases without labels, flagged cases and cases whose subject id collides
are left out and listed with the reason. Nothing existing in ``out`` is overwritten
unless ``overwrite``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputExistsError, SpineLabelError
from ..verse.layout import classify_name, write_case
from . import model as M


@dataclass
class ExportReport:
    written: dict[str, str] = field(default_factory=dict)  # case id -> stem written
    left_out: dict[str, str] = field(default_factory=dict)  # case id -> why


def export_dataset(queue, out: str | os.PathLike, approved_only: bool = False, overwrite: bool = False,
                   snapshot: bool = True, progress=None) -> ExportReport:
    out = Path(out)
    report = ExportReport()
    cases = queue.store.list_cases()
    for n, case in enumerate(cases):
        try:
            if case.status == M.FLAGGED:
                raise SpineLabelError(f"flagged: {case.comment}")
            version = case.approved_version if approved_only else case.current_version
            if approved_only and case.status != M.APPROVED:
                raise SpineLabelError(f"not approved (status {case.status})")
            if version is None:
                raise SpineLabelError("has no labels")
            ct = queue.ct(case.case_id)
            mask, centroids = queue.labels(case.case_id, version, ct)
            info = classify_name(Path(case.ct_path).name)
            stem = info[2] if info else f"sub-{case.subject}"
            entities = stem[len(f"sub-{case.subject}"):] if stem.startswith(f"sub-{case.subject}") else ""
            written = write_case(out, case.subject, ct, mask, centroids, snapshot=snapshot, overwrite=overwrite,
                                 entities=entities)
            report.written[case.case_id] = written.stem
        except OutputExistsError:
            raise  # a refusal for the whole export, not a per-case problem
        except SpineLabelError as exc:
            report.left_out[case.case_id] = str(exc)
        if callable(progress):
            progress(n + 1, len(cases), case.case_id)
    return report
