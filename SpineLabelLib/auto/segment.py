"""Segment CTs with an automatic engine and write VerSe-layout cases: the batch API.

One call from Python (e.g. Slicer's console)::

    from SpineLabelLib.auto.segment import segment
    report = segment("ct.nii.gz", "out_dataset")                # weight-free engine
    report = segment("dicom_folder/", "out", engine="monai", engine_options={"checkpoint": "model_dir"})

INPUT is a CT file (NIfTI, NRRD, MHA), a DICOM series folder, or a folder of cases (a
VerSe dataset, or a folder of CT files). For each input a case is written under OUT:
``rawdata/sub-ID/sub-ID_ct.nii.gz`` and in ``derivatives/sub-ID/`` the mask
(``_seg-vert_msk.nii.gz``), body centroids (``_seg-subreg_ctd.json``), the snapshot
(``_seg-vert_snp.png``) and the engine's confidence and reasons
(``_seg-vert_auto.json``). A case whose mask, centroids and auto JSON already exist is
skipped (a re-run finishes an interrupted batch); ``overwrite=True`` redoes it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpineLabelError, SpineLabelInputError
from ..image import NIFTI_SUFFIXES, SITK_SUFFIXES, Image, load_image
from .base import DEFAULT_ENGINE, Engine, EngineResult, get_engine

AUTO_SUFFIX = "_seg-vert_auto.json"


@dataclass
class SegmentItem:
    subject: str
    source: str
    status: str  # "done", "skipped", "failed", "empty"
    message: str = ""
    case_confidence: float | None = None
    labels: list[str] = field(default_factory=list)


def auto_json_path(out_root, subject: str) -> Path:
    from ..verse.layout import case_paths

    paths = case_paths(out_root, subject)
    return paths.mask.with_name(paths.stem + AUTO_SUFFIX)


def _subject_from(path: Path) -> str:
    name = path.name
    for suf in (*NIFTI_SUFFIXES, *SITK_SUFFIXES, ".dcm"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    name = re.sub(r"(_ct|_CT.*)$", "", name)
    name = re.sub(r"^sub-", "", name)
    name = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "case"
    return name


def find_inputs(input_path) -> list[tuple[str, Path]]:
    """(subject, CT path) pairs: a file, a DICOM folder, or a folder of cases / CT files."""
    p = Path(input_path)
    if not p.exists():
        raise SpineLabelInputError(p, "does not exist")
    if p.is_file():
        return [(_subject_from(p), p)]
    files = [f for f in p.iterdir() if f.is_file()]
    images = [f for f in files if f.name.lower().endswith((*NIFTI_SUFFIXES, *SITK_SUFFIXES))]
    if not images and files and not any(f.is_dir() for f in p.iterdir()):
        return [(_subject_from(p), p)]  # a DICOM series folder
    from ..verse.layout import discover_cases

    cases = [c for c in discover_cases(p) if c.ct is not None]
    if cases:
        return [(c.subject, Path(c.ct)) for c in cases]
    subdirs = [d for d in sorted(p.iterdir()) if d.is_dir()]
    if subdirs and not images:
        return [(_subject_from(d), d) for d in subdirs]
    if images:
        return [(_subject_from(f), f) for f in sorted(images)]
    raise SpineLabelInputError(p, "holds no CT file, DICOM series or VerSe case")


def is_finished(out_root, subject: str) -> bool:
    from ..verse.layout import case_paths

    paths = case_paths(out_root, subject)
    return all(x.exists() for x in (paths.ct, paths.mask, paths.centroids)) and auto_json_path(out_root, subject).exists()


def write_result(out_root, subject: str, ct: Image, result: EngineResult, snapshot: bool = True, overwrite: bool = False):
    """Write ``result`` as a VerSe case (+ the auto JSON with confidence and reasons)."""
    from ..fileio import write_json_atomic
    from ..verse.layout import write_case

    case = write_case(out_root, subject, ct, result.mask, result.centroids_ijk, snapshot=snapshot, overwrite=overwrite)
    write_json_atomic(auto_json_path(out_root, subject), result.to_dict(), overwrite=True)
    return case


def segment_image(ct: Image, engine: str | Engine = DEFAULT_ENGINE, **engine_options) -> EngineResult:
    """One CT Image -> EngineResult (no files written)."""
    eng = engine if isinstance(engine, Engine) else get_engine(engine, **engine_options)
    return eng.segment(ct)


def segment(input_path, out_root, engine: str | Engine = DEFAULT_ENGINE, engine_options: dict | None = None,
            overwrite: bool = False, snapshot: bool = True, progress: bool = True,
            stop_on_error: bool = False) -> list[SegmentItem]:
    """Segment every CT found in ``input_path``; write VerSe cases under ``out_root``.

    Returns one :class:`SegmentItem` per input. Finished cases are skipped unless
    ``overwrite``. A failing input is reported (status "failed") and the batch goes on,
    unless ``stop_on_error`` (a single input always raises).
    """
    inputs = find_inputs(input_path)
    eng = engine if isinstance(engine, Engine) else get_engine(engine, **(engine_options or {}))
    eng.check_available()
    names = [s for s, _ in inputs]
    dup = {s for s in names if names.count(s) > 1}
    if dup:
        inputs = [(f"{s}-{i}" if s in dup else s, p) for i, (s, p) in enumerate(inputs)]
    items: list[SegmentItem] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), desc=f"segment ({eng.name})", unit="case")
    try:
        for subject, path in inputs:
            if not overwrite and is_finished(out_root, subject):
                items.append(SegmentItem(subject, str(path), "skipped", "already segmented"))
            else:
                try:
                    ct = load_image(path)
                    res = eng.segment(ct)
                    write_result(out_root, subject, ct, res, snapshot=snapshot, overwrite=True if overwrite else _partial(out_root, subject))
                    status = "empty" if res.empty else "done"
                    from ..labels import name_of

                    items.append(SegmentItem(subject, str(path), status, "; ".join(res.notes) if res.empty else "",
                                             res.case_confidence(), [name_of(v) for v in res.labels]))
                except SpineLabelError as exc:
                    if stop_on_error or len(inputs) == 1:
                        raise
                    items.append(SegmentItem(subject, str(path), "failed", str(exc)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return items


def _partial(out_root, subject: str) -> bool:
    """A half-finished earlier run (some files but not all) may be replaced."""
    from ..verse.layout import case_paths

    paths = case_paths(out_root, subject)
    return any(x.exists() for x in (paths.ct, paths.mask, paths.centroids, paths.snapshot))


__all__ = ["segment", "segment_image", "find_inputs", "write_result", "is_finished", "SegmentItem", "os"]
