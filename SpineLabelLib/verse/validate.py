"""Check a VerSe dataset folder and list every problem, file by file.

Unlike the loaders, which stop at the first bad input, :func:`validate_dataset` keeps
going and reports all it finds, so one run tells a curator everything to fix. It is the
engine behind ``spinelabel validate DIR``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import labels
from ..errors import SpineLabelInputError
from ..image import Image, check_ct_intensities, load_image
from .centroids_json import check_centroids
from .layout import VerseCase, mask_value_problems, scan_dataset

ERROR, WARNING = "error", "warning"

#: A centroid outside its vertebra's voxels by more than this (mm) is an error; closer is
#: a warning (a body centre can graze the mask border of a thin or fractured vertebra).
CENTROID_FAR_FROM_MASK_MM = 10.0


@dataclass
class Problem:
    """One finding: the file it concerns, ``"error"`` or ``"warning"``, and what is wrong."""

    path: str
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


def validate_dataset(
    root: str | os.PathLike, progress: Callable[[int, int, str], None] | bool | None = None
) -> list[Problem]:
    """Check every case and file below ``root``; return all problems (empty list: clean).

    ``progress``: None/False for silence, True for a tqdm bar on stderr (the CLI), or a
    callable invoked as ``progress(done, total, case_name)`` after each case.
    Problems are ordered by case (as :func:`discover_cases` orders them), then by file.
    Raises :class:`SpineLabelInputError` only when ``root`` itself is not a folder.
    """
    scan = scan_dataset(root)
    problems: list[Problem] = []
    if not scan.cases:
        problems.append(Problem(str(root), ERROR, "contains no VerSe case (no *_ct.nii.gz, verseNNN.nii.gz, ...)"))
    total = len(scan.cases)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="validating", unit="case")
    try:
        for done, case in enumerate(scan.cases, start=1):
            problems.extend(validate_case(case))
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(done, total, case.name)
    finally:
        if bar is not None:
            bar.close()
    for path in scan.unrecognised:
        problems.append(Problem(str(path), WARNING, "is not a VerSe file name; not part of any case"))
    for ignored, kept in scan.duplicates:
        problems.append(Problem(str(ignored), WARNING, f"duplicates {kept.name} for the same case; ignored"))
    for path in scan.hidden:
        if ".tmp" in path.name:
            problems.append(Problem(str(path), WARNING, "looks like a leftover temporary file of an interrupted write"))
    return problems


def validate_case(case: VerseCase) -> list[Problem]:
    """All problems of one case: its files, their grids, labels, centroids, snapshot."""
    problems: list[Problem] = []

    def add(path, severity, message):
        problems.append(Problem(str(path), severity, message))

    ct = _load(case.ct, add) if case.ct is not None else None
    mask = _load(case.mask, add) if case.mask is not None else None
    _check_presence(case, add)
    if ct is not None:
        for message in check_ct_intensities(ct):
            add(case.ct, WARNING, message.split(": ", 1)[-1] if message.startswith(str(ct.source)) else message)
    if mask is not None:
        errors, notes = mask_value_problems(mask)
        for message in errors:
            add(case.mask, ERROR, message)
        for message in notes:
            add(case.mask, WARNING, message)
        if ct is not None:
            try:
                ct.require_same_grid(mask)
            except SpineLabelInputError as exc:
                add(case.mask, ERROR, exc.problem)
                mask = None  # a mask on another grid cannot be compared voxel by voxel
    grid = ct if ct is not None else mask
    if case.centroids is not None and grid is not None:
        _check_centroid_file(case, grid, mask, add)
    elif case.centroids is not None:
        add(case.centroids, ERROR, "cannot be checked: no readable image or mask to place the centroids on")
    if case.snapshot is not None:
        _check_png(case.snapshot, add)
    return problems


def _load(path: Path, add) -> Image | None:
    try:
        return load_image(path)
    except SpineLabelInputError as exc:
        add(path, ERROR, exc.problem)
    except Exception as exc:  # anything else from a reader is still a bad file, not a crash
        add(path, ERROR, f"cannot be read ({type(exc).__name__}: {exc})")
    return None


def _check_presence(case: VerseCase, add) -> None:
    if case.ct is None:
        for path in case.files():
            add(path, ERROR, f"has no CT image for case {case.stem} (orphan file)")
        return
    if case.mask is None:
        add(case.ct, ERROR, "has no vertebra mask (expected the matching *_seg-vert_msk / *_seg file)")
    if case.centroids is None and case.mask is not None:
        add(case.mask, ERROR, "has no centroid JSON beside it (expected *_seg-subreg_ctd.json / *_ctd.json)")
    if case.snapshot is None:
        add(case.ct, WARNING, "has no snapshot PNG (*_seg-vert_snp.png)")


def _check_centroid_file(case: VerseCase, grid: Image, mask: Image | None, add) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_centroids returns its findings instead
        result = check_centroids(case.centroids, grid)
    for message in result.errors:
        add(case.centroids, ERROR, message)
    for message in result.warnings:
        add(case.centroids, WARNING, message)
    if mask is None or result.errors:
        return
    for message, severity in centroid_mask_problems(result.centroids_ijk, mask):
        add(case.centroids, severity, message)


def centroid_mask_problems(centroids_ijk: dict[int, np.ndarray], mask: Image) -> list[tuple[str, str]]:
    """(message, severity) for centroids (voxel (i, j, k) on ``mask``'s grid) that do not sit
    in their vertebra, and for mask vertebrae that have no centroid."""
    from scipy import ndimage

    out: list[tuple[str, str]] = []
    arr = mask.array
    present = {int(v) for v in np.unique(arr) if v == np.round(v) and labels.is_vertebra(int(v))}
    int_arr = arr.astype(np.int64, copy=False)
    boxes = ndimage.find_objects(np.where((int_arr > 0) & (int_arr <= max(present, default=0)), int_arr, 0))
    for value, ijk in centroids_ijk.items():
        name = labels.name_of(value)
        if value not in present:
            out.append((f"centroid {name} has no vertebra {name} (value {value}) in the mask", ERROR))
            continue
        voxel = np.rint(ijk).astype(int)
        if np.all(voxel >= 0) and np.all(voxel < np.asarray(mask.shape)) and int_arr[tuple(voxel)] == value:
            continue
        distance = _distance_to_label_mm(mask, int_arr, boxes[value - 1], value, ijk)
        severity = ERROR if distance > CENTROID_FAR_FROM_MASK_MM else WARNING
        out.append((f"centroid {name} lies outside its vertebra's mask, {distance:.1f} mm from it", severity))
    for value in labels.sort_anatomical(present - set(centroids_ijk)):
        out.append((f"vertebra {labels.name_of(value)} in the mask has no centroid", WARNING))
    return out


def _distance_to_label_mm(mask: Image, int_arr: np.ndarray, box, value: int, ijk) -> float:
    """World distance (mm) from voxel point ``ijk`` to the nearest voxel centre of ``value``."""
    offset = np.array([s.start for s in box])
    voxels = np.argwhere(int_arr[box] == value) + offset
    world = mask.index_to_world(voxels)
    return float(np.min(np.linalg.norm(world - mask.index_to_world(ijk), axis=1)))


def _check_png(path: Path, add) -> None:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as png:
            png.verify()  # reads the whole file: catches truncation and bad checksums
    except Exception as exc:
        add(path, ERROR, f"is not a readable PNG ({type(exc).__name__}: {exc})")
