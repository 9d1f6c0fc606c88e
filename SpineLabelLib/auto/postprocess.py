"""Post-processing shared by the engines: clean an instance mask, centroids, and
the confidence penalties that any engine's labels deserve (cut by the field of view,
fragmented, implausibly small)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..image import Image
from ..labels import SACRUM, COCCYX, is_vertebra, name_of, sort_anatomical
from ..masks import nonzero_bbox, small_pieces

#: A vertebra smaller than this (ml) is dropped as a fragment.
MIN_VERTEBRA_ML = 0.5


def keep_largest_components(mask: Image, min_fraction: float = 0.15) -> tuple[Image, dict[int, str]]:
    """Per label, drop connected pieces smaller than ``min_fraction`` of its largest piece.

    Returns the cleaned mask (same grid) and value -> remark for labels that lost pieces.
    """
    arr = mask.array.copy()
    remarks: dict[int, str] = {}
    objects = ndimage.find_objects(arr.astype(np.int32))
    for idx, box in enumerate(objects):
        value = idx + 1
        if box is None or not is_vertebra(value):
            continue
        pieces, small = small_pieces(arr[box] == value, min_fraction, structure=np.ones((3, 3, 3), bool))
        if small.any():
            arr[box][small[pieces]] = 0
            remarks[value] = f"{int(small.sum())} separate fragment(s) removed"
    return mask.with_array(arr), remarks


def drop_small(mask: Image, min_ml: float = MIN_VERTEBRA_ML) -> tuple[Image, list[int]]:
    """Remove labels whose volume is below ``min_ml`` millilitres."""
    arr = mask.array.copy()
    voxel_ml = float(np.prod(mask.spacing)) / 1000.0
    counts = np.bincount(arr.ravel().astype(np.int64))
    dropped = [v for v in range(1, counts.size) if counts[v] and is_vertebra(v) and counts[v] * voxel_ml < min_ml]
    if dropped:
        arr[np.isin(arr, dropped)] = 0
    return mask.with_array(arr), dropped


def touches_border(mask: Image) -> set[int]:
    """VerSe values that reach the outermost voxel layer of the grid (cut by the field of view)."""
    arr = mask.array
    faces = [arr[0], arr[-1], arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1]]
    return {int(v) for f in faces for v in np.unique(f) if is_vertebra(int(v))}


def mask_centroids(mask: Image, ct: Image | None = None) -> dict[int, np.ndarray]:
    """Vertebral-body centroids of every vertebra in ``mask`` (verse.body.body_centroids)."""
    from ..verse.body import body_centroids

    values = [int(v) for v in np.unique(mask.array) if is_vertebra(int(v))]
    if not values:
        return {}
    return body_centroids(mask, labels=values, ct=ct)


def border_penalty(mask: Image, confidence: dict[int, float], reasons: dict[int, list[str]], factor: float = 0.6) -> None:
    """Lower the confidence of vertebrae cut by the field of view (their centroid is a guess)."""
    for v in touches_border(mask):
        if v in confidence:
            confidence[v] *= factor
            reasons.setdefault(v, []).append("field of view cut: vertebra touches the image edge")


#: Boundary refinement on the input grid (HU): a label's outermost voxel below REMOVE is
#: soft tissue seen through partial volume, an unlabelled neighbour above ADD is its cortex.
REFINE_REMOVE_BELOW_HU = 150.0
REFINE_ADD_ABOVE_HU = 200.0


def refine_boundary(labels: np.ndarray, hu: np.ndarray, remove_below: float = REFINE_REMOVE_BELOW_HU,
                    add_above: float = REFINE_ADD_ABOVE_HU) -> np.ndarray:
    """One-voxel boundary correction of an instance label map against the CT on the same
    (input) grid, in place and returned: a labelled voxel with an unlabelled face neighbour
    and HU below ``remove_below`` is cleared; an unlabelled voxel with a labelled face
    neighbour and HU above ``add_above`` takes that neighbour's label.

    Why: a label map made on a coarser working grid (nearest neighbour back to the input,
    smoothed HU, partial-volume cortex) puts the bone surface up to a working voxel off:
    too far out at fine in-plane spacing, too far in at coarse spacing. The input's own HU
    at the surface decides it. Only the outermost layer moves, so marrow (below bone HU,
    inside the cortex) stays. Thresholds measured on the two TotalSegmentator-referenced
    CTs (0.7 x 0.7 x 2.5 mm and 3 mm voxels). Array axes are the input's (i, j, k)."""
    extent = nonzero_bbox(labels)
    if extent is None:
        return labels
    box = tuple(slice(max(0, lo - 1), min(n, hi + 1)) for lo, hi, n in zip(*extent, labels.shape))
    lab = labels[box]
    h = np.asarray(hu[box])
    fg = lab > 0
    six = ndimage.generate_binary_structure(3, 1)
    outer_layer = fg & ~ndimage.binary_erosion(fg, structure=six, border_value=1)
    grown = ndimage.grey_dilation(lab, footprint=six)
    add = ~fg & (grown > 0) & (h > add_above)
    lab[outer_layer & (h < remove_below)] = 0
    lab[add] = grown[add]
    return labels


def ordered_names(values) -> str:
    return ", ".join(name_of(v) for v in sort_anatomical(values))


__all__ = ["keep_largest_components", "drop_small", "refine_boundary", "touches_border", "mask_centroids", "border_penalty",
           "SACRUM", "COCCYX"]
