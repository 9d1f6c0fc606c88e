"""The next vertebra's body cut by the field of view to a sliver beyond the end vertebra's
disc (auto/classical/edge_slivers.py): labelled as that vertebra on a thick-slice phantom;
nothing changes where the view ends in the disc, or where the next label is already in
the mask. On real CT (lidc0001's C5 above C6) it is checked through the whole engine
(test_auto_engines.py)."""
from __future__ import annotations

import numpy as np
import pytest

from SpineLabelLib.auto.classical.disc_planes import place_disc_borders
from SpineLabelLib.auto.classical.edge_slivers import label_edge_slivers
from SpineLabelLib.labels import value_of
from SpineLabelLib.verse.body import body_masks


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def chest_phantom():
    from SpineLabelLib.synthetic import make_phantom, phantom_suite

    return make_phantom(next(s for s in phantom_suite() if s.name == "chest-0.7x2.5-LAS"))


def _top_cut(ph, upper: str, lower: str, into_upper: int):
    """The phantom cut at the top ``into_upper`` slices above ``lower``'s body top (k: +S):
    (ct, mask as the engine leaves it (the upper vertebra's body voxels in view given to
    ``lower``, its arch cleared), reference mask), all on the cut grid."""
    u, lo = value_of(upper), value_of(lower)
    bodies = body_masks(ph.mask).array
    top = int(np.nonzero((bodies == lo).any(axis=(0, 1)))[0].max())
    box = (slice(None), slice(None), slice(0, top + 1 + into_upper))
    ref = ph.mask.array[box]
    mask = ref.copy()
    mask[(bodies[box] == u)] = lo
    mask[mask == u] = 0
    return ph.ct.crop(box), mask, ref


def test_phantom_sliver_at_the_top_edge(chest_phantom):
    u, lo = value_of("T4"), value_of("T5")
    ct, mask, ref = _top_cut(chest_phantom, "T4", "T5", into_upper=3)  # disc + T4's endplate region
    sliver = (body_masks(ct.with_array(ref)).array == u)
    assert sliver.sum() > 100, "the cut holds (almost) no T4 body voxels: the phantom's disc is thicker"
    placed = place_disc_borders(mask, ct)
    done = label_edge_slivers(mask, ct, placed)
    assert [(e, s) for e, s, _ in done] == [(lo, u)]
    assert _dice(mask == u, sliver) >= 0.5
    # the end vertebra's own body is not cut into
    own = body_masks(ct.with_array(ref)).array == lo
    assert (mask[own] == lo).mean() > 0.97


def test_view_ending_in_the_disc_changes_nothing(chest_phantom):
    """Cut at the top of T5's body: no bone of T4 in view, nothing to label."""
    ct, mask, _ = _top_cut(chest_phantom, "T4", "T5", into_upper=0)
    placed = place_disc_borders(mask, ct)
    before = mask.copy()
    assert label_edge_slivers(mask, ct, placed) == []
    assert np.array_equal(mask, before)


def test_next_label_present_changes_nothing(chest_phantom):
    """The next level already in the mask (e.g. its posterior elements): left as it is."""
    ct, mask, ref = _top_cut(chest_phantom, "T4", "T5", into_upper=3)
    u = value_of("T4")
    arch = (ref == u) & (mask == 0)
    assert arch.any()
    mask[arch] = u
    placed = place_disc_borders(mask, ct)
    before = mask.copy()
    assert label_edge_slivers(mask, ct, placed) == []
    assert np.array_equal(mask, before)


def test_rotation_turns_one_normal_onto_the_other():
    """The extrapolation turns the last disc's normal as much again as the last two differ."""
    from SpineLabelLib.auto.classical.edge_slivers import _rotation

    a = np.array([0.0, 0.0, -1.0])
    b = np.array([0.0, np.sin(0.2), -np.cos(0.2)])
    r = _rotation(a, b)
    assert np.allclose(r @ a, b)
    assert np.allclose(r @ r.T, np.eye(3))
    assert np.isclose(np.linalg.det(r), 1.0)
    # continued: 0.4 rad from a, in the same plane
    assert np.allclose(r @ b, [0.0, np.sin(0.4), -np.cos(0.4)])
    assert np.allclose(_rotation(a, a), np.eye(3))


def test_footprint_is_the_widened_projection():
    from SpineLabelLib.auto.classical.disc_planes import WIDEN_MM
    from SpineLabelLib.auto.classical.edge_slivers import _footprint

    q1, q2 = np.meshgrid(np.arange(-5.0, 5.01, 0.5), np.arange(-3.0, 3.01, 0.5))
    inside = _footprint(q1.ravel(), q2.ravel())
    assert inside(np.array([0.0, 4.9, -4.9]), np.array([0.0, 2.9, -2.9])).all()
    # within the rim, not beyond it
    assert inside(np.array([5.0 + 0.5 * WIDEN_MM]), np.array([0.0])).all()
    assert not inside(np.array([5.0 + 3 * WIDEN_MM, 0.0]), np.array([0.0, 3.0 + 3 * WIDEN_MM])).any()
