"""Turn any supported input (CT file or DICOM folder, optional mask and centroids) into a
VerSe-layout case. Used by ``spinelabel convert`` and from Slicer's Python console.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .errors import SpineLabelInputError
from .image import Image, check_ct_intensities, load_image, map_to_grid_exactly
from . import labels

MASK_LABEL_SCHEMES = ("verse", "totalseg")


def load_mask_for(ct: Image, mask_path: str | os.PathLike, scheme: str = "verse") -> Image:
    """Load a label mask and put it on ``ct``'s grid (exactly, or refuse).

    ``scheme="totalseg"`` maps TotalSegmentator v2 ids to VerSe values (S1 joins the
    sacrum). A Slicer ``.seg.nrrd`` is mapped by its segment names/terminology whatever
    the scheme (see :mod:`SpineLabelLib.segnrrd`). With ``"verse"``, values outside the VerSe set are an error naming the file;
    subregion (40-50) and disc (100+) values are dropped with a warning, since the
    VerSe instance mask holds whole vertebrae only.
    """
    if scheme not in MASK_LABEL_SCHEMES:
        raise ValueError(f"unknown mask label scheme {scheme!r}; choose from {MASK_LABEL_SCHEMES}")
    from .segnrrd import is_seg_nrrd, load_seg_nrrd_as_verse
    from .verse.layout import mask_value_problems

    if is_seg_nrrd(mask_path):  # segment numbers, not label values: mapped by segment names
        return map_to_grid_exactly(load_seg_nrrd_as_verse(mask_path), ct, "mask")
    mask = map_to_grid_exactly(load_image(mask_path), ct, "mask")
    if scheme == "totalseg":
        values = mask.array
        if not np.issubdtype(values.dtype, np.integer) and not np.array_equal(values, np.round(values)):
            raise SpineLabelInputError(mask_path, "holds non-integer values; a label mask must hold integer labels")
        return mask.with_array(labels.totalseg_to_verse(values))
    errors, _ = mask_value_problems(mask)
    if errors:
        raise SpineLabelInputError(mask_path, "; ".join(errors))
    values = np.unique(mask.array).astype(np.int64)
    dropped = [int(v) for v in values if v != 0 and not labels.is_vertebra(v)]
    array = mask.array
    if dropped:
        warnings.warn(f"{mask_path}: subregion/disc labels {dropped} are not vertebrae and were left out")
        array = np.where(np.isin(array, dropped), 0, array)
    return mask.with_array(array.astype(labels.mask_dtype(values), copy=False))

def convert_case(
    ct: str | os.PathLike,
    out: str | os.PathLike,
    subject: str,
    mask: str | os.PathLike | None = None,
    centroids: str | os.PathLike | None = None,
    mask_labels: str = "verse",
    snapshot: bool = True,
    overwrite: bool = False,
):
    """Write a VerSe-layout case ``out/{rawdata,derivatives}/sub-<subject>/…``.

    Parameters
    ----------
    ct: CT file (NIfTI, NRRD, MHA) or DICOM series folder. Its native grid and
        orientation are kept in the output.
    mask: optional instance mask on the CT's grid (or an exact re-orientation of it).
    centroids: optional centroid JSON; computed from the mask (vertebral BODY centres)
        when not given.
    mask_labels: ``"verse"`` or ``"totalseg"`` (TotalSegmentator v2 ids, mapped).
    Returns the written :class:`~SpineLabelLib.verse.layout.VerseCase`.
    """
    from .verse.centroids_json import read_centroids
    from .verse.layout import write_case

    ct_image = load_image(ct)
    for problem in check_ct_intensities(ct_image):
        warnings.warn(problem)
    mask_image = load_mask_for(ct_image, mask, mask_labels) if mask is not None else None
    centroids_ijk = read_centroids(centroids, ct_image) if centroids is not None else None
    return write_case(
        Path(out), subject, ct_image, mask_image, centroids_ijk, snapshot=snapshot, overwrite=overwrite
    )
