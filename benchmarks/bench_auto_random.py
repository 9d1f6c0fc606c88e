"""Weight-free engine on random phantoms: robustness beyond the fixed suite.

Each spec draws a field of view (3 to 20 levels, C1 to the sacrum), a spacing (0.7-3 mm,
isotropic or thick-slice), an orientation, and with some probability an oblique grid,
osteoporosis, scoliosis and noise; no anatomical variant, so every case has one right
answer. A case is right when every reference vertebra is identified and no label is
added; a wrong case is "flagged" when every wrongly identified vertebra has confidence
below 0.5, "confident" otherwise (the failure that costs a reviewer most).

    .venv/bin/python benchmarks/bench_auto_random.py [--seed 3] [--n 40]
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from _common import machine, peak_rss_mb
from SpineLabelLib.auto.base import get_engine
from SpineLabelLib.labels import name_of
from SpineLabelLib.synthetic import PhantomSpec, make_phantom
from SpineLabelLib.verse.metrics import evaluate_case

LEVELS = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)] + ["sacrum"]
SPACINGS = [(1.0, 1.0, 1.0), (1.5, 1.5, 1.5), (0.8, 0.8, 2.5), (0.7, 0.7, 3.0), (2.0, 2.0, 2.0), (3.0, 3.0, 3.0),
            (1.0, 1.0, 2.0)]
AXCODES = [("R", "A", "S"), ("L", "P", "S"), ("L", "A", "S"), ("P", "I", "R"), ("A", "S", "L"), ("I", "P", "L"),
           ("R", "P", "I")]


def random_spec(rng: random.Random, seed: int) -> PhantomSpec:
    a = rng.randrange(0, len(LEVELS) - 4)
    b = rng.randrange(a + 3, min(len(LEVELS), a + 20))
    kw = dict(first=LEVELS[a], last=LEVELS[b], spacing=rng.choice(SPACINGS), axcodes=rng.choice(AXCODES), seed=seed)
    if rng.random() < 0.3:
        kw["oblique_deg"] = rng.choice([10.0, 20.0])
    if rng.random() < 0.3:
        kw["osteoporosis"] = True
    if rng.random() < 0.2:
        kw["scoliosis_deg"] = rng.choice([15.0, 30.0])
    if rng.random() < 0.3:
        kw["noise_hu"] = rng.choice([40.0, 60.0])
    return PhantomSpec(**kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    print(f"machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M')}; seed {args.seed}, {args.n} specs")
    rng = random.Random(args.seed)
    eng = get_engine("classical")
    counts = {"right": 0, "wrong, flagged": 0, "wrong, confident": 0}
    for k in range(args.n):
        spec = random_spec(rng, 1000 + 100 * args.seed + k)
        ph = make_phantom(spec)
        res = eng.segment(ph.ct)
        m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
        extra = sorted(set(res.labels) - set(np.unique(ph.mask.array).tolist()))
        wrong = [vm.label for vm in m.per_vertebra if vm.in_pred and vm.identified is False]
        confident = [name_of(v) for v in wrong if res.confidence.get(v, 0.0) >= 0.5]
        kind = "right" if m.id_rate == 1.0 and not extra else "wrong, confident" if confident else "wrong, flagged"
        counts[kind] += 1
        short = {k: v for k, v in vars(spec).items() if v != getattr(PhantomSpec(), k) or k in ("first", "last")}
        print(f"{kind:16s} id.rate {m.id_rate:.2f} Dice {m.dice_mean:.2f} added {[name_of(v) for v in extra]} "
              f"wrong at >= 0.5 {confident} | {short}", flush=True)
    print("; ".join(f"{k} {v}/{args.n}" for k, v in counts.items()))
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
