"""Synthetic spine CT phantoms: geometry, ground truth, anomalies and the benchmark suite.

Most phantoms are built on coarse grids (1.5-3 mm) to keep the file fast; the anatomy is
defined in world millimetres, so coarse grids see the same bones.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from SpineLabelLib import labels as L
from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.synthetic import Phantom, PhantomSpec, make_phantom, phantom_suite

T12, T13, L1, L2, L3, L4, L6, SACRUM = 19, 28, 20, 21, 22, 23, 25, 26


def world_of(ph: Phantom, mask_value: int) -> np.ndarray:
    """RAS mm of every voxel of one label."""
    return ph.mask.index_to_world(np.argwhere(ph.mask.array == mask_value).astype(float))


def superior(ph: Phantom, value: int) -> float:
    return float(ph.centroids_world()[value][2])


# ----------------------------------------------------------------------------------
# types, determinism, geometry
# ----------------------------------------------------------------------------------
def test_types_grid_and_determinism():
    spec = PhantomSpec(first="L1", last="L3", spacing=(2.0, 2.0, 2.5), seed=7)
    a, b = make_phantom(spec), make_phantom(spec)
    assert a.ct.array.dtype == np.int16 and a.mask.array.dtype == np.uint8
    assert np.array_equal(a.ct.affine, a.mask.affine) and a.ct.shape == a.mask.shape
    assert np.allclose(a.ct.spacing, (2.0, 2.0, 2.5))
    assert np.array_equal(a.ct.array, b.ct.array) and np.array_equal(a.mask.array, b.mask.array)
    assert a.centroids_ijk.keys() == b.centroids_ijk.keys()
    assert all(np.array_equal(a.centroids_ijk[v], b.centroids_ijk[v]) for v in a.centroids_ijk)
    other = make_phantom(spec, seed=8)
    assert not np.array_equal(other.ct.array, a.ct.array)
    # the seed also jitters the anatomy a little (sizes, curvature)
    assert np.linalg.norm(other.centroids_world()[L2] - a.centroids_world()[L2]) > 0.1


def test_overrides_and_spec_fields():
    ph = make_phantom(PhantomSpec(first="L2", last="L3", spacing=(3.0, 3.0, 3.0)), noise_hu=0.0)
    assert ph.spec.noise_hu == 0.0 and ph.spec.first == "L2"
    assert ph.ct.array.min() == -1000  # air outside the body, exactly, without noise
    assert sorted(ph.centroids_ijk) == sorted(ph.centroids_ijk, key=L.order_of)


REFERENCE = dict(first="T12", last="L3", spacing=(2.0, 2.0, 2.0), seed=3)


@pytest.fixture(scope="module")
def ras_reference() -> Phantom:
    return make_phantom(**REFERENCE)


@pytest.mark.parametrize("codes,oblique", [("LAS", 0.0), ("LPS", 0.0), ("PIR", 0.0), ("ASL", 0.0), ("IPL", 0.0), ("RAS", 20.0), ("PIR", 35.0)])
def test_every_orientation_shows_the_same_world_anatomy(ras_reference, codes, oblique):
    ph = make_phantom(**REFERENCE, axcodes=tuple(codes), oblique_deg=oblique)
    assert "".join(ph.ct.axcodes) == codes
    assert np.array_equal(ph.ct.affine, ph.mask.affine)
    if oblique:
        assert not np.allclose(np.abs(ph.ct.direction), np.round(np.abs(ph.ct.direction)), atol=1e-3)
    ref_world, world = ras_reference.centroids_world(), ph.centroids_world()
    for value in (T12, L1, L2, L3):
        assert np.linalg.norm(world[value] - ref_world[value]) < 1.0  # half a 2 mm voxel
        # the analytic centroid sits inside its own body on this grid, too
        assert ph.mask.array[tuple(np.round(ph.centroids_ijk[value]).astype(int))] == value
        ref_n = int(np.sum(ras_reference.mask.array == value))
        n = int(np.sum(ph.mask.array == value))
        assert abs(n - ref_n) / ref_n < 0.04, (value, n, ref_n)
        # centres of mass of the voxelised whole vertebrae agree in world space (thin
        # processes on a rotated 2 mm grid move them by a fraction of a voxel)
        assert np.linalg.norm(world_of(ph, value).mean(0) - world_of(ras_reference, value).mean(0)) < 1.5


# ----------------------------------------------------------------------------------
# labels and centroids
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("t13,l6", [(False, False), (True, False), (False, True), (True, True)])
def test_labels_follow_the_spec(t13, l6):
    ph = make_phantom(first="T11", last="sacrum", t13=t13, l6=l6, spacing=(3.0, 3.0, 3.0), seed=1)
    present = set(np.unique(ph.mask.array)) - {0}
    assert (T13 in present) == t13 and (L6 in present) == l6
    assert {T12, L1, 24, SACRUM} <= present and present <= L.VERSE_VALUES
    expected = [v for v in L.sort_anatomical(present) if v in ph.centroids_ijk]
    heights = [superior(ph, v) for v in expected]
    assert heights == sorted(heights, reverse=True)  # head-to-feet order in world space
    if t13:
        assert superior(ph, T12) > superior(ph, T13) > superior(ph, L1)
        assert T13 in ph.ribs_ijk  # T13 carries ribs
    if l6:
        assert superior(ph, 24) > superior(ph, L6) > superior(ph, SACRUM)


def test_partial_neighbours_are_labelled_and_centroids_need_the_body_centre_inside():
    ph = make_phantom(first="L1", last="L4", spacing=(2.0, 2.0, 2.0), fov_margin_mm=20.0)
    present = set(np.unique(ph.mask.array)) - {0}
    assert {T12, 24} <= present  # neighbours reaching into the margins are labelled
    shape = np.array(ph.mask.shape)
    for value, ijk in ph.centroids_ijk.items():
        assert np.all(ijk >= -0.5) and np.all(ijk <= shape - 0.5)
    for value in (L1, L2, L3, L4):
        assert value in ph.centroids_ijk


def test_body_centroids_lie_anterior_of_the_whole_mask_centre():
    ph = make_phantom(first="T8", last="L5", spacing=(1.5, 1.5, 1.5), seed=2)
    for value in [v for v in ph.centroids_ijk if 12 <= v <= 24]:
        com = world_of(ph, value).mean(axis=0)
        offset = ph.centroids_world()[value] - com
        assert 5.0 < offset[1] < 20.0, (value, offset)  # VerSe: about 9-14 mm
        assert abs(offset[0]) < 2.0  # the body lies in the mid-sagittal plane


def test_cut_field_of_view_cuts_the_first_vertebra():
    full = make_phantom(first="L1", last="L3", spacing=(2.0, 2.0, 2.0))
    cut = make_phantom(first="L1", last="L3", spacing=(2.0, 2.0, 2.0), cut_cranial_mm=8.0)
    top = (cut.mask.array[:, :, -1])  # RAS grid: the last k slice is the cranial edge
    assert L1 in np.unique(top)
    # only T12's inferior processes, which reach down beside L1's, remain in view
    assert np.sum(cut.mask.array == T12) < 0.1 * np.sum(full.mask.array == T12) and T12 not in cut.centroids_ijk
    n_full, n_cut = np.sum(full.mask.array == L1), np.sum(cut.mask.array == L1)
    assert 0.4 * n_full < n_cut < 0.95 * n_full
    assert L1 in cut.centroids_ijk  # 8 mm off the top does not reach the body centre
    deep = make_phantom(first="L1", last="L3", spacing=(2.0, 2.0, 2.0), cut_caudal_mm=35.0)
    assert L3 in np.unique(deep.mask.array[:, :, 0]) and L3 not in deep.centroids_ijk


# ----------------------------------------------------------------------------------
# anomalies
# ----------------------------------------------------------------------------------
def _bone_near(ph: Phantom, points_world: np.ndarray, radius_mm: float = 12.0) -> int:
    """Unlabelled bone voxels (ribs) within ``radius_mm`` of any of the points."""
    ijk = np.argwhere((ph.ct.array > 300) & (ph.mask.array == 0))
    world = ph.ct.index_to_world(ijk.astype(float))
    dist = np.min(np.linalg.norm(world[:, None, :] - points_world[None], axis=2), axis=1)
    return int(np.sum(dist < radius_mm))


def test_missing_12th_rib_pair():
    spec = PhantomSpec(first="T10", last="L2", spacing=(1.5, 1.5, 1.5), noise_hu=0.0, seed=4)
    normal, missing = make_phantom(spec), make_phantom(spec, missing_rib12=True)
    assert T12 in normal.ribs_ijk and T12 not in missing.ribs_ijk and 18 in missing.ribs_ijk
    # where the 12th ribs' heads and necks are (right and left), bone is gone
    heads12 = normal.ct.index_to_world(normal.ribs_ijk[T12])
    with_ribs, without = _bone_near(normal, heads12), _bone_near(missing, heads12)
    assert with_ribs > 100 and without < 0.2 * with_ribs, (with_ribs, without)
    # T11's ribs stay
    heads11 = normal.ct.index_to_world(normal.ribs_ijk[18])
    assert _bone_near(missing, heads11) == _bone_near(normal, heads11)
    # rib heads sit on bone
    for value, heads in normal.ribs_ijk.items():
        for p in heads:
            assert normal.ct.array[tuple(np.round(p).astype(int))] > 150


def _anterior_height(ph: Phantom, value: int) -> float:
    """Cranio-caudal extent (mm) of the front part of a vertebral body."""
    c = ph.centroids_world()[value]
    w = world_of(ph, value)
    front = w[(w[:, 1] > c[1] + 6) & (np.abs(w[:, 0] - c[0]) < 6)]
    return float(np.ptp(front[:, 2]))


def test_fracture_reduces_the_body_height():
    spec = PhantomSpec(first="T12", last="L2", spacing=(1.0, 1.0, 1.0), noise_hu=0.0, seed=5)
    normal, broken = make_phantom(spec), make_phantom(spec, fractures={"L1": 0.4})
    h0, h1 = _anterior_height(normal, L1), _anterior_height(broken, L1)
    assert h1 < 0.75 * h0, (h0, h1)
    assert abs(_anterior_height(broken, L2) - _anterior_height(normal, L2)) < 1.5  # neighbours keep theirs
    assert np.sum(broken.mask.array == L1) < 0.9 * np.sum(normal.mask.array == L1)
    assert any("L1" in n for n in broken.notes)


def _core_hu(ph: Phantom, value: int, radius_mm: float = 5.0) -> float:
    """Mean CT inside a small ball at the body centre (trabecular bone)."""
    c = ph.centroids_ijk[value]
    idx = np.argwhere(ph.mask.array == value).astype(float)
    near = idx[np.linalg.norm((idx - c) * ph.ct.spacing, axis=1) < radius_mm].astype(int)
    return float(ph.ct.array[tuple(near.T)].mean())


def test_osteoporosis_lowers_trabecular_density():
    spec = PhantomSpec(first="L1", last="L3", spacing=(1.5, 1.5, 1.5), seed=6)
    normal, osteo = make_phantom(spec), make_phantom(spec, osteoporosis=True)
    for value in (L1, L2, L3):
        n, o = _core_hu(normal, value), _core_hu(osteo, value)
        assert 150 < n < 320 and 30 < o < 110, (value, n, o)


def test_discs_are_darker_than_the_bodies_around_them():
    ph = make_phantom(first="T11", last="L4", spacing=(1.0, 1.0, 1.0), noise_hu=0.0, seed=8)
    order = [v for v in L.sort_anatomical(ph.centroids_ijk) if v != SACRUM]
    for upper, lower in zip(order[:-1], order[1:]):
        a, b = ph.centroids_ijk[upper], ph.centroids_ijk[lower]
        profile = [ph.ct.array[tuple(np.round(a + t * (b - a)).astype(int))] for t in np.linspace(0, 1, 101)]
        mid = np.array(profile[35:66])
        darkest = int(mid.min())
        assert 40 < darkest < 120, (upper, lower, darkest)  # disc (annulus 100, nucleus 80)
        assert profile[0] > darkest + 80 and profile[-1] > darkest + 80
        assert max(profile) > 600  # the cortical endplates show


def test_pedicle_screws_are_metal_inside_the_named_vertebra():
    ph = make_phantom(first="L2", last="L5", screws=("L4",), spacing=(1.5, 1.5, 1.5), seed=9)
    metal_in = lambda v: int(np.sum((ph.ct.array > 2000) & (ph.mask.array == v)))  # noqa: E731
    assert metal_in(L4) > 30
    assert metal_in(L2) == 0 and metal_in(L3) == 0
    assert ph.ct.array.max() >= 2900
    # the tulip heads stick out of the bone: metal outside any vertebra
    assert np.sum((ph.ct.array > 2000) & (ph.mask.array == 0)) > 20


def test_scoliosis_bends_the_spine_laterally():
    straight = make_phantom(first="T6", last="L4", spacing=(3.0, 3.0, 3.0), seed=10)
    bent = make_phantom(first="T6", last="L4", spacing=(3.0, 3.0, 3.0), scoliosis_deg=30.0, seed=10)
    xs = np.array([c[0] for c in straight.centroids_world().values()])
    xb = np.array([c[0] for c in bent.centroids_world().values()])
    assert np.ptp(xs) < 1.0
    assert xb.max() > 25.0  # right-convex: apex ~ span/pi * tan(15 deg) ~ 35 mm


def test_noise_level_and_tissue_values():
    quiet = make_phantom(first="T9", last="T11", spacing=(2.0, 2.0, 2.0), noise_hu=0.0, seed=11)
    noisy = make_phantom(first="T9", last="T11", spacing=(2.0, 2.0, 2.0), noise_hu=40.0, seed=11)
    diff = noisy.ct.array.astype(float) - quiet.ct.array
    inside = (quiet.ct.array > -900) & (quiet.ct.array < 2000)
    assert 30 < diff[inside].std() < 50
    hu = quiet.ct.array
    assert np.sum(hu == -1000) > 0  # air outside the body
    assert np.sum(np.abs(hu + 850) < 5) > 1000  # lungs around the thoracic spine
    assert np.sum(np.abs(hu + 100) < 5) > 1000  # subcutaneous fat
    assert np.sum(np.abs(hu - 40) < 3) > 10000  # muscle / soft tissue
    bone = hu[quiet.mask.array > 0]
    assert np.percentile(bone, 99) > 650 and np.median(bone) < 500


# ----------------------------------------------------------------------------------
# bad specs and the suite
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,words", [
    (dict(first="X3"), "not a VerSe vertebra"),
    (dict(first="L3", last="T12"), "caudal of last"),
    (dict(first="T13"), "t13=True"),
    (dict(last="L6"), "l6=True"),
    (dict(axcodes=("R", "R", "S")), "axis codes"),
    (dict(spacing=(1.0, 0.0, 1.0)), "spacing"),
    (dict(fractures={"sacrum": 0.3}), "fracture"),
    (dict(fractures={"L1": 1.5}), "fracture"),
    (dict(screws=("C1",)), "C1"),
    (dict(last="coccyx"), "coccyx"),
    (dict(colour="red"), "unknown PhantomSpec field"),
    (dict(spacing=(0.1, 0.1, 0.1)), "M voxels"),
])
def test_impossible_specs_raise_clear_errors(overrides, words):
    with pytest.raises(SpineLabelInputError, match=words):
        make_phantom(**overrides)


def test_suite_covers_fields_of_view_spacings_orientations_and_anomalies():
    suite = phantom_suite()
    assert len(suite) >= 24 and all(isinstance(s, PhantomSpec) for s in suite)
    assert len({s.name for s in suite}) == len(suite) and len({s.seed for s in suite}) == len(suite)
    spacings = [v for s in suite for v in s.spacing]
    assert min(spacings) <= 0.5 and max(spacings) >= 3.0
    assert len({tuple(s.axcodes) for s in suite}) >= 6 and any(s.oblique_deg for s in suite)
    assert any(s.first == "C1" and s.last == "sacrum" for s in suite)
    assert any(L.label(s.last).region == "cervical" for s in suite)
    assert any(s.t13 for s in suite) and any(s.l6 for s in suite) and any(s.missing_rib12 for s in suite)
    assert any(s.fractures for s in suite) and any(s.scoliosis_deg for s in suite)
    assert any(s.osteoporosis for s in suite) and any(s.screws for s in suite)
    assert any(s.cut_cranial_mm for s in suite) and any(s.cut_caudal_mm for s in suite)
    assert any(s.noise_hu == 0 for s in suite) and any(s.noise_hu > 40 for s in suite)


def test_every_suite_spec_builds_on_a_coarse_grid():
    """The suite's specs are valid; built at 3 mm (their fields of view and anomalies kept)."""
    for spec in phantom_suite():
        ph = make_phantom(dataclasses.replace(spec, spacing=(3.0, 3.0, 3.0)))
        values = set(np.unique(ph.mask.array)) - {0}
        first, last = L.label(spec.first).value, L.label(spec.last).value
        if not spec.cut_cranial_mm:
            assert first in ph.centroids_ijk, spec.name
        assert {first, last} <= values, spec.name
        for name in spec.screws:
            assert np.sum((ph.ct.array > 2000) & (ph.mask.array == L.value_of(name))) > 0, spec.name
