"""The weight-free engine at the edge of the field of view: the working grid keeps the
input's last half voxel, a bone cut by the field of view keeps its marrow, the body
chain is extended over a top vertebra whose upper endplate shows no edge, and the canal
track is continued where a thin arch falls below the bone level."""
from __future__ import annotations

import numpy as np

from conftest import oblique_affine
from SpineLabelLib.auto.classical import grid
from SpineLabelLib.auto.classical.discs import EXTEND_PITCHES, _extend_chain
from SpineLabelLib.auto.classical.separate import fill_marrow
from SpineLabelLib.image import Image, apply_affine


def test_working_grid_keeps_the_inputs_outer_half_voxel():
    # 3 mm input, 1.5 mm working grid: the outermost working voxels lie in the input's last
    # half voxel; they are inside the field of view and must not be blended with air
    ct = Image(np.full((10, 12, 8), 500.0, dtype=np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    work = grid.to_working(ct, 1.5)
    assert work.shape == (20, 24, 16)
    assert work.array.min() == 500.0 and work.array.max() == 500.0


def test_working_grid_is_air_outside_an_oblique_input():
    affine = oblique_affine((2.0, 2.0, 2.0), degrees=30.0)
    ct = Image(np.full((12, 12, 12), 500.0, dtype=np.float32), affine)
    work = grid.to_working(ct, 2.0)
    # each working voxel: inside the input's voxels (index -0.5 .. n - 0.5) or not
    ijk = np.indices(work.shape).reshape(3, -1).T
    idx = apply_affine(np.linalg.inv(affine) @ work.affine, ijk)
    inside = np.all((idx >= -0.5) & (idx <= 11.5), axis=1).reshape(work.shape)
    assert inside.any() and (~inside).any()
    assert np.all(work.array[inside] == 500.0)
    assert np.all(work.array[~inside] == -1000.0)


def test_marrow_of_a_bone_cut_by_the_field_of_view_is_filled():
    # a hollow cylinder (cortex ring, marrow 150 HU inside) running out of the top face
    n = 30
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    r = np.hypot(ii - 15, jj - 15)
    hu = np.full((n, n, 20), 0.0, dtype=np.float32)
    lab = np.zeros((n, n, 20), dtype=np.uint8)
    ring = (r >= 6) & (r < 8)
    for k in range(8, 20):  # reaches the last slice: cut by the field of view
        hu[:, :, k][r < 8] = 150.0
        hu[:, :, k][ring] = 800.0
        lab[:, :, k][ring] = 1
    hu[:, :, 8][r < 8] = 800.0  # bottom endplate
    lab[:, :, 8][r < 8] = 1
    fill_marrow(lab, hu, [1], s=1.5)
    marrow = np.zeros_like(lab, dtype=bool)
    marrow[:, :, 9:][np.broadcast_to((r < 6)[:, :, None], (n, n, 11))] = True
    assert np.all(lab[marrow] == 1), "marrow under the cut left out"
    assert not lab[:, :, :8].any(), "nothing added outside the bone"


def test_fatty_marrow_is_filled_but_not_speckles_in_the_soft_tissue_between_bones():
    """Two closed bone shells 9 mm apart (like the sacrum's lateral masses) with fatty
    marrow (-30 HU) inside, fat (-100 HU) around and between them, and isolated -30 HU
    voxels (noise) in the fat between them, which the sacrum's wide closing reaches: with
    ``fatty_min_hu`` the marrow is filled and the speckles are not; without it neither."""
    ii, jj = np.meshgrid(np.arange(50), np.arange(30), indexing="ij")
    hu = np.full((50, 30, 20), -100.0, dtype=np.float32)
    lab = np.zeros(hu.shape, dtype=np.uint8)
    marrow = np.zeros(hu.shape, dtype=bool)
    for cx in (12, 34):
        r = np.hypot(ii - cx, jj - 15)
        for k in range(3, 17):
            shell = (r < 8) if k in (3, 16) else (r >= 7) & (r < 8)
            hu[:, :, k][shell] = 800.0
            lab[:, :, k][shell] = 1
            if k not in (3, 16):
                hu[:, :, k][r < 7] = -30.0
                marrow[:, :, k] |= r < 7
    speckles = np.zeros(hu.shape, dtype=bool)
    speckles[21:26:3, 13:18:3, 6:14:3] = True  # in the gap between the shells (x 20-25)
    hu[speckles] = -30.0
    plain = lab.copy()
    fill_marrow(plain, hu, [1], s=1.5, radius_mm=10.5)
    assert not plain[marrow].any() and not plain[speckles].any()
    fill_marrow(lab, hu, [1], s=1.5, radius_mm=10.5, fatty_min_hu=-50.0)
    assert (lab[marrow] == 1).mean() > 0.95
    assert not lab[speckles].any()
    assert not lab[hu == -100.0].any()


def test_body_marrow_hole_in_an_axial_slice_is_filled_but_not_the_canal_or_a_dark_pocket():
    """A body slice whose cortex ring is intact but whose marrow was cleared (a disc slab
    placed into the body) gets its marrow back; the spinal canal behind the body's front
    wall, a fat-dark hole and a hole enclosed by two labels (a disc between two vertebrae)
    stay empty."""
    from SpineLabelLib.auto.classical.separate import fill_body_holes

    s, nz = 1.5, 6
    curves, _prof = _straight_spine(nz, s)  # canal centre y 15, its front wall y 18
    ii, jj = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    body_r = np.hypot(ii - 20, jj - 28)
    canal_r = np.hypot(ii - 20, jj - 13)
    hu = np.full((40, 40, nz), 40.0, dtype=np.float32)
    lab = np.zeros((40, 40, nz), dtype=np.uint8)
    for k in range(nz):
        lab[:, :, k][(body_r >= 7) & (body_r < 9)] = 1  # the body's cortex ring
        lab[:, :, k][(canal_r >= 4) & (canal_r < 6) & (jj < 19)] = 1  # the arch around the canal
        hu[:, :, k][body_r < 7] = 120.0  # marrow
        hu[:, :, k][canal_r < 4] = 70.0  # the canal, as dense as marrow: only its place tells
    hu[:, :, 1][body_r < 7] = -80.0  # slice 1: a fat-dark hole (not marrow)
    lab[:, :, 4][(body_r >= 7) & (body_r < 9) & (jj < 28)] = 2  # slice 4: ring of two labels
    fill_body_holes(lab, hu, curves, [1, 2], s)
    marrow = body_r < 7
    for k in (0, 2, 3, 5):
        assert np.all(lab[:, :, k][marrow] == 1), f"marrow of slice {k} left out"
    assert not lab[:, :, 1][marrow].any(), "a dark hole is not marrow"
    assert not lab[:, :, 4][marrow].any(), "a hole that two labels enclose is not one body's marrow"
    assert not lab[:, :, :][np.broadcast_to((canal_r < 4)[:, :, None], lab.shape)].any(), "the canal was filled"


def test_chain_is_extended_one_pitch_above_the_top_centre_only():
    # 3 bodies 20 apart and 40 samples of profile above the first: room for one more body
    assert _extend_chain([40, 60, 80], [], ) == [20, 40, 60, 80]
    # a calm candidate within a quarter pitch of the expected place is preferred
    assert _extend_chain([40, 60, 80], [5, 23, 70]) == [23, 40, 60, 80]
    # no room for a whole body and its disc above: unchanged
    top = int(EXTEND_PITCHES * 20) - 1
    assert _extend_chain([top, top + 20, top + 40], []) == [top, top + 20, top + 40]
    # never below the last centre (the profile runs on into the sacrum there)
    assert _extend_chain([10, 30, 50], []) == [10, 30, 50]


def _straight_spine(nz: int, s: float):
    """Curves and a body profile of a straight vertical spine on a (40, 40, nz) working grid:
    canal centre at (20, 15), body centre at (20, 28) in every slice; profile index 0 = top."""
    from SpineLabelLib.auto.classical.discs import Profile
    from SpineLabelLib.auto.classical.spine import SpineCurves

    canal = np.tile([20.0, 15.0], (nz, 1))
    body = np.tile([20.0, 28.0], (nz, 1))
    curves = SpineCurves(canal=canal, canal_front=np.full(nz, 18.0), body=body, z_lo=0, z_hi=nz - 1,
                         support=np.ones(nz, bool))
    n = int((nz - 1) * s) + 1  # 1 mm profile steps from the top slice down
    zs = (nz - 1) - np.arange(n) / s
    pts = np.column_stack([np.full(n, 20.0), np.full(n, 28.0), zs])
    prof = Profile(points=pts, tangent=np.tile([0.0, 0.0, -1.0], (n, 1)), hu=np.zeros(n), dip=np.zeros(n))
    return curves, prof


def test_posterior_arch_above_the_top_vertebra_gets_its_own_marker():
    """When the view's top lies at the top body's upper endplate, midline bone behind the
    canal in the top of that body's height is the vertebra above's laminae and spinous
    process (they slant down over the next body): it gets its own marker. Not when the top
    body is cut lower (its own posterior elements are there), nor beside the midline."""
    from SpineLabelLib.auto.classical.separate import Segment, _above_marker

    s, nz = 1.5, 60  # 88.5 mm of curve, 89 profile samples
    curves, prof = _straight_spine(nz, s)
    bone = np.zeros((40, 40, nz), bool)
    bone[19:22, 2:9, 50:] = True  # a spinous process 9.5-19 mm behind the canal centre, top 15 mm
    bone[28:31, 10:13, 50:] = True  # an articular process 12-16 mm to the side: not the midline
    # top body 28 mm (+0 mm untracked) over a 30 mm pitch: the view ends at its upper endplate
    segs = [Segment(0, 28, False, True), Segment(28, 58, True, True), Segment(58, 88, True, False)]
    markers = np.zeros(bone.shape, np.int32)
    assert _above_marker(markers, bone, curves, prof, segs, s, value=5)
    seeded = markers == 5
    assert seeded[19:22, 2:9].any() and not seeded[28:31].any()
    # the top 30 % of the pitch (9 mm = 6 slices) only, and only bone
    assert not seeded[:, :, :nz - 7].any() and not (seeded & ~bone).any()
    # a top body cut at half its height: its own posterior elements lie there, no marker
    markers[:] = 0
    half = [Segment(0, 15, False, True), Segment(15, 45, True, True), Segment(45, 88, True, False)]
    assert not _above_marker(markers, bone, curves, prof, half, s, value=5)
    assert not markers.any()
    # a disc above the top body: its whole level is in view, nothing is "above"
    whole = [Segment(0, 28, True, True)] + segs[1:]
    assert not _above_marker(markers, bone, curves, prof, whole, s, value=5)


def _canal_phantom(arch_hu_top: float):
    """Working-grid HU (s = 1.5 mm, 60 x 60 x 50): soft tissue around a spinal canal (CSF,
    radius 5 voxels) in a bone ring, a bright body in front of it. Slices 0-29: the ring
    at 400 HU and the canal at y = 20; slices 30-49: the ring at ``arch_hu_top`` and the
    canal (with its body) moving back 0.3 voxel per slice (a thin arch on thick slices near
    the view's end, where the spine curves). Returns (hu, canal y per slice)."""
    n, nz = 60, 50
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    hu = np.full((n, n, nz), 40.0, dtype=np.float32)
    ys = np.where(np.arange(nz) < 30, 20.0, 20.0 - 0.3 * (np.arange(nz) - 30))
    for k in range(nz):
        r = np.hypot(ii - 30, jj - ys[k])
        hu[:, :, k][(r >= 5) & (r < 7)] = 400.0 if k < 30 else arch_hu_top
        hu[:, :, k][r < 5] = 10.0
        hu[:, :, k][(np.abs(ii - 30) <= 12) & (jj >= ys[k] + 7) & (jj <= ys[k] + 25)] = 300.0
    return hu, ys


def test_canal_track_is_continued_where_a_thin_arch_falls_below_the_bone_level():
    """Where the arch around the canal is fainter than the bone level (150 HU: a thin arch
    on thick slices), the track is continued with bone above CONTINUE_BONE_HU and follows
    the canal as it moves; without that it would be extrapolated straight on (5.7 voxels
    off at the top). Where no bone at all encloses the canal, it is still extrapolated."""
    from SpineLabelLib.auto.classical import spine

    s = 1.5
    hu, ys = _canal_phantom(arch_hu_top=150.0)
    curves = spine.track_canal(hu, hu > spine.BONE_HU, s)
    assert curves.support[30:50].all()
    assert np.abs(curves.canal[30:50, 1] - ys[30:50]).max() < 1.0
    assert np.abs(curves.canal[30:50, 0] - 30).max() < 1.0
    # no continuation: the same phantom tracked with the lower level switched off
    low = spine.CONTINUE_BONE_HU
    try:
        spine.CONTINUE_BONE_HU = 1000.0
        straight = spine.track_canal(hu, hu > spine.BONE_HU, s)
    finally:
        spine.CONTINUE_BONE_HU = low
    assert not straight.support[40:50].any()
    assert np.abs(straight.canal[49, 1] - ys[49]) > 4.0
    # an arch darker than the continuation level: not continued, extrapolated as before
    hu, ys = _canal_phantom(arch_hu_top=100.0)
    dark = spine.track_canal(hu, hu > spine.BONE_HU, s)
    assert not dark.support[40:50].any()
