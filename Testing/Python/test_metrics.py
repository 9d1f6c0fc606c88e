"""VerSe evaluation (SpineLabelLib.verse.metrics) against hand-computed values.

Synthetic cases use boxes on a small grid with anisotropic spacing (2, 1, 1.5) mm and an
oblique affine (rotated about two axes, shifted origin): world distances must come out in
mm whatever the grid orientation. Expected numbers are worked out in the comments.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from SpineLabelLib import labels as lab
from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image, load_image
from SpineLabelLib.verse import metrics as M

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SPACING = np.array([2.0, 1.0, 1.5])
SHAPE = (10, 12, 20)


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    z, x = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


AFFINE = np.eye(4)
AFFINE[:3, :3] = _rotation(30, 20) @ np.diag(SPACING)
AFFINE[:3, 3] = [-40.0, 12.0, 7.0]


def _mask(*boxes, source="mask.nii.gz", dtype=np.uint8) -> Image:
    """Mask with ``(value, (i0, i1), (j0, j1), (k0, k1))`` boxes (half-open index ranges)."""
    arr = np.zeros(SHAPE, dtype=dtype)
    for value, (i0, i1), (j0, j1), (k0, k1) in boxes:
        arr[i0:i1, j0:j1, k0:k1] = value
    return Image(arr, AFFINE, source)


def _box_centre(box) -> np.ndarray:
    """Centre (voxel i, j, k) of a half-open box."""
    return np.array([(lo + hi - 1) / 2.0 for lo, hi in box[1:]])


def _centres(*boxes) -> dict[int, np.ndarray]:
    return {box[0]: _box_centre(box) for box in boxes}


L1_BOX = (20, (2, 6), (2, 6), (2, 6))  # 4x4x4 voxels
L2_BOX = (21, (2, 6), (2, 6), (10, 14))  # same box 8 voxels (12 mm) further along k


def _row(case: M.CaseMetrics, value: int) -> M.VertebraMetrics:
    return next(r for r in case.per_vertebra if r.label == value)


def test_identical_masks_score_perfectly():
    gt = _mask(L1_BOX, L2_BOX)
    pred = _mask(L1_BOX, L2_BOX, source="pred.nii.gz")
    c = _centres(L1_BOX, L2_BOX)
    case = M.evaluate_case(gt, pred, c, c, subject="same")
    assert case.id_rate == 1.0 and case.n_gt == 2 and case.n_identified == 2
    assert case.d_mean == 0.0
    assert case.dice_mean == 1.0 and case.dice_foreground == 1.0
    assert case.hd_mean == 0.0 and case.hd95_mean == 0.0
    assert case.extra_labels == [] and case.missing_labels == []
    assert [r.name for r in case.per_vertebra] == ["L1", "L2"]


def test_box_shifted_one_voxel_along_i():
    # G = i 2..5, P = i 3..6 (2 mm voxels): overlap 3*4*4=48 of 64+64 -> Dice 96/128 = 0.75.
    # G's i=2 face is 2 mm from P's i=3 face; G's i=5 face-interior voxels are inside P
    # but 1 mm (one j voxel) from P's j faces; all other surface voxels coincide.
    # Pooled distances: 32 x 2 mm, 8 x 1 mm, 72 x 0 -> HD 2, 95th percentile 2.
    shifted = (20, (3, 7), (2, 6), (2, 6))
    case = M.evaluate_case(_mask(L1_BOX), _mask(shifted), _centres(L1_BOX), _centres(shifted))
    row = _row(case, 20)
    assert row.dice == pytest.approx(0.75)
    assert row.hd_mm == pytest.approx(2.0)
    assert row.hd95_mm == pytest.approx(2.0)
    assert row.distance_mm == pytest.approx(2.0)
    assert row.identified and case.id_rate == 1.0


def test_box_shifted_two_voxels_along_anisotropic_k():
    # Shift by 2 voxels of 1.5 mm: overlap 4*4*2 = 32 -> Dice 64/128 = 0.5; the farthest
    # surface points are the k faces, 2 * 1.5 = 3 mm from the other box's k face.
    shifted = (20, (2, 6), (2, 6), (4, 8))
    case = M.evaluate_case(_mask(L1_BOX), _mask(shifted), _centres(L1_BOX), _centres(shifted))
    row = _row(case, 20)
    assert row.dice == pytest.approx(0.5)
    assert row.hd_mm == pytest.approx(3.0)
    assert row.distance_mm == pytest.approx(3.0)
    assert case.dice_foreground == pytest.approx(0.5)


def test_protrusion_separates_hd_from_pooled_hd95():
    # P = G plus a 3-voxel spike out of the i=5 face at (6..8, 3, 3): spike voxels are
    # 2, 4, 6 mm from G's surface; G's (5,3,3) becomes interior to P and lies 1 mm from
    # P's surface. Pooled: 56 G-surface + 58 P-surface distances = 110 zeros, 1, 2, 4, 6.
    # HD = 6 mm; 95th percentile (position 0.95*113 = 107.35) = 0. Dice = 128/131.
    gt = _mask(L1_BOX)
    arr = gt.array.copy()
    arr[6:9, 3, 3] = 20
    case = M.evaluate_case(gt, gt.with_array(arr), _centres(L1_BOX), _centres(L1_BOX))
    row = _row(case, 20)
    assert row.hd_mm == pytest.approx(6.0)
    assert row.hd95_mm == pytest.approx(0.0)
    assert row.dice == pytest.approx(128 / 131)


def test_absent_label_scores_zero_dice_and_is_missing():
    gt = _mask(L1_BOX, L2_BOX)
    pred = _mask(L1_BOX)
    case = M.evaluate_case(gt, pred, _centres(L1_BOX, L2_BOX), _centres(L1_BOX))
    assert case.missing_labels == [21] and case.extra_labels == []
    assert case.n_gt == 2 and case.n_identified == 1 and case.id_rate == 0.5
    row = _row(case, 21)
    assert row.in_gt and not row.in_pred and not row.identified
    assert row.dice == 0.0 and row.hd_mm is None and row.hd95_mm is None and row.distance_mm is None
    assert case.dice_mean == pytest.approx(0.5)  # (1 + 0) / 2: the zero counts
    assert case.hd_mean == 0.0  # only L1 has a Hausdorff distance
    # foreground: 64 of 128 GT voxels predicted -> 2*64 / (128 + 64)
    assert case.dice_foreground == pytest.approx(128 / 192)


def test_swapped_labels_are_not_identified():
    gt = _mask(L1_BOX, L2_BOX)
    swapped = _mask((21,) + L1_BOX[1:], (20,) + L2_BOX[1:])
    c = _centres(L1_BOX, L2_BOX)
    case = M.evaluate_case(gt, swapped, c, {20: c[21], 21: c[20]})
    assert case.id_rate == 0.0 and case.n_identified == 0
    assert [r.dice for r in case.per_vertebra] == [0.0, 0.0]
    assert case.dice_mean == 0.0 and case.dice_foreground == 1.0
    assert case.d_mean == pytest.approx(12.0)  # 8 voxels of 1.5 mm apart


def test_extra_predicted_label_is_listed_not_penalised():
    extra = (22, (2, 6), (2, 6), (15, 19))
    gt = _mask(L1_BOX, L2_BOX)
    pred = _mask(L1_BOX, L2_BOX, extra)
    c = _centres(L1_BOX, L2_BOX)
    case = M.evaluate_case(gt, pred, c, {**c, 22: _box_centre(extra)})
    assert case.extra_labels == [22] and case.missing_labels == []
    assert case.id_rate == 1.0 and case.n_gt == 2
    assert case.dice_mean == 1.0  # the extra label is not a GT vertebra
    row = _row(case, 22)
    assert not row.in_gt and row.in_pred and row.dice is None and row.identified is None
    assert case.dice_foreground == pytest.approx(256 / 320)


def test_vertebra_without_ground_truth_centroid_is_not_scored_by_id_rate():
    """A vertebra cut by the field of view: in the GT mask, but its body centre is outside."""
    gt = _mask(L1_BOX, L2_BOX)
    c = _centres(L1_BOX, L2_BOX)
    only_l1 = {20: c[20]}
    case = M.evaluate_case(gt, gt, only_l1, c)
    assert case.n_gt == 1 and case.id_rate == 1.0
    row = _row(case, 21)
    assert row.in_gt and row.identified is None and row.dice == 1.0
    assert M.format_case_table(case).splitlines()[3].split()[:4] == ["L2", "yes", "yes", "-"]  # no verdict


def test_non_vertebra_values_are_ignored():
    gt = _mask(L1_BOX, (41, (7, 9), (7, 9), (7, 9)), (100, (0, 1), (0, 1), (0, 1)), dtype=np.int16)
    pred = _mask(L1_BOX, (45, (7, 9), (0, 2), (15, 19)), dtype=np.int16)
    c = _centres(L1_BOX)
    case = M.evaluate_case(gt, pred, c, {**c, 41: np.array([8.0, 8, 8])})
    assert [r.label for r in case.per_vertebra] == [20]
    assert case.dice_foreground == 1.0 and case.extra_labels == [] and case.missing_labels == []


def test_neighbour_gt_centroid_closer_blocks_identification():
    gt = {20: np.array([0.0, 0.0, 0.0]), 21: np.array([0.0, 0.0, -30.0])}
    # pred L1 is 16 mm from GT L1 (within 20 mm) but 14 mm from GT L2.
    pred = {20: np.array([0.0, 0.0, -16.0]), 21: np.array([0.0, 0.0, -30.0])}
    assert M.identification(gt, pred) == {20: False, 21: True}
    # Without L2 in the prediction, GT L2 is not a competitor (only labels in both count).
    assert M.identification(gt, {20: pred[20]}) == {20: True, 21: False}


def test_threshold_is_inclusive_at_exactly_20_mm():
    gt = {20: np.array([0.0, 0.0, 0.0]), 21: np.array([0.0, 0.0, -60.0])}
    at = {20: np.array([12.0, 16.0, 0.0])}  # exactly 20 mm (3-4-5 triangle)
    beyond = {20: np.array([12.0, 16.0, 0.001])}
    assert M.identification(gt, at)[20] is True
    assert M.identification(gt, beyond)[20] is False
    assert M.identification(gt, at, threshold_mm=19.9)[20] is False


def test_prediction_on_another_grid_is_rejected():
    gt = _mask(L1_BOX)
    other = Image(gt.array, AFFINE @ np.diag([1, 1, 1.01, 1]), "pred_other_grid.nii.gz")
    with pytest.raises(SpineLabelInputError, match="pred_other_grid"):
        M.evaluate_case(gt, other, _centres(L1_BOX), _centres(L1_BOX))


def test_summary_mean_median_ignore_none():
    def case(subject, id_rate, dice):
        return M.CaseMetrics(subject, id_rate, None, dice, dice, None, None, 4, 0)

    cases = [case("a", 1.0, 0.9), case("b", 0.75, 0.8), case("c", 0.2, None), case("d", None, 0.4)]
    s = M.summarize(cases)
    assert s["n_cases"] == 4
    assert s["mean"]["id_rate"] == pytest.approx((1.0 + 0.75 + 0.2) / 3)
    assert s["median"]["id_rate"] == pytest.approx(0.75)
    assert s["mean"]["dice_mean"] == pytest.approx(0.7) and s["median"]["dice_mean"] == pytest.approx(0.8)
    assert s["mean"]["d_mean"] is None and s["median"]["hd_mean"] is None
    table = M.format_summary_table(cases, s)
    assert "median" in table and "0.650" in table and "4 scan(s)" in table


def test_to_dict_is_strict_json():
    gt = _mask(L1_BOX, L2_BOX)
    case = M.evaluate_case(gt, _mask(L1_BOX), _centres(L1_BOX, L2_BOX), _centres(L1_BOX), subject="s1")
    case.d_mean = float("nan")  # must become null, never NaN
    case.per_vertebra[0].hd_mm = float("inf")
    d = json.loads(json.dumps(case.to_dict(), allow_nan=False))
    assert set(d) >= {"id_rate", "d_mean", "dice_mean", "dice_foreground", "hd_mean", "hd95_mean", "n_gt",
                      "n_identified", "extra_labels", "missing_labels", "per_vertebra"}
    assert d["d_mean"] is None and d["per_vertebra"]["L1"]["hd_mm"] is None
    assert d["per_vertebra"]["L2"] == {"label": 21, "in_gt": True, "in_pred": False, "identified": False,
                                       "distance_mm": None, "dice": 0.0, "hd_mm": None, "hd95_mm": None}
    assert d["missing_labels"] == [21] and d["id_rate"] == 0.5
    text = M.format_case_table(case)
    assert "L2" in text and "missing: L2" in text


def _mass_centres(mask: Image) -> dict[int, np.ndarray]:
    from scipy import ndimage

    values = [int(v) for v in np.unique(mask.array) if v]
    return {v: np.asarray(c) for v, c in zip(values, ndimage.center_of_mass(mask.array > 0, mask.array, values))}


def test_real_totalseg_mask_against_itself_and_swapped():
    ts = load_image(DATA / "totalseg_example" / "seg_totalseg_labels.nii.gz")
    gt = ts.with_array(lab.totalseg_to_verse(ts.array))
    c = _mass_centres(gt)
    same = M.evaluate_case(gt, gt, c, c, subject="totalseg")
    assert same.n_gt == len(c) >= 6
    assert same.id_rate == 1.0 and same.dice_mean == 1.0 and same.hd_mean == 0.0 and same.d_mean == 0.0

    # Swap L2 and L3 (adjacent, ~30 mm apart) in mask and centroids: both fail, rest intact.
    a, b = lab.value_of("L2"), lab.value_of("L3")
    arr = gt.array.copy()
    arr[gt.array == a], arr[gt.array == b] = b, a
    swapped_c = {**c, a: c[b], b: c[a]}
    case = M.evaluate_case(gt, gt.with_array(arr), c, swapped_c, subject="swapped")
    n = len(c)
    assert case.n_identified == n - 2
    assert case.id_rate == pytest.approx((n - 2) / n)
    assert case.dice_mean == pytest.approx((n - 2) / n)
    assert not _row(case, a).identified and not _row(case, b).identified
    assert _row(case, a).hd_mm > 10.0 and case.dice_foreground == 1.0
    assert math.isclose(M.summarize([same, case])["median"]["id_rate"], (1 + (n - 2) / n) / 2)
