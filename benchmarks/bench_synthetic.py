"""Build time and peak memory of the synthetic phantom suite (tests and demo rely on it).

    .venv/bin/python benchmarks/bench_synthetic.py
"""
from __future__ import annotations

import time

import numpy as np

from _common import machine, peak_rss_mb
from SpineLabelLib.synthetic import make_phantom, phantom_suite


def main():
    print(f"machine: {machine()}")
    print("| spec | grid | spacing (mm) | orientation | vertebrae | build (s) |")
    print("|---|---|---|---|---|---|")
    total = 0.0
    for spec in phantom_suite():
        start = time.perf_counter()
        ph = make_phantom(spec)
        elapsed = time.perf_counter() - start
        total += elapsed
        n = len([v for v in np.unique(ph.mask.array) if v])
        grid = "x".join(map(str, ph.ct.shape))
        sp = "x".join(f"{s:g}" for s in spec.spacing)
        orient = "".join(spec.axcodes) + (f"+{spec.oblique_deg:g}°" if spec.oblique_deg else "")
        print(f"| {spec.name} | {grid} | {sp} | {orient} | {n} | {elapsed:.1f} |")
    print(f"total {total:.1f} s for {len(phantom_suite())} phantoms; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
