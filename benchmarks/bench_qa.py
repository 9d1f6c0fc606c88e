"""QA checks on the 29-phantom synthetic suite (coarse grids) with one injected error of
each kind per phantom: recall per kind (target >= 95%) and the flag rate on clean cases
(target <= 5% of vertebrae).

    .venv/bin/python benchmarks/bench_qa.py [--spacing 3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "Python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from qa_injection import coarse, score  # noqa: E402

from SpineLabelLib.synthetic import make_phantom, phantom_suite  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing", type=float, default=3.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    start = time.perf_counter()
    phantoms = [make_phantom(coarse(s, args.spacing)) for s in phantom_suite()]
    result = score(phantoms)
    result.update(machine=machine(), date=time.strftime("%Y-%m-%d %H:%M"), spacing=args.spacing,
                  phantoms=len(phantoms), seconds=time.perf_counter() - start)
    for kind, r in result["recall"].items():
        print(f"{kind:10s} recall {100 * r:5.1f}% of {result['injected'][kind]} injected")
    print(f"clean: {result['clean_vertebrae']} vertebrae, flagged {100 * result['clean_flag_rate']:.1f}% "
          f"(with the edge finding on cut vertebrae: {100 * result['clean_flag_rate_with_edge']:.1f}%)")
    print(f"missed: {result['missed']}; {result['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = all(r is None or r >= 0.95 for r in result["recall"].values()) and result["clean_flag_rate"] <= 0.05
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
