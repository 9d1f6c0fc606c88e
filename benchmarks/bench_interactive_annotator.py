"""Click-to-correct with the simulated annotator (issue targets: weight-free mean NoC@90 <= 3;
latency p95 <= 250 ms per click on lidc0001; zero voxels of other labels changed).

Start states: vertebrae of the synthetic suite and of the real cases in ../shared/data
(TotalSegmentator labels mapped to VerSe as reference), corrupted as automatic output
fails (merged with a neighbour, missing, leaking into a rib or disc, cut in half), and
("auto" set) the weight-free automatic engine's own output for each vertebra (its labels
matched to the reference first, the other vertebrae taken as corrected). Each run: the
annotator clicks the interior of the largest error region until Dice >= 0.90 and at least
5 clicks were made, or 20 clicks.

    .venv/bin/python benchmarks/bench_interactive_annotator.py [--methods geodesic,random_walker] [--quick]
        [--sets synthetic,real,auto]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import DATA, machine, peak_rss_mb
from SpineLabelLib import labels as L
from SpineLabelLib.image import load_image
from SpineLabelLib.interactive import open_session
from SpineLabelLib.interactive.annotator import (CORRUPTIONS, corrupt, match_to_reference, simulate,
                                                 start_from_proposal, summarize)
from SpineLabelLib.synthetic import make_phantom, phantom_suite

QUICK = ("default-T10-sacrum", "chest-0.7x2.5-LAS", "lumbar-IPL", "abdomen-3mm", "oblique-15", "fracture-L1",
         "osteoporosis", "screws-L4-L5", "noisy-low-dose", "thoracic-ASL")


def pick_labels(labelmap: np.ndarray, n: int = 2) -> list[int]:
    """Vertebrae with both neighbours present, spread over the field of view."""
    present = L.sort_anatomical(v for v in np.unique(labelmap) if L.is_vertebra(int(v)) and int(v) not in (L.SACRUM,))
    inner = present[1:-1] or present
    if len(inner) <= n:
        return inner
    idx = np.linspace(0, len(inner) - 1, n).round().astype(int)
    return [inner[i] for i in idx]


def corrupted_starts(ct, gt, lab_values):
    for lab in lab_values:
        for kind in CORRUPTIONS:
            yield lab, kind, corrupt(gt, ct, lab, kind)


def proposal_starts(ct, gt, lab_values):
    """Start states from the weight-free automatic engine's output (see the module doc)."""
    from SpineLabelLib.auto.base import get_engine

    matched = match_to_reference(get_engine("classical").segment(ct).mask.array, gt)
    for lab in lab_values:
        yield lab, "auto", start_from_proposal(gt, matched, lab)


def run_case(name, ct, gt, starts, method, runs, latencies=None):
    for lab, kind, start in starts:
        if start is None:
            continue
        session = open_session(ct, start, engine="classical", method=method)
        r = simulate(session, gt, lab, kind, max_clicks=20, stop_at=0.90)
        # keep clicking to 5 for Dice@5 when 0.90 came early
        while len(r.clicks) < 5 and r.dice[-1] < 0.999:
            more = simulate(session, gt, lab, kind, max_clicks=5 - len(r.clicks))
            if not more.clicks:
                break
            r.dice += more.dice[1:]
            r.clicks += more.clicks
            r.seconds += more.seconds
            r.other_labels_changed += more.other_labels_changed
        r.start = f"{name}:{L.name_of(lab)}:{kind}"
        runs.append(r)
        if latencies is not None:
            latencies.extend(r.seconds)
        print(f"  {r.start:55s} dice {' '.join(f'{d:.2f}' for d in r.dice[:6])} NoC@90 {r.noc(0.9):2d} "
              f"ms/click {1000 * np.mean(r.seconds) if r.seconds else 0:.0f} others {r.other_labels_changed}", flush=True)


def threshold_ceiling(ct, gt, lab) -> float:
    """How far an HU boundary can agree with the reference surface of ``lab``: the best
    Dice, over HU thresholds (0-380 in steps of 20), of the thresholded CT with enclosed
    holes filled, inside the reference dilated by one voxel (never on other labels).

    Why: every weight-free rule places the surface at some HU level; where a reference
    was drawn otherwise (TotalSegmentator's network at 1.5 mm, resampled to 0.7x0.7x2.5
    mm), even this oracle, which knows the reference to within a voxel, stays below the
    NoC@90 target's Dice, and the clicks must make up the rest voxel by voxel."""
    from scipy import ndimage

    from SpineLabelLib.interactive.annotator import dice

    g = gt == lab
    box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in ndimage.find_objects(g.astype(np.uint8))[0])
    g, hu, others = g[box], ct.array[box], (gt[box] != 0) & ~g[box]
    band = ndimage.binary_dilation(g) & ~others
    return max(dice(g, ndimage.binary_fill_holes(hu >= t) & band) for t in range(0, 400, 20))


def real_cases():
    out = []
    for folder in ("totalseg_example", "lidc0001_chest"):
        ct = load_image(DATA / folder / "ct.nii.gz")
        seg = load_image(DATA / folder / "seg_totalseg_labels.nii.gz")
        gt = L.totalseg_to_verse(seg.array)
        out.append((folder, ct, gt))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="geodesic")
    ap.add_argument("--quick", action="store_true", help="10 phantoms of the suite instead of 29")
    ap.add_argument("--labels-per-case", type=int, default=2)
    ap.add_argument("--real-only", action="store_true", help="skip the synthetic suite (latency reruns)")
    ap.add_argument("--sets", default="synthetic,real,auto",
                    help="synthetic: corrupted phantoms; real: corrupted real CTs; auto: the automatic engine's output "
                         "on the real CTs and the quick phantoms")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M')}")
    sets = set(args.sets.split(","))
    if args.real_only:
        sets -= {"synthetic", "auto"}
    specs = [s for s in phantom_suite() if (not args.quick or s.name in QUICK) and "synthetic" in sets]
    report = {}
    reals = real_cases() if sets & {"real", "auto"} else []
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        syn, real, auto, lat = [], [], [], []
        ceilings = {}
        print(f"== method {method}")
        for spec in specs:
            p = make_phantom(spec)
            gt = p.mask.array
            run_case(spec.name, p.ct, gt, corrupted_starts(p.ct, gt, pick_labels(gt, args.labels_per_case)), method, syn)
        if "real" in sets:
            for name, ct, gt in reals:
                ceil = {L.name_of(lab): round(threshold_ceiling(ct, gt, lab), 3) for lab in pick_labels(gt, 3)}
                print(f"  {name}: best Dice of an HU threshold within one voxel of the reference {ceil}")
                ceilings[name] = ceil
                run_case(name, ct, gt, corrupted_starts(ct, gt, pick_labels(gt, 3)), method, real,
                         lat if name == "lidc0001_chest" else None)
        if "auto" in sets:
            for name, ct, gt in reals:
                run_case(name, ct, gt, proposal_starts(ct, gt, pick_labels(gt, 6)), method, auto,
                         lat if name == "lidc0001_chest" else None)
            for spec in phantom_suite():
                if spec.name in QUICK:
                    p = make_phantom(spec)
                    gt = p.mask.array
                    run_case(spec.name, p.ct, gt, proposal_starts(p.ct, gt, pick_labels(gt, 2)), method, auto)
        s_all = summarize(syn + real + auto)
        lat_ms = 1000 * np.asarray(lat) if lat else np.zeros(1)
        report[method] = {"synthetic": summarize(syn), "real": summarize(real), "auto": summarize(auto), "all": s_all,
                          "lidc_latency_ms": {"n": len(lat), "p50": float(np.percentile(lat_ms, 50)),
                                              "p95": float(np.percentile(lat_ms, 95)), "max": float(lat_ms.max())},
                          "by_start": {k: summarize([r for r in syn + real + auto if r.start.endswith(":" + k)])
                                       for k in CORRUPTIONS + ("auto",)},
                          "threshold_ceiling": ceilings, "seconds": time.perf_counter() - t0}
        print(json.dumps(report[method], indent=1))
    print("| engine/method | set | runs | NoC@85 | NoC@90 | Dice@0 | Dice@1 | Dice@3 | Dice@5 | not at 0.90 after 20 | "
          "harmful clicks | other-label voxels changed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method, rep in report.items():
        for part in ("synthetic", "real", "auto", "all"):
            s = rep[part]
            if not s.get("n"):
                continue
            print(f"| classical/{method} | {part} | {s['n']} | {s['noc85']:.2f} | {s['noc90']:.2f} | {s['dice0']:.3f} | "
                  f"{s['dice1']:.3f} | {s['dice3']:.3f} | {s['dice5']:.3f} | {s['failed_noc90']} | "
                  f"{100 * s['harmful_clicks']:.1f} % | {s['other_labels_changed']} |")
    for method, rep in report.items():
        l = rep["lidc_latency_ms"]
        print(f"latency classical/{method} on lidc0001 (512x512x133): {l['n']} clicks, p50 {l['p50']:.0f} ms, "
              f"p95 {l['p95']:.0f} ms, max {l['max']:.0f} ms; run {rep['seconds']:.0f} s")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
