"""VerSe challenge evaluation: identification rate, localisation distance, Dice, Hausdorff.

Implements the "Evaluation" section of ``../shared/docs/verse-format.md`` (the contract)
the way the public VerSe evaluation code (anjany/verse, ``utils/eval_utilities.py``)
does, but in world millimetres on the masks' own grid instead of after resampling to
1 mm.

Which labels count
------------------
Only VerSe vertebra values (``labels.VERSE_VALUES``: 1-28) are evaluated; subregion
(40-50), disc (100+) and unknown values in either mask are ignored everywhere, including
the foreground Dice.

"Ground-truth vertebrae" are defined per metric, as in the challenge, where the
identification rate came from the centroid files and Dice from the masks:

* **id.rate**: the GT vertebrae are the labels that have a (finite) GT centroid.
  ``id_rate = n_identified / n_gt`` with ``n_gt`` = number of GT centroids.
* **Dice / Hausdorff**: the GT vertebrae are the labels with voxels in the GT mask.
* When both centroid dicts are computed from the masks (the default) the two sets are
  the same. When explicit centroids disagree with the mask, a label with a GT centroid
  but no GT voxels counts for id.rate only (its Dice is None), and a label with GT voxels
  but no GT centroid counts for Dice/HD only (``identified`` is False and it is not in
  the id.rate denominator).

A label is *in the prediction* when the predicted mask has voxels of it or the
predicted centroids contain it. ``missing_labels``: labels in the GT (mask or centroids)
that are not in the prediction at all. ``extra_labels``: labels in the prediction that
are not in the GT at all; they are reported but do not lower id.rate (or Dice).

Definitions
-----------
* **identified** (:func:`identification`): v has a centroid in both GT and prediction,
  ``|pred[v] - gt[v]| <= threshold_mm`` (20 mm; a distance of exactly 20 mm IS
  identified, as in the VerSe code, which rejects only ``d > 20``), and no GT centroid of
  another label present in both is strictly closer to ``pred[v]`` than ``gt[v]`` (an
  exact tie favours v; ties have measure zero on real data).
* **d_mean**: mean world distance between predicted and GT centroids of the same label,
  over labels with a centroid in both (None if there are none).
* **Dice** per GT-mask vertebra ``2|G∩P| / (|G|+|P|)``; 0 when the prediction has no
  voxel of it. ``dice_mean`` averages over the GT-mask vertebrae (zeros included).
  ``dice_foreground``: Dice of (GT voxel is any vertebra) vs (pred voxel is any
  vertebra), labels ignored.
* **Hausdorff (hd_mm) and HD95 (hd95_mm)** per vertebra present in both masks. Surfaces
  are the mask voxels with at least one 6-neighbour outside the mask (the edge
  definition of MONAI and medpy). Each surface voxel's centre is mapped to world mm with
  the affine and nearest-surface distances are found with a k-d tree, so the distances
  are exact world distances for ANY affine (oblique and even sheared grids), not only
  for axis-aligned ones. ``hd`` = max of the two directed maxima. ``hd95`` = the 95th
  percentile (numpy's default linear interpolation) of the POOLED set of both directed
  distance sets (GT surface -> pred surface and pred surface -> GT surface), the medpy
  convention. A vertebra missing from either mask has ``hd`` None and is left out of
  ``hd_mean`` / ``hd95_mean`` (it scores Dice 0, and is listed in ``missing_labels``
  unless the prediction still has a centroid for it).

All per-vertebra work happens in the bounding box of the label in both masks (plus a
one-voxel margin) so a 512x512x133 case evaluates in seconds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from .. import labels as lab
from ..errors import SpineLabelInputError
from ..image import Image
from .centroids_json import centroids_to_world

#: Identification threshold of the VerSe challenge, world mm.
ID_THRESHOLD_MM = 20.0

#: Case-level fields aggregated by :func:`summarize`.
SUMMARY_FIELDS = ("id_rate", "d_mean", "dice_mean", "dice_foreground", "hd_mean", "hd95_mean")


@dataclass
class VertebraMetrics:
    """Metrics of one vertebra label in one case (distances in world mm; None = undefined)."""

    label: int
    name: str
    in_gt: bool
    in_pred: bool
    identified: bool | None  # None: no ground-truth centroid, so not scored by id.rate
    distance_mm: float | None
    dice: float | None
    hd_mm: float | None
    hd95_mm: float | None


@dataclass
class CaseMetrics:
    """Metrics of one scan (see the module docstring for every definition)."""

    subject: str
    id_rate: float | None
    d_mean: float | None
    dice_mean: float | None
    dice_foreground: float | None
    hd_mean: float | None
    hd95_mean: float | None
    n_gt: int
    n_identified: int
    extra_labels: list[int] = field(default_factory=list)
    missing_labels: list[int] = field(default_factory=list)
    per_vertebra: list[VertebraMetrics] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN/inf -> None); ``per_vertebra`` is keyed by vertebra name.

        Keys: subject, id_rate, d_mean, dice_mean, dice_foreground, hd_mean, hd95_mean,
        n_gt, n_identified, extra_labels, missing_labels, per_vertebra
        ({name: {label, in_gt, in_pred, identified, distance_mm, dice, hd_mm, hd95_mm}}).
        """
        out = {
            "subject": self.subject,
            **{name: _json_number(getattr(self, name)) for name in SUMMARY_FIELDS},
            "n_gt": int(self.n_gt),
            "n_identified": int(self.n_identified),
            "extra_labels": [int(v) for v in self.extra_labels],
            "missing_labels": [int(v) for v in self.missing_labels],
            "per_vertebra": {},
        }
        for vm in self.per_vertebra:
            row = asdict(vm)
            row.pop("name")
            out["per_vertebra"][vm.name] = {
                k: (_json_number(v) if isinstance(v, float) else v) for k, v in row.items()
            }
        return out


def _json_number(value) -> float | None:
    """float for finite numbers, None for None/NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------------
# identification
# ----------------------------------------------------------------------------------
def identification(
    gt_centroids_world: dict[int, np.ndarray],
    pred_centroids_world: dict[int, np.ndarray],
    threshold_mm: float = ID_THRESHOLD_MM,
) -> dict[int, bool]:
    """For every GT label: is it identified? Centroids are RAS world mm, shape (3,).

    v is identified iff v has a predicted centroid, it lies within ``threshold_mm``
    (inclusive) of the GT centroid of v, and no GT centroid of another label present in
    both dicts is strictly closer to it (see the module docstring).
    """
    gt = {int(v): np.asarray(p, dtype=np.float64).reshape(3) for v, p in gt_centroids_world.items()}
    pred = {int(v): np.asarray(p, dtype=np.float64).reshape(3) for v, p in pred_centroids_world.items()}
    common = sorted(v for v in gt if v in pred)
    result = {v: False for v in gt}
    if not common:
        return result
    gt_common = np.stack([gt[v] for v in common])  # (N, 3) GT positions of labels in both
    for v in common:
        dists = np.linalg.norm(gt_common - pred[v], axis=1)
        own = dists[common.index(v)]
        # The VerSe code compares with "> 20" (so exactly 20 mm is a hit).
        result[v] = bool(own <= threshold_mm and own <= dists.min())
    return result


# ----------------------------------------------------------------------------------
# evaluation of one case
# ----------------------------------------------------------------------------------
def evaluate_case(
    gt_mask: Image,
    pred_mask: Image,
    gt_centroids_ijk: dict | None = None,
    pred_centroids_ijk: dict | None = None,
    subject: str = "",
) -> CaseMetrics:
    """Evaluate a predicted vertebra mask (and centroids) against the ground truth.

    ``pred_mask`` must lie on ``gt_mask``'s grid (else ``SpineLabelInputError`` naming the
    prediction). Centroids are voxel indices (i, j, k) on that grid; when a dict is None
    it is computed from its mask with ``verse.body.body_centroids`` (vertebral body
    centres, as in VerSe files). Non-vertebra labels and non-finite centroids are ignored.
    """
    gt_mask.require_same_grid(pred_mask, "prediction mask")
    gt_arr = _vertebra_array(gt_mask, "ground-truth mask")
    pred_arr = _vertebra_array(pred_mask, "prediction mask")

    if gt_centroids_ijk is None or pred_centroids_ijk is None:
        from .body import body_centroids  # written alongside; imported lazily

        if gt_centroids_ijk is None:
            gt_centroids_ijk = body_centroids(gt_mask)
        if pred_centroids_ijk is None:
            pred_centroids_ijk = body_centroids(pred_mask)
    gt_world = centroids_to_world(gt_mask, gt_centroids_ijk, "ground-truth centroids")
    pred_world = centroids_to_world(pred_mask, pred_centroids_ijk, "predicted centroids")

    gt_boxes = _label_boxes(gt_arr)
    pred_boxes = _label_boxes(pred_arr)
    in_gt = set(gt_boxes) | set(gt_world)
    in_pred = set(pred_boxes) | set(pred_world)

    identified = identification(gt_world, pred_world)
    rows = []
    for v in lab.sort_anatomical(in_gt | in_pred):
        distance = (
            float(np.linalg.norm(pred_world[v] - gt_world[v])) if v in gt_world and v in pred_world else None
        )
        dice = hd = hd95 = None
        if v in gt_boxes:
            dice, hd, hd95 = _label_overlap(gt_arr, pred_arr, v, gt_boxes[v], pred_boxes.get(v), gt_mask)
        rows.append(
            VertebraMetrics(
                label=v,
                name=lab.name_of(v),
                in_gt=v in in_gt,
                in_pred=v in in_pred,
                identified=identified[v] if v in gt_world else None,
                distance_mm=distance,
                dice=dice,
                hd_mm=hd,
                hd95_mm=hd95,
            )
        )

    n_gt = len(gt_world)
    n_identified = sum(identified.values())
    return CaseMetrics(
        subject=subject,
        id_rate=n_identified / n_gt if n_gt else None,
        d_mean=_mean(r.distance_mm for r in rows),
        dice_mean=_mean(r.dice for r in rows),
        dice_foreground=_dice(gt_arr > 0, pred_arr > 0),
        hd_mean=_mean(r.hd_mm for r in rows),
        hd95_mean=_mean(r.hd95_mm for r in rows),
        n_gt=n_gt,
        n_identified=int(n_identified),
        extra_labels=lab.sort_anatomical(in_pred - in_gt),
        missing_labels=lab.sort_anatomical(in_gt - in_pred),
        per_vertebra=rows,
    )


def _vertebra_array(mask: Image, what: str) -> np.ndarray:
    """The mask's values with every non-vertebra value set to 0 (int array on the same grid)."""
    arr = mask.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
            raise SpineLabelInputError(mask.source, f"{what} has non-numeric or non-finite values ({arr.dtype})")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise SpineLabelInputError(mask.source, f"{what} holds non-integer values; expected a label map")
        arr = rounded
    # Look-up table: vertebra values keep their value, every other value -> 0.
    lut = np.zeros(256, dtype=np.uint8)
    lut[sorted(lab.VERSE_VALUES)] = sorted(lab.VERSE_VALUES)
    if arr.dtype == np.uint8:  # the usual VerSe mask type: one table look-up, no copies
        return lut[arr]
    arr = arr.astype(np.int64, copy=False)
    top = max(lab.VERSE_VALUES)
    in_range = (arr >= 0) & (arr <= top)
    return np.where(in_range, lut[np.where(in_range, arr, 0)], 0).astype(np.uint8)


def _label_boxes(arr: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box (tuple of slices) of every nonzero value of a vertebra array."""
    from scipy import ndimage

    return {v + 1: box for v, box in enumerate(ndimage.find_objects(arr)) if box is not None}


def _union_box(a, b, shape, margin: int = 1) -> tuple[slice, slice, slice]:
    """Smallest box holding both boxes (b may be None), grown by ``margin`` and clipped."""
    boxes = [x for x in (a, b) if x is not None]
    return tuple(
        slice(max(0, min(bx[d].start for bx in boxes) - margin), min(shape[d], max(bx[d].stop for bx in boxes) + margin))
        for d in range(3)
    )  # type: ignore[return-value]


def _label_overlap(gt_arr, pred_arr, value, gt_box, pred_box, grid: Image):
    """Dice, Hausdorff and HD95 (world mm) of one label, computed in its bounding box."""
    box = _union_box(gt_box, pred_box, gt_arr.shape)
    g = gt_arr[box] == value
    p = pred_arr[box] == value
    dice = _dice(g, p)
    if not p.any():
        return 0.0, None, None
    offset = np.array([s.start for s in box], dtype=np.float64)
    hd, hd95 = _hausdorff(g, p, offset, grid)
    return dice, hd, hd95


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface_world(region: np.ndarray, offset_ijk: np.ndarray, grid: Image) -> np.ndarray:
    """RAS mm of the surface voxels (voxels with a 6-neighbour outside) of a boolean crop."""
    from scipy import ndimage

    # border_value=0: a voxel on the crop border counts as surface (the crop has a margin,
    # so this only matters for masks touching the image border, which are surface there).
    interior = ndimage.binary_erosion(region, border_value=0)
    ijk = np.argwhere(region & ~interior).astype(np.float64) + offset_ijk
    return grid.index_to_world(ijk)


def _hausdorff(g: np.ndarray, p: np.ndarray, offset_ijk: np.ndarray, grid: Image) -> tuple[float, float]:
    """(HD, pooled HD95) in world mm between two non-empty boolean crops."""
    from scipy.spatial import cKDTree

    sg = _surface_world(g, offset_ijk, grid)
    sp = _surface_world(p, offset_ijk, grid)
    d_g_to_p = cKDTree(sp).query(sg, k=1)[0]
    d_p_to_g = cKDTree(sg).query(sp, k=1)[0]
    pooled = np.concatenate([d_g_to_p, d_p_to_g])
    return float(pooled.max()), float(np.percentile(pooled, 95))


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


# ----------------------------------------------------------------------------------
# several cases
# ----------------------------------------------------------------------------------
def summarize(cases: list[CaseMetrics]) -> dict:
    """Mean and median of every case-level score over cases (None values ignored).

    Returns ``{"mean": {field: value|None}, "median": {...}, "n_cases": n}`` for the
    fields ``id_rate, d_mean, dice_mean, dice_foreground, hd_mean, hd95_mean``; a field
    that is None in every case is None.
    """
    mean, median = {}, {}
    for name in SUMMARY_FIELDS:
        vals = [float(getattr(c, name)) for c in cases if _json_number(getattr(c, name)) is not None]
        mean[name] = float(np.mean(vals)) if vals else None
        median[name] = float(np.median(vals)) if vals else None
    return {"mean": mean, "median": median, "n_cases": len(cases)}


# ----------------------------------------------------------------------------------
# plain-text tables
# ----------------------------------------------------------------------------------
def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_case_table(case: CaseMetrics) -> str:
    """Per-vertebra table of one case, followed by its case-level scores."""
    header = ["vertebra", "in GT", "in pred", "identified", "dist mm", "Dice", "HD mm", "HD95 mm"]
    rows = [
        [v.name, _fmt(v.in_gt), _fmt(v.in_pred), _fmt(v.identified), _fmt(v.distance_mm, 1),
         _fmt(v.dice), _fmt(v.hd_mm, 1), _fmt(v.hd95_mm, 1)]
        for v in case.per_vertebra
    ]

    def names(values: list[int]) -> str:
        return ", ".join(lab.name_of(v) for v in values) or "none"

    summary = (
        f"{case.subject or 'case'}: id.rate {_fmt(case.id_rate)} ({case.n_identified}/{case.n_gt}), "
        f"d_mean {_fmt(case.d_mean, 1)} mm, Dice {_fmt(case.dice_mean)} "
        f"(foreground {_fmt(case.dice_foreground)}), HD {_fmt(case.hd_mean, 1)} mm, "
        f"HD95 {_fmt(case.hd95_mean, 1)} mm\n"
        f"missing: {names(case.missing_labels)}; extra: {names(case.extra_labels)}"
    )
    return _table(header, rows) + "\n" + summary


def format_summary_table(cases: list[CaseMetrics], summary: dict) -> str:
    """One row per scan, then the mean and median rows of ``summary`` (from :func:`summarize`)."""
    header = ["scan", "id.rate", "d_mean mm", "Dice", "Dice fg", "HD mm", "HD95 mm", "n_gt", "n_id"]
    digits = {"d_mean": 1, "hd_mean": 1, "hd95_mean": 1}
    rows = [
        [c.subject or f"case {n + 1}", *(_fmt(getattr(c, f), digits.get(f, 3)) for f in SUMMARY_FIELDS),
         str(c.n_gt), str(c.n_identified)]
        for n, c in enumerate(cases)
    ]
    for stat in ("mean", "median"):
        rows.append([stat, *(_fmt(summary[stat].get(f), digits.get(f, 3)) for f in SUMMARY_FIELDS), "", ""])
    return _table(header, rows) + f"\n{summary['n_cases']} scan(s)"
