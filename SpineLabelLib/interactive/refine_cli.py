"""The workflow behind ``spinelabel refine`` (usable from Python too): load a case, apply
clicks to one vertebra with a session, write the corrected mask as a new version."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import SpineLabelInputError
from ..image import Image, load_image, save_nifti
from .base import check_label

VERSIONS_DIR = ".versions"  # hidden: VerSe discovery skips dot-folders, so versions never look like cases


def _load(case, mask, mask_labels) -> tuple[Image, Image]:
    from ..convert import load_mask_for
    from ..verse.layout import discover_cases

    case = Path(case)
    if mask is not None:
        ct = load_image(case)
        return ct, load_mask_for(ct, mask, mask_labels)
    if not case.is_dir():
        raise SpineLabelInputError(case, "is a file; pass --mask MASK with a CT file, or a VerSe case folder")
    found = [c for c in discover_cases(case) if c.ct is not None and c.mask is not None]
    if len(found) != 1:
        raise SpineLabelInputError(case, f"holds {len(found)} cases with CT and vertebra mask; point at one case folder or pass --mask")
    ct = load_image(found[0].ct)
    return ct, load_mask_for(ct, found[0].mask, mask_labels)


def next_version_path(mask_path: Path) -> Path:
    name = mask_path.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    folder = mask_path.parent / VERSIONS_DIR
    taken = [int(m.group(1)) for p in folder.glob(f"{stem}.v*.nii.gz") if (m := re.search(r"\.v(\d+)\.nii\.gz$", p.name))]
    return folder / f"{stem}.v{max(taken, default=0) + 1}.nii.gz"


def refine_case(case, label, clicks, mask=None, mask_labels="verse", box=None, unlock=(), engine="classical",
                out=None, overwrite=False, **engine_options) -> dict:
    """Refine ``label`` of a case's mask with ``clicks`` and write the result as a new file.

    Returns {"path", "changed", "bbox", "label_name"}. The input mask is never replaced."""
    from .session import open_session

    value = check_label(label)
    ct, mask_img = _load(case, mask, mask_labels)
    source = Path(mask_img.source) if mask_img.source else Path(case)
    target = Path(out) if out else next_version_path(source)
    if source.exists() and target.exists() and os.path.samefile(target, source):
        raise SpineLabelInputError(target, "is the input mask; refine writes a new version and never overwrites it in place")
    unlock_values = [check_label(u) for u in unlock]
    with open_session(ct, mask_img.array, engine=engine, **engine_options) as session:
        result = session.refine_result(value, clicks, box=box, overwrite=unlock_values or False)
        new = session.labelmap_image()
    dtype = L.mask_dtype(np.unique(new.array).astype(np.int64).tolist())
    save_nifti(ct.with_array(new.array.astype(dtype)), target, overwrite=overwrite)
    bbox = None if result.bbox is None else [[s.start, s.stop] for s in result.bbox]
    return {"path": target, "changed": result.changed, "bbox": bbox, "label_name": L.name_of(value)}
