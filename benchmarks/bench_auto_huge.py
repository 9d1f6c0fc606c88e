"""The weight-free engine on a huge CT (issue 3, bad input: 1024 x 1024 x 2000 voxels):
time, peak memory, and whether the labels survive.

    .venv/bin/python benchmarks/bench_auto_huge.py [--slices 2000]

No such CT is in ../shared/data, so one is built from lidc0001_chest (512 x 512 x 133,
0.7 x 0.7 x 2.5 mm) by nearest-neighbour upsampling to 1024 x 1024 x N on the same field of
view (0.35 mm in-plane; 2000 slices: 0.17 mm apart): the same anatomy on a grid of 2.1
billion voxels (4.2 GB as int16). Its labels should be lidc0001's own.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import DATA, machine, peak_rss_mb
from SpineLabelLib.auto.base import get_engine
from SpineLabelLib.image import Image, load_image
from SpineLabelLib.labels import name_of, sort_anatomical


def upsampled_lidc(n_slices: int, side: int = 1024) -> Image:
    """lidc0001's CT on a side x side x n_slices grid over the same field of view (int16,
    nearest neighbour, filled slab by slab so the only large array is the result)."""
    ct = load_image(DATA / "lidc0001_chest" / "ct.nii.gz")
    src = np.asarray(ct.array, dtype=np.int16)
    ii = np.arange(side) * src.shape[0] // side
    jj = np.arange(side) * src.shape[1] // side
    kk = np.arange(n_slices) * src.shape[2] // n_slices
    plane_up = src[ii][:, jj]  # side x side x 133
    big = np.empty((side, side, n_slices), np.int16)
    for k0 in range(0, n_slices, 64):
        big[:, :, k0:k0 + 64] = plane_up[:, :, kk[k0:k0 + 64]]
    # output voxel o spans input indices [o r, (o + 1) r): its centre is input index (o + 0.5) r - 0.5
    r = np.asarray(src.shape, float) / np.asarray(big.shape, float)
    affine = ct.affine.copy()
    affine[:3, :3] = ct.affine[:3, :3] * r
    affine[:3, 3] = ct.affine[:3, 3] + ct.affine[:3, :3] @ (0.5 * r - 0.5)
    return Image(big, affine, "lidc0001 upsampled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M')}")
    img = upsampled_lidc(args.slices)
    before = peak_rss_mb()
    print(f"input {img.shape}, spacing {np.round(img.spacing, 3).tolist()} mm, "
          f"{img.array.nbytes / 2**20:.0f} MiB; peak RSS before the engine {before:.0f} MiB")
    t0 = time.perf_counter()
    res = get_engine("classical").segment(img)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    names = [name_of(v) for v in sort_anatomical(res.centroids_ijk)]
    print(f"classical engine: {seconds:.1f} s, peak RSS {peak:.0f} MiB "
          f"(+{peak - before:.0f} MiB over the input and the build)")
    print(f"labels ({len(names)}): {', '.join(names)}")
    print(f"mask on the input grid: {res.mask.shape == img.shape}; notes: {res.notes}")


if __name__ == "__main__":
    main()
