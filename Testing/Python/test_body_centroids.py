"""Vertebral BODY centroids (VerSe centroids) from whole-vertebra masks, on real CT labels.

References: ``totalseg_example`` holds whole vertebrae and, on the same grid, the
vertebral bodies only (T12-L5); the body-only centres of mass are the reference the
body centroids computed from the whole masks must meet. ``lidc0001_chest`` (LAS,
anisotropic) has no body reference: there the bodies must lie anterior of the whole-mask
centres and inside the mask.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import DATA, oblique_affine
from scipy import ndimage

from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image, load_image, reorient, resample_to_grid
from SpineLabelLib.labels import COCCYX, SACRUM, name_of, totalseg_to_verse
from SpineLabelLib.verse.body import body_centroids, body_masks, mass_centroids

T12_TO_L5 = range(19, 25)


def _verse_mask(path) -> Image:
    ts = load_image(path)
    return ts.with_array(totalseg_to_verse(ts.array))


@pytest.fixture(scope="module")
def abdomen() -> Image:
    """Whole vertebrae T11 (a sliver at the top edge) to sacrum, VerSe values, 3 mm RAS."""
    return _verse_mask(DATA / "totalseg_example" / "seg_totalseg_labels.nii.gz")


@pytest.fixture(scope="module")
def bodies_ref() -> Image:
    return load_image(DATA / "totalseg_example" / "vertebral_bodies_verse_labels.nii.gz")


@pytest.fixture(scope="module")
def reference_ras(bodies_ref) -> dict[int, np.ndarray]:
    """Centres of mass (RAS mm) of the body-only reference masks, T12-L5."""
    return {v: bodies_ref.index_to_world(np.array(ndimage.center_of_mass(bodies_ref.array == v))) for v in T12_TO_L5}


@pytest.fixture(scope="module")
def chest() -> Image:
    return _verse_mask(DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz")


def _errors_mm(mask: Image, centroids_ijk: dict, reference_ras: dict) -> dict[int, float]:
    return {v: float(np.linalg.norm(mask.index_to_world(centroids_ijk[v]) - ref)) for v, ref in reference_ras.items()}


def _world(mask: Image, centroids_ijk: dict) -> dict[int, np.ndarray]:
    return {v: mask.index_to_world(c) for v, c in centroids_ijk.items()}


# ----------------------------------------------------------------------------------
# accuracy against the body-only reference
# ----------------------------------------------------------------------------------
def test_body_centroids_meet_the_body_reference(abdomen, bodies_ref, reference_ras):
    abdomen.require_same_grid(bodies_ref, what="body reference")
    body_err = _errors_mm(abdomen, body_centroids(abdomen), reference_ras)
    mass_err = _errors_mm(abdomen, mass_centroids(abdomen), reference_ras)
    for v in T12_TO_L5:
        print(f"{name_of(v):>4}: body centroid {body_err[v]:5.2f} mm, whole-mask centre of mass {mass_err[v]:5.2f} mm")
    body_mean, body_max = np.mean(list(body_err.values())), max(body_err.values())
    mass_mean = np.mean(list(mass_err.values()))
    print(f"mean: body {body_mean:.2f} mm (max {body_max:.2f}), centre of mass {mass_mean:.2f} mm")
    assert body_mean < 3.0
    assert body_max < 5.0
    assert mass_mean > 8.0  # the systematic error this module exists to remove is really there
    assert body_mean < mass_mean / 4


def test_body_masks_overlap_the_reference_bodies(abdomen, bodies_ref):
    bodies = body_masks(abdomen)
    assert bodies.same_grid(abdomen)
    for v in T12_TO_L5:
        ours, ref = bodies.array == v, bodies_ref.array == v
        dice = 2 * np.sum(ours & ref) / (ours.sum() + ref.sum())
        print(f"{name_of(v)} body Dice {dice:.3f}")
        assert dice > 0.8
        # a body is a part of its (hole-filled) vertebra and much smaller than it
        assert np.all(ndimage.binary_fill_holes(abdomen.array == v)[ours])
        assert ours.sum() < 0.75 * np.sum(abdomen.array == v)
    assert set(np.unique(bodies.array)) - {0} <= set(np.unique(abdomen.array)) - {0}


# ----------------------------------------------------------------------------------
# anisotropic LAS chest: bodies anterior of the whole-mask centres, inside the mask
# ----------------------------------------------------------------------------------
def test_chest_thoracic_bodies_lie_anterior_and_inside(chest):
    assert chest.axcodes == ("L", "A", "S")
    start = time.perf_counter()
    bodies_ijk = body_centroids(chest)
    seconds = time.perf_counter() - start
    print(f"body centroids of {len(bodies_ijk)} vertebrae on a {chest.shape} mask: {seconds:.2f} s")
    assert seconds < 10.0
    mass_ijk = mass_centroids(chest)
    thoracic = [v for v in range(8, 20) if v in bodies_ijk]
    assert len(thoracic) == 12
    for v in thoracic:
        shift = chest.index_to_world(bodies_ijk[v]) - chest.index_to_world(mass_ijk[v])
        print(f"{name_of(v)}: body - mass centre (RAS mm) {np.round(shift, 1)}")
        assert 5.0 <= shift[1] <= 20.0  # towards the patient's anterior (+A)
        assert np.linalg.norm(shift) <= 25.0
        assert abs(shift[0]) <= 5.0  # no sideways drift for a symmetric vertebra
        inside = tuple(int(round(x)) for x in bodies_ijk[v])
        assert chest.array[inside] == v


# ----------------------------------------------------------------------------------
# orientation, spacing and oblique grids give the same world positions
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "ASL"])
def test_reoriented_mask_gives_the_same_world_centroids(abdomen, axcodes):
    expected = _world(abdomen, body_centroids(abdomen))
    turned = reorient(abdomen, tuple(axcodes))
    assert turned.axcodes == tuple(axcodes)
    got = _world(turned, body_centroids(turned))
    assert got.keys() == expected.keys()
    for v in expected:  # exact permutation/flip of voxels: the same answer to rounding
        np.testing.assert_allclose(got[v], expected[v], atol=1e-6)


@pytest.mark.parametrize("degrees, spacing", [(17.0, (3.0, 3.0, 3.0)), (-20.0, (2.0, 3.0, 2.5))])
def test_oblique_resampled_mask_gives_the_same_world_centroids(abdomen, degrees, spacing):
    affine = oblique_affine(spacing, degrees=degrees)
    shape = np.ceil(np.array(abdomen.shape) * 3.0 / min(spacing) * 1.3).astype(int)
    centre = abdomen.index_to_world((np.array(abdomen.shape) - 1) / 2.0)
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2.0)  # same centre, whole FOV kept
    oblique = resample_to_grid(abdomen, shape, affine, order=0)
    expected = _world(abdomen, body_centroids(abdomen))
    got = _world(oblique, body_centroids(oblique))
    # T11 is a sliver of posterior elements at the edge of the field of view: no body to find
    for v in [*T12_TO_L5, SACRUM]:
        distance = float(np.linalg.norm(got[v] - expected[v]))
        print(f"{name_of(v)}: {distance:.2f} mm")
        assert distance < 3.0  # one voxel of the original grid


# ----------------------------------------------------------------------------------
# robustness: holes, slots, extra values, lone vertebrae, special levels
# ----------------------------------------------------------------------------------
def test_enclosed_holes_do_not_move_the_body_centroid(abdomen, bodies_ref, reference_ras):
    hollow = abdomen.array.copy()
    cavity = ndimage.binary_erosion(bodies_ref.array == 22, iterations=2)  # L3's cancellous core
    assert cavity.sum() > 200
    hollow[cavity] = 0
    error = _errors_mm(abdomen, body_centroids(abdomen.with_array(hollow), labels=[22]), {22: reference_ras[22]})
    assert error[22] < 2.0


def test_ct_mends_a_slot_that_splits_the_body(abdomen, reference_ras):
    ct = load_image(DATA / "totalseg_example" / "ct.nii.gz")
    slotted = abdomen.array.copy()
    j = int(round(abdomen.world_to_index(reference_ras[22])[1]))  # RAS grid: j runs anterior
    plane = slotted[:, j, :]
    plane[plane == 22] = 0  # a one-voxel coronal slot through L3's body, open to the outside
    mask = abdomen.with_array(slotted)
    without = _errors_mm(mask, body_centroids(mask, labels=[22]), {22: reference_ras[22]})[22]
    mended = _errors_mm(mask, body_centroids(mask, labels=[22], ct=ct), {22: reference_ras[22]})[22]
    print(f"slotted L3: {without:.2f} mm without CT, {mended:.2f} mm with CT")
    assert without > 5.0  # the slot really breaks the body into halves
    assert mended < 2.0
    # on an intact mask the CT changes nothing that matters
    plain = _world(abdomen, body_centroids(abdomen))
    with_ct = _world(abdomen, body_centroids(abdomen, ct=ct))
    assert max(np.linalg.norm(plain[v] - with_ct[v]) for v in T12_TO_L5) < 1.0


def test_ct_on_another_grid_is_rejected(abdomen):
    ct = load_image(DATA / "totalseg_example" / "ct.nii.gz")
    affine = ct.affine.copy()
    affine[0, 3] += 5.0
    shifted = Image(ct.array, affine, "shifted.nii.gz")
    with pytest.raises(SpineLabelInputError, match="shifted.nii.gz"):
        body_centroids(abdomen, ct=shifted)


def test_non_vertebra_values_are_ignored(abdomen):
    expected = _world(abdomen, body_centroids(abdomen))
    extra = abdomen.array.astype(np.int16)
    background = np.argwhere(extra == 0)
    rng = np.random.default_rng(0)
    picks = background[rng.choice(len(background), 3000, replace=False)]
    extra[tuple(picks[:1000].T)] = 41  # subregion (arch)
    extra[tuple(picks[1000:2000].T)] = 120  # disc
    extra[tuple(picks[2000:].T)] = 33  # not in the VerSe table
    noisy = abdomen.with_array(extra)
    got = _world(noisy, body_centroids(noisy))
    assert got.keys() == expected.keys()
    for v in expected:
        np.testing.assert_allclose(got[v], expected[v], atol=1e-9)


def test_lone_vertebra_uses_its_own_shape(abdomen, reference_ras):
    only_l3 = abdomen.with_array(np.where(abdomen.array == 22, 22, 0).astype(np.uint8))
    error = _errors_mm(only_l3, body_centroids(only_l3), {22: reference_ras[22]})
    assert error[22] < 3.0


def test_labels_argument_restricts_and_validates(abdomen):
    full = body_centroids(abdomen)
    some = body_centroids(abdomen, labels=[20, 22, 5])  # 5 (C5) is absent: left out
    assert sorted(some) == [20, 22]
    for v in some:  # restricting the output does not change the axes (all vertebrae count)
        np.testing.assert_allclose(some[v], full[v])
    assert sorted(mass_centroids(abdomen, labels=[23])) == [23]
    with pytest.raises(SpineLabelInputError, match="not a VerSe vertebra"):
        body_centroids(abdomen, labels=[41])


def test_mass_centroids_are_centres_of_mass(abdomen):
    got = mass_centroids(abdomen)
    assert sorted(got) == [18, 19, 20, 21, 22, 23, 24, SACRUM]
    for v, c in got.items():
        np.testing.assert_allclose(c, ndimage.center_of_mass(abdomen.array == v), atol=1e-9)


def test_sacrum_centre_is_the_s1_body_and_coccyx_the_mass_centre(abdomen, reference_ras):
    centroids_ijk = body_centroids(abdomen)
    s1 = abdomen.index_to_world(centroids_ijk[SACRUM])
    whole = abdomen.index_to_world(mass_centroids(abdomen)[SACRUM])
    l5_body = reference_ras[24]
    # S1 lies cranial and anterior of the sacrum's centre of mass, right below the L5 body
    assert s1[2] > whole[2] + 5.0 and s1[1] > whole[1] + 10.0
    assert 20.0 < np.linalg.norm(s1 - l5_body) < 45.0
    assert s1[2] < l5_body[2]
    assert abdomen.array[tuple(int(round(x)) for x in centroids_ijk[SACRUM])] == SACRUM
    # a coccyx has no separate body: its centre of mass
    with_coccyx = abdomen.array.copy()
    with_coccyx[with_coccyx == SACRUM] = COCCYX
    mask = abdomen.with_array(with_coccyx)
    np.testing.assert_allclose(body_centroids(mask)[COCCYX], mass_centroids(mask)[COCCYX], atol=1e-9)


def test_tiny_and_float_masks(abdomen):
    tiny = np.zeros((5, 5, 5), np.uint8)
    tiny[2, 2, 2] = 20
    mask = Image(tiny, np.eye(4))
    np.testing.assert_allclose(body_centroids(mask)[20], [2, 2, 2])
    as_float = Image(abdomen.array.astype(np.float32), abdomen.affine)
    np.testing.assert_allclose(body_centroids(as_float)[22], body_centroids(abdomen)[22])
    with pytest.raises(SpineLabelInputError, match="not a label map"):
        body_centroids(Image(tiny + 0.5, np.eye(4), "half.nii.gz"))


def test_a_rib_taken_in_with_its_vertebra_does_not_move_the_body_centroid(abdomen, reference_ras):
    """A mask that took in a rib (the first rib arching forward from T1 is the usual case)
    holds bone in front of the canal far beside the body: the cut keeps 35 mm either side
    of the canal's midline, so the body centre stays where it was."""
    ribbed = abdomen.array.copy()
    v = 20  # L1
    # a 12 mm x 12 mm bar of bone from the body's right side to 75 mm right of its centre,
    # level with the body's centre and in front of the canal (3 mm RAS voxels: i is R-L)
    ref_ras = reference_ras[v]
    body_ijk = np.round(abdomen.world_to_index(ref_ras)).astype(int)
    i0, i1 = body_ijk[0] + 5, body_ijk[0] + 25
    j0, j1 = body_ijk[1] - 2, body_ijk[1] + 2
    k0, k1 = body_ijk[2] - 2, body_ijk[2] + 2
    bar = np.zeros_like(ribbed, dtype=bool)
    bar[i0:i1, j0:j1, k0:k1] = True
    ribbed[bar & (ribbed == 0)] = v
    assert (bar & (ribbed == v)).sum() > 300
    error = _errors_mm(abdomen, body_centroids(abdomen.with_array(ribbed), labels=[v]), {v: ref_ras})
    plain = _errors_mm(abdomen, body_centroids(abdomen, labels=[v]), {v: ref_ras})
    assert error[v] < plain[v] + 1.0, (error, plain)
