"""Mask helpers: extents, and the one debris rule (pieces much smaller than a label's largest)."""
from __future__ import annotations

import numpy as np

from SpineLabelLib.masks import nonzero_bbox, small_pieces


def test_small_pieces_marks_only_pieces_below_the_fraction_of_the_largest():
    mask = np.zeros((30, 10, 10), bool)
    mask[0:20] = True  # 2000 voxels: the largest
    mask[22:25] = True  # 300 voxels: 15 % of the largest, kept
    mask[27, 0, 0] = True  # 1 voxel: debris
    pieces, small = small_pieces(mask, 0.15)
    assert pieces.max() == 3 and not small[0]
    assert small[pieces].sum() == 1 and small[pieces][27, 0, 0]


def test_small_pieces_connectivity_and_empty_masks():
    mask = np.zeros((5, 5, 5), bool)
    mask[:3, :3, :3] = True
    mask[3, 3, 3] = True  # touches the block only at a corner
    _p6, small6 = small_pieces(mask, 0.15)
    _p26, small26 = small_pieces(mask, 0.15, structure=np.ones((3, 3, 3), bool))
    assert small6.sum() == 1 and small26.sum() == 0
    pieces, small = small_pieces(np.zeros((4, 4, 4), bool), 0.15)
    assert not pieces.any() and not small[pieces].any()


def test_nonzero_bbox_is_the_extent_of_the_nonzero_voxels():
    a = np.zeros((8, 9, 10), np.uint8)
    assert nonzero_bbox(a) is None
    a[2, 3, 4] = 7
    a[5, 1, 8] = 1
    lo, hi = nonzero_bbox(a)
    assert lo.tolist() == [2, 1, 4] and hi.tolist() == [6, 4, 9]
