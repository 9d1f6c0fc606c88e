"""Label version files: every save of a case's labels is a new, immutable pair of files.

Layout (``VERSIONS`` defaults to ``DATASET/.spinelabel/versions``)::

    VERSIONS/<case key>/<UTC time>-<user>-<random>_seg-vert_msk.nii.gz   mask on the CT grid
    VERSIONS/<case key>/<same stem>_seg-subreg_ctd.json                  VerSe centroids (CT grid)

The files get a unique name *before* the store numbers the version, so concurrent savers
never collide; each file is written to a temporary name, flushed to disk (fsync) and
renamed into place, and only then is the version recorded in the store. A crash at any
moment therefore leaves either no version or a complete one (at worst an unreferenced
file, never a referenced half-file). Version files are never modified or deleted.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import SpineLabelInputError
from ..fileio import atomic_output
from ..image import Image, load_image, save_nifti
from ..verse.centroids_json import centroids_to_json, read_centroids


def case_key(case_id: str) -> str:
    """A file-system-safe folder name for a case id (``split/stem`` -> ``split__stem``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id.replace("/", "__"))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some file systems cannot sync a directory; the rename is still atomic
        pass


def write_version_files(versions_dir: str | os.PathLike, case_id: str, user: str, mask: Image,
                        centroids_ijk: dict[int, np.ndarray] | None) -> tuple[str, str | None]:
    """Write a mask (and its centroids, voxel (i, j, k) on the mask grid) as new version
    files; return their paths relative to ``versions_dir``. Nothing existing is touched."""
    root = Path(versions_dir)
    folder = root / case_key(case_id)
    stem = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{re.sub(r'[^A-Za-z0-9-]', '-', user)[:32]}-{uuid.uuid4().hex[:12]}"
    mask_path = folder / f"{stem}_seg-vert_msk.nii.gz"
    values = np.unique(mask.array).astype(np.int64).tolist()
    with atomic_output(mask_path) as tmp:
        save_nifti(mask.with_array(mask.array.astype(labels.mask_dtype(values), copy=False)), tmp,
                   overwrite=True)
        _fsync(tmp)
    ctd_rel = None
    if centroids_ijk is not None:
        ctd_path = folder / f"{stem}_seg-subreg_ctd.json"
        with atomic_output(ctd_path) as tmp:
            tmp.write_text(json.dumps(centroids_to_json(centroids_ijk, mask)) + "\n", encoding="utf-8")
            _fsync(tmp)
        ctd_rel = ctd_path.relative_to(root).as_posix()
    _fsync_dir(folder)
    return mask_path.relative_to(root).as_posix(), ctd_rel


def read_version_files(versions_dir: str | os.PathLike, mask_file: str, centroids_file: str | None,
                       ct: Image | None = None) -> tuple[Image, dict[int, np.ndarray] | None]:
    """Load a version's mask (checked against ``ct``'s grid when given) and centroids
    (voxel (i, j, k) on that grid)."""
    root = Path(versions_dir)
    path = root / mask_file
    if not path.exists():
        raise SpineLabelInputError(path, "label version file is missing (was the versions folder moved or pruned?)")
    mask = load_image(path)
    if ct is not None:
        ct.require_same_grid(mask, what="label version")
    centroids = read_centroids(root / centroids_file, mask) if centroids_file else None
    return mask, centroids
