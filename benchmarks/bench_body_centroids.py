"""Body-centroid accuracy on real data (issue target: mean < 3 mm on totalseg_example).

Whole-vertebra masks (TotalSegmentator, mapped to VerSe) -> body centroids, compared with
the centres of mass of the body-only reference masks on the same grid. Also reports the
naive whole-mask centre of mass, and the run time on the 512x512x133 LIDC chest mask.

    .venv/bin/python benchmarks/bench_body_centroids.py
"""
from __future__ import annotations

import time

import numpy as np

from _common import DATA, machine, peak_rss_mb
from SpineLabelLib import labels
from SpineLabelLib.image import load_image
from SpineLabelLib.verse.body import body_centroids, mass_centroids


def main():
    ts = load_image(DATA / "totalseg_example" / "seg_totalseg_labels.nii.gz")
    whole = ts.with_array(labels.totalseg_to_verse(ts.array))
    bodies = load_image(DATA / "totalseg_example" / "vertebral_bodies_verse_labels.nii.gz")
    reference = mass_centroids(bodies)
    t0 = time.perf_counter()
    ours = body_centroids(whole)
    t_ts = time.perf_counter() - t0
    naive = mass_centroids(whole)
    print(f"machine: {machine()}")
    print("| level | body-centroid error (mm) | whole-mask centre-of-mass error (mm) |")
    print("|---|---|---|")
    errs, naive_errs = [], []
    for v in labels.sort_anatomical(reference):
        ref_w = bodies.index_to_world(reference[v])
        e = float(np.linalg.norm(whole.index_to_world(ours[v]) - ref_w))
        n = float(np.linalg.norm(whole.index_to_world(naive[v]) - ref_w))
        errs.append(e)
        naive_errs.append(n)
        print(f"| {labels.name_of(v)} | {e:.2f} | {n:.2f} |")
    print(f"| **mean** | **{np.mean(errs):.2f}** (max {np.max(errs):.2f}) | {np.mean(naive_errs):.2f} |")
    lidc = load_image(DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz")
    lidc = lidc.with_array(labels.totalseg_to_verse(lidc.array))
    t0 = time.perf_counter()
    got = body_centroids(lidc)
    t_lidc = time.perf_counter() - t0
    print(f"time: totalseg_example {t_ts:.2f} s; lidc0001 512x512x133 ({len(got)} vertebrae) {t_lidc:.2f} s; "
          f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
