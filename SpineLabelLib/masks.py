"""Mask helpers shared by the engines: where a mask lies, and which of its pieces are debris.

* ``nonzero_bbox``: the index box of a mask's voxels by per-axis projections, which read the
  array without a full-size temporary (a 1024 x 1024 x 2000 label map is 2 GB; a boolean
  copy of it and a uint8 copy of that were 4 GB more at the end of the automatic engine).
* ``small_pieces``: one debris rule, used wherever a label is cleaned (the automatic
  engines' output, the weight-free engine's separation, the click engine's result): a
  vertebra is one connected bone, so a piece much smaller than the label's largest piece
  is debris. The callers differ only in what they spare (a piece holding a positive click,
  a piece on the image's edge).
"""
from __future__ import annotations

import numpy as np


def nonzero_bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) index corners (hi exclusive, in the array's own axis order) of the non-zero
    voxels of ``mask``, or None if there are none."""
    lo, hi = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.asarray(lo), np.asarray(hi)


def small_pieces(mask: np.ndarray, fraction: float, structure: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(pieces, small) of the boolean array ``mask`` (any axis order; the result keeps it).

    ``pieces``: the connected pieces labelled 1..n (0 outside the mask), 6-connected unless
    ``structure`` (scipy.ndimage's) says otherwise. ``small``: per piece label, whether the
    piece has fewer than ``fraction`` times the voxels of the largest one (index 0, the
    background, is False), so ``small[pieces]`` is the debris as a voxel mask."""
    from scipy import ndimage

    pieces, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    sizes[0] = 0
    small = sizes < fraction * sizes.max() if n else np.zeros(1, bool)
    small[0] = False
    return pieces, small
