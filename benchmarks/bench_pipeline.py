"""End-to-end foundation timings: `spinelabel demo`, and convert + evaluate + validate of
the real 512x512x133 LIDC chest CT (issue target: the demo in under a minute on 2 cores).

    .venv/bin/python benchmarks/bench_pipeline.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, ROOT, machine


def timed(argv) -> tuple[float, float]:
    """Run a CLI command in a fresh process; return (seconds, peak RSS MB of the child)."""
    code = ("import resource, sys; from SpineLabelLib.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    cmd = [sys.executable, "-c", code, *map(str, argv)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    peak_kb = float(proc.stderr.strip().splitlines()[-1].split()[1])
    return elapsed, peak_kb / 1024


def main():
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(("spinelabel demo", *timed(["demo", "--out", tmp / "demo"])))
        lidc = DATA / "lidc0001_chest"
        rows.append(("convert LIDC 512x512x133 (+TS mask, centroids, snapshot)", *timed(
            ["convert", "--ct", lidc / "ct.nii.gz", "--mask", lidc / "seg_totalseg_labels.nii.gz",
             "--mask-labels", "totalseg", "--id", "lidc0001", "--out", tmp / "ds"])))
        rows.append(("evaluate LIDC against itself", *timed(["evaluate", tmp / "ds", tmp / "ds"])))
        rows.append(("validate LIDC dataset", *timed(["validate", tmp / "ds"])))
    print("| command | wall time (s) | peak memory (MB) |")
    print("|---|---|---|")
    for name, seconds, mb in rows:
        print(f"| {name} | {seconds:.1f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
