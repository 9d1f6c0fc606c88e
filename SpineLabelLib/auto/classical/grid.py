"""The working grid of the weight-free engine and exact, memory-bounded transfers to it
and back.

The engine works on a world-aligned RAS grid (axes +R, +A, +S) with isotropic voxels of
``spacing`` mm covering the input's field of view, whatever the input's orientation,
spacing or oblique affine. Resampling in is done in slabs (the input is read one block
at a time, large inputs decimated first), so memory stays bounded by the working grid;
the label map goes back to the input grid by nearest neighbour, again slab by slab.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...image import Image, apply_affine

#: Above this many working voxels the working spacing is coarsened.
MAX_WORK_VOXELS = 24_000_000
#: Output slab thickness (slices) for slab-wise transfers.
_SLAB = 16


def working_grid(ct: Image, spacing: float, max_voxels: int = MAX_WORK_VOXELS) -> tuple[tuple[int, int, int], np.ndarray, float]:
    """(shape, affine, spacing) of the RAS-aligned isotropic grid covering ``ct``'s field of view."""
    n = np.asarray(ct.shape, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5) for k in (-0.5, n[2] - 0.5)])
    world = apply_affine(ct.affine, corners)
    lo, hi = world.min(axis=0), world.max(axis=0)
    extent = hi - lo
    s = float(spacing)
    while np.prod(np.maximum(1, np.ceil(extent / s))) > max_voxels:
        s *= 1.15
    shape = tuple(int(max(1, np.ceil(e / s))) for e in extent)
    affine = np.diag([s, s, s, 1.0])
    affine[:3, 3] = lo + s / 2
    return shape, affine, s  # type: ignore[return-value]


def input_block(image: Image, out_affine: np.ndarray, out_shape, pad: int = 2):
    """(lo, hi): the index box (i, j, k) of ``image`` that covers an output block (shape,
    affine: its voxels -> world RAS mm), ``pad`` voxels wider, clipped to the image."""
    n = np.asarray(out_shape, dtype=float)
    corners = np.array([[i, j, k] for i in (0, n[0] - 1) for j in (0, n[1] - 1) for k in (0, n[2] - 1)])
    idx = apply_affine(np.linalg.inv(image.affine) @ out_affine, corners)
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + pad + 1, np.asarray(image.shape))
    return lo, hi


def resample_slabwise(image: Image, shape, affine: np.ndarray, order: int, fill: float, dtype) -> np.ndarray:
    """Resample ``image`` onto (shape, affine), reading one input block per output slab."""
    shape = tuple(int(s) for s in shape)
    out = np.full(shape, fill, dtype=dtype)
    inv_in = np.linalg.inv(image.affine)
    for k0 in range(0, shape[2], _SLAB):
        k1 = min(shape[2], k0 + _SLAB)
        slab_aff = affine.copy()
        slab_aff[:3, 3] = apply_affine(affine, [0, 0, k0])
        slab_shape = (shape[0], shape[1], k1 - k0)
        lo, hi = input_block(image, slab_aff, slab_shape)
        if np.any(hi <= lo):
            continue
        block = np.asarray(image.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
        if order > 0:
            block = block.astype(np.float32, copy=False)
        m = inv_in @ slab_aff
        m[:3, 3] -= lo
        # "nearest" beyond the outermost voxel centres, then ``fill`` only outside the
        # input's voxels: a working voxel whose centre lies in the input's last half voxel
        # is still inside the field of view (a constant fill there would blend air into
        # the bone cut by the field of view and lose the edge slices)
        res = ndimage.affine_transform(block, m[:3, :3], offset=m[:3, 3], output_shape=slab_shape,
                                       order=order, mode="nearest", prefilter=False)
        res[~_inside_input(m, slab_shape, lo, image.shape)] = fill
        out[:, :, k0:k1] = res
    return out


def _inside_input(block_from_out: np.ndarray, out_shape, lo, in_shape) -> np.ndarray:
    """Boolean (out_shape): output voxels whose centre lies within the input's voxels
    (index -0.5 .. n - 0.5 on every axis); ``block_from_out`` maps output indices to
    indices of the block that starts at input index ``lo``."""
    inside = np.ones(out_shape, dtype=bool)
    grids = np.indices(out_shape, dtype=np.float32)
    for a in range(3):
        idx = sum(block_from_out[a, c] * grids[c] for c in range(3)) + block_from_out[a, 3] + lo[a]
        inside &= (idx >= -0.5) & (idx <= in_shape[a] - 0.5)
    return inside


def to_working(ct: Image, spacing: float, max_voxels: int = MAX_WORK_VOXELS) -> Image:
    """The CT on the working grid (float32 HU, air outside the input)."""
    shape, affine, s = working_grid(ct, spacing, max_voxels)
    src = ct
    step = np.floor(s / np.asarray(ct.spacing) / 2).astype(int)  # decimate big inputs first (keeps >= 2 samples per voxel)
    if np.any(step > 1):
        step = np.maximum(step, 1)
        aff = ct.affine.copy()
        aff[:3, :3] = ct.affine[:3, :3] * step
        src = Image(ct.array[:: step[0], :: step[1], :: step[2]], aff, ct.source)
    arr = resample_slabwise(src, shape, affine, order=1, fill=-1000.0, dtype=np.float32)
    return Image(arr, affine, ct.source)


def labels_to_input(labels: np.ndarray, work_affine: np.ndarray, ct: Image) -> np.ndarray:
    """Nearest-neighbour copy of a working-grid label map onto ``ct``'s grid (uint8), slab by slab."""
    work = Image(labels, work_affine)
    out = np.zeros(ct.shape, dtype=np.uint8)
    if not labels.any():
        return out
    nz = np.argwhere(labels > 0)
    # only the input voxels near labelled working voxels can be non-zero
    wlo, whi = nz.min(axis=0) - 1, nz.max(axis=0) + 1
    box = np.array([[a, b, c] for a in (wlo[0], whi[0]) for b in (wlo[1], whi[1]) for c in (wlo[2], whi[2])], float)
    idx = apply_affine(np.linalg.inv(ct.affine) @ work_affine, box)
    ilo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    ihi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(ct.shape))
    if np.any(ihi <= ilo):
        return out
    for k0 in range(ilo[2], ihi[2], _SLAB):
        k1 = min(ihi[2], k0 + _SLAB)
        sub_aff = ct.affine.copy()
        sub_aff[:3, 3] = apply_affine(ct.affine, [ilo[0], ilo[1], k0])
        m = np.linalg.inv(work_affine) @ sub_aff
        out[ilo[0]:ihi[0], ilo[1]:ihi[1], k0:k1] = ndimage.affine_transform(
            work.array, m[:3, :3], offset=m[:3, 3], output_shape=(ihi[0] - ilo[0], ihi[1] - ilo[1], k1 - k0),
            order=0, mode="constant", cval=0, prefilter=False)
    return out


def working_to_input_ijk(points_ijk: np.ndarray, work_affine: np.ndarray, ct: Image) -> np.ndarray:
    """Working-grid voxel indices -> fractional voxel indices (i, j, k) on ``ct``'s grid."""
    return apply_affine(np.linalg.inv(ct.affine) @ work_affine, points_ijk)
