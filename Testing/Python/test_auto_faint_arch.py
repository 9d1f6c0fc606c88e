"""The weight-free engine's faint-arch rule (``separate.faint_arch_bone``): on thick slices
a thin lamina reads below the bone threshold; it counts as bone behind the canal, while the
partial-volume surface of a thick bone, the body's side of the canal, soft tissue and bone
far from the canal do not."""
from __future__ import annotations

import numpy as np

from SpineLabelLib.auto.classical.separate import faint_arch_bone
from SpineLabelLib.auto.classical.spine import SpineCurves, noise_sigma


def _curves(shape, canal_xy):
    nz = shape[2]
    return SpineCurves(canal=np.tile(canal_xy, (nz, 1)).astype(float), canal_front=np.full(nz, canal_xy[1] + 4.0),
                       body=np.tile([canal_xy[0], canal_xy[1] + 15.0], (nz, 1)), z_lo=0, z_hi=nz - 1,
                       support=np.ones(nz, bool))


def test_thin_lamina_counts_but_not_a_thick_bones_surface_the_body_side_or_soft_tissue():
    s, shape = 1.5, (80, 50, 6)
    hu = np.full(shape, 40.0, dtype=np.float32)  # soft tissue; canal centre at (40, 30)
    lamina = np.zeros(shape, bool)
    lamina[30:50, 20:22, :] = True  # 12-15 mm behind the canal centre, 140 HU
    hu[lamina] = 140.0
    block = np.zeros(shape, bool)
    block[56:62, 14:20, :] = True  # a thick bright bone (a spinous process's base) ...
    shell = np.zeros(shape, bool)  # ... with its partial-volume surface at 140 HU (the
    shell[55:63, 14:20, :] = True  # voxels sharing a face with it)
    shell[56:62, 13:21, :] = True
    shell &= ~block
    hu[block], hu[shell] = 800.0, 140.0
    front = np.zeros(shape, bool)
    front[30:50, 38:40, :] = True  # 12-15 mm in front of the canal centre (the body's side)
    hu[front] = 140.0
    far = np.zeros(shape, bool)
    far[2:6, 20:30, :] = True  # 50-57 mm beside the canal
    hu[far] = 140.0
    faint = np.zeros(shape, bool)
    faint[30:50, 10:12, :] = True  # 90 HU: above soft tissue, below the faint level
    hu[faint] = 90.0
    out = faint_arch_bone(hu, _curves(shape, (40, 30)), s, bone_hu=180.0, faint_hu=100.0)
    assert out[lamina].all()
    assert not out[shell].any() and not out[block].any()  # the bright bone is bone anyway
    assert not out[front].any() and not out[far].any() and not out[faint].any()
    assert out.sum() == lamina.sum()


def test_noise_sigma_measures_the_soft_tissue_noise():
    rng = np.random.default_rng(0)
    hu = 40.0 + rng.normal(0.0, 25.0, size=(60, 60, 40)).astype(np.float32)
    hu[:, :, :5] = 1000.0  # bone is left out
    assert 22.0 < noise_sigma(hu) < 28.0
    assert noise_sigma(np.full((10, 10, 8), 40.0)) == 0.0
