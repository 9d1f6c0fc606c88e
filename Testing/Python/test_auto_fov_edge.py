"""The weight-free engine at the edge of the field of view: the working grid keeps the
input's last half voxel, a bone cut by the field of view keeps its marrow, and the body
chain is extended over a top vertebra whose upper endplate shows no edge."""
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
