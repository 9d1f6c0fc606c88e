"""The border between consecutive vertebral bodies re-placed at their disc on the input
grid (auto/classical/disc_planes.py): a misplaced border goes back to the disc, on a
thick-slice phantom and on real CT (lidc0001's reference), a right one stays, and a slab of
marrow left empty inside a body is filled without touching the disc or the bone surface."""
from __future__ import annotations

import numpy as np
import pytest

from SpineLabelLib.auto.classical.disc_planes import consecutive_pairs, place_disc_borders
from SpineLabelLib.image import load_image
from SpineLabelLib.labels import totalseg_to_verse, value_of
from SpineLabelLib.verse.body import body_masks

from conftest import DATA


def _names(pairs):
    from SpineLabelLib.labels import name_of

    return [(name_of(a), name_of(b)) for a, b in pairs]


def test_consecutive_pairs_follow_anatomy():
    v = value_of
    assert _names(consecutive_pairs([v(n) for n in ("T11", "T12", "L1", "L2")])) == [("T11", "T12"), ("T12", "L1"), ("L1", "L2")]
    assert _names(consecutive_pairs([v(n) for n in ("T12", "T13", "L1")])) == [("T12", "T13"), ("T13", "L1")]
    # the sacrum and C1 (no body, no disc) are left out; a missing level leaves no pair
    assert _names(consecutive_pairs([v(n) for n in ("L4", "L5", "L6", "sacrum")])) == [("L4", "L5"), ("L5", "L6")]
    assert _names(consecutive_pairs([v(n) for n in ("C1", "C2", "C3")])) == [("C2", "C3")]
    assert _names(consecutive_pairs([v(n) for n in ("T10", "T12", "L1")])) == [("T12", "L1")]


def _shift_border_down(mask: np.ndarray, bodies: np.ndarray, upper: int, lower: int, slices: int) -> np.ndarray:
    """The top ``slices`` axial slices (k: +S on these grids' last axis) of ``lower``'s
    body given to ``upper``, as when a disc is placed too low."""
    ks = np.nonzero((bodies == lower).any(axis=(0, 1)))[0]
    top = ks.max() if ks[-1] - ks[0] else ks[0]
    return (bodies == lower) & (np.arange(mask.shape[2]) > top - slices)[None, None, :]


def _wrong_voxels(mask, ref, labels):
    return int(sum(((mask == v) != (ref == v)).sum() for v in labels))


@pytest.fixture(scope="module")
def chest_phantom():
    from SpineLabelLib.synthetic import make_phantom, phantom_suite

    return make_phantom(next(s for s in phantom_suite() if s.name == "chest-0.7x2.5-LAS"))


@pytest.mark.parametrize("analysis_mm", [0.7, 1.5], ids=["every voxel", "every 2nd voxel in-plane"])
def test_misplaced_border_goes_back_to_the_disc_on_thick_slices(chest_phantom, monkeypatch, analysis_mm):
    """Also with the analysis on every second voxel in-plane (as on a huge, very fine
    input): the relabelling still reaches every voxel."""
    from SpineLabelLib.auto.classical import disc_planes

    monkeypatch.setattr(disc_planes, "ANALYSIS_MM", analysis_mm)
    ph = chest_phantom
    ref = ph.mask.array
    # the LAS grid's k axis runs +S: the "top" of a body is its highest k
    assert ph.ct.affine[2, 2] > 0
    bodies = body_masks(ph.mask).array
    a, b = value_of("T6"), value_of("T7")
    moved = _shift_border_down(ref, bodies, a, b, slices=2)  # 5 mm
    assert moved.sum() > 500
    bad = ref.copy()
    bad[moved] = a
    before = _wrong_voxels(bad, ref, (a, b))
    placed = place_disc_borders(bad, ph.ct)
    assert (a, b) in [(p.cranial, p.caudal) for p in placed]
    after = _wrong_voxels(bad, ref, (a, b))
    assert after < 0.2 * before, (before, after)
    # only the bodies move: the pair's posterior elements keep their labels
    outside = np.isin(ref, (a, b)) & ~np.isin(bodies, (a, b))
    assert np.array_equal(bad[outside & ~moved], ref[outside & ~moved])


def test_right_borders_stay(chest_phantom):
    ph = chest_phantom
    mask = ph.mask.array.copy()
    place_disc_borders(mask, ph.ct)
    changed = (mask != ph.mask.array).sum()
    assert changed < 0.01 * (ph.mask.array > 0).sum(), changed


def _interior(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose six face neighbours are all in it."""
    from scipy import ndimage

    return ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))


def test_gap_inside_a_body_is_filled_and_nothing_else(chest_phantom):
    """A slab of a body's marrow left unlabelled 5 mm from its disc (as a working-grid disc
    cut placed inside the body leaves it) gets the body's label back; the disc, the soft
    tissue beside the bodies and the bone surface stay as they were."""
    ph = chest_phantom
    ref = ph.mask.array
    bodies = body_masks(ph.mask).array
    a, b = value_of("T6"), value_of("T7")
    ks = np.nonzero((bodies == b).any(axis=(0, 1)))[0]
    slab = np.zeros(ref.shape, bool)
    slab[:, :, ks.max() - 3:ks.max() - 1] = True  # two 2.5 mm slices, 2.5-7.5 mm below T7's top
    gap = slab & (bodies == b)
    assert gap.sum() > 500
    bad = ref.copy()
    bad[gap] = 0
    placed = place_disc_borders(bad, ph.ct)
    assert (a, b) in [(p.cranial, p.caudal) for p in placed]
    inner = gap & _interior(bodies == b)
    assert (bad[inner] == b).mean() > 0.9, (bad[inner] == b).mean()
    added = (bad != 0) & (ref == 0)
    assert added.sum() < 0.01 * gap.sum(), added.sum()
    # the gap's rim (touching the soft tissue around the body) is refine_boundary's: not filled
    rim = gap & ~_interior(ref == b)
    assert (bad[rim] == 0).mean() > 0.5


def test_real_ct_border_two_slices_low_goes_back():
    """lidc0001 (0.7 x 0.7 x 2.5 mm): its discs are one bright band of two endplates, not
    a dark gap. The reference's T8/T9 border moved two slices (5 mm) down, as the working
    grid had placed it (6 mm), and its disc filled, goes back to within a slice of the
    reference's disc, and most of the disc is left unlabelled again."""
    ct = load_image(DATA / "lidc0001_chest" / "ct.nii.gz")
    ref_img = ct.with_array(totalseg_to_verse(load_image(DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz").array))
    ref = ref_img.array
    a, b = value_of("T8"), value_of("T9")
    box = _box(ref, (a, b))
    sub_ct, sub_ref = ct.crop(box), ref_img.crop(box)
    ref_sub = np.where(np.isin(sub_ref.array, (a, b)), sub_ref.array, 0).astype(np.uint8)
    bodies = body_masks(sub_ref.with_array(ref_sub)).array
    moved = _shift_border_down(ref_sub, bodies, a, b, slices=2)
    bad = ref_sub.copy()
    bad[moved] = a
    # the disc filled as the engine fills it: the slices between the two bodies, per column
    k = np.arange(ref_sub.shape[2])
    top_b = np.where(bodies == b, k, -1).max(axis=2)[..., None]
    bottom_a = np.where(bodies == a, k, 999).min(axis=2)[..., None]
    disc = (k > top_b) & (k < bottom_a) & (bottom_a - top_b <= 4) & (ref_sub == 0)
    assert disc.sum() > 300
    bad[disc] = a
    before = _wrong_voxels(bad, ref_sub, (a, b))
    place_disc_borders(bad, sub_ct)
    after = _wrong_voxels(bad, ref_sub, (a, b))
    assert after < 0.5 * before, (before, after)
    assert (bad[disc] > 0).mean() < 0.5
    # the border in the body columns: within one slice of the reference's gap
    both_ref = (bodies == a).any(axis=2) & (bodies == b).any(axis=2)
    lowest_a = np.where(bad == a, k, 999).min(axis=2)
    lowest_a_ref = np.where(ref_sub == a, k, 999).min(axis=2)
    cols = both_ref & (lowest_a < 999) & (lowest_a_ref < 999)
    assert np.median(np.abs(lowest_a[cols] - lowest_a_ref[cols])) <= 1


def _box(arr, values):
    from scipy import ndimage

    boxes = ndimage.find_objects(np.where(np.isin(arr, values), 1, 0).astype(np.uint8))
    (box,) = boxes
    # a margin of 10 voxels in-plane and 3 slices, clipped to the grid
    return tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, (10, 10, 3), arr.shape))


def test_analysis_grid_keeps_the_world():
    """The strided analysis grid of a huge, fine input: no finer than ANALYSIS_MM, and its
    voxel (i, j, k) is the full grid's voxel (i, j, k) * strides + the box's start."""
    from SpineLabelLib.auto.classical.disc_planes import ANALYSIS_MM, _analysis_grid
    from SpineLabelLib.image import Image

    affine = np.array([[-0.352, 0, 0, 10.0], [0, 0.352, 0, -20.0], [0, 0, 0.166, 30.0], [0, 0, 0, 1]])
    ct = Image(np.zeros((40, 40, 60), np.int16), affine, "fine")
    box = (slice(3, 30), slice(5, 25), slice(7, 50))
    strided, an_affine, strides = _analysis_grid(ct, box)
    assert strides.tolist() == [1, 1, 4]  # 0.352 mm: two would be 0.704 mm
    assert np.all(np.asarray(ct.spacing) * strides <= ANALYSIS_MM + 1e-9)
    ijk = np.array([4, 3, 5])
    full = ijk * strides + np.array([3, 5, 7])
    assert np.allclose(an_affine @ np.r_[ijk, 1], affine @ np.r_[full, 1])
    assert ct.array[strided].shape == (27, 20, 11)
