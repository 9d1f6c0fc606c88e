"""Queue targets: 8 processes x 100 claim/edit/submit cycles on SQLite and PostgreSQL
(zero double claims, lost events, lost versions); 50 SIGKILLs during save and approve;
``queue next`` latency with 10 000 cases in the store.

    .venv/bin/python benchmarks/bench_queue_targets.py [--quick] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "Python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from queue_checks import run_concurrency, run_crashes  # noqa: E402
from queue_fixtures import PostgresServer, make_tiny_dataset  # noqa: E402

from SpineLabelLib.queue import Queue  # noqa: E402
from SpineLabelLib.queue.model import CaseRecord  # noqa: E402


def next_latency(root: Path, store: str | None, n_cases: int, calls: int = 50) -> dict:
    dataset = make_tiny_dataset(root, 1)
    q, _ = Queue.init(dataset, store)
    rng = __import__("random").Random(0)
    records = [CaseRecord(f"bulk{i:06d}", f"bulk{i}", "rawdata/x.nii.gz", status="automatic",
                          min_confidence=rng.random(), qa_flags=rng.randint(0, 5)) for i in range(n_cases)]
    q.store.add_cases(records, "bench")
    times = []
    for i in range(calls):
        t = time.perf_counter()
        case = q.next(f"annotator{i}")
        times.append(time.perf_counter() - t)
        assert case is not None
    times.sort()
    return {"cases": n_cases + 1, "calls": calls, "median_ms": 1000 * times[len(times) // 2],
            "p95_ms": 1000 * times[int(0.95 * len(times)) - 1], "max_ms": 1000 * times[-1]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--json")
    args = ap.parse_args()
    procs, cycles, kills, n_cases = (4, 10, 5, 1000) if args.quick else (8, 100, 50, 10000)
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    server = PostgresServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for backend in ("sqlite", "postgresql"):
                url = None if backend == "sqlite" else server.new_database()
                ds = make_tiny_dataset(tmp / f"conc-{backend}", procs * cycles)
                Queue.init(ds, url)[0].close()
                r = run_concurrency(ds, url, procs, cycles)
                out[f"concurrency_{backend}"] = r
                print(f"{backend}: {r['processes']} processes x {r['cycles_each']} cycles: {r['cycles_done']} done in "
                      f"{r['seconds']:.1f} s; double claims {r['double_claims']}, lost events {r['lost_events']}, "
                      f"lost versions {r['lost_versions']}", flush=True)
                url = None if backend == "sqlite" else server.new_database()
                ds = make_tiny_dataset(tmp / f"crash-{backend}", 1)
                Queue.init(ds, url)[0].close()
                r = run_crashes(ds, url, "sub-t00000", kills, seed=7)
                out[f"crash_{backend}"] = r
                print(f"{backend}: {r['runs']} SIGKILLs ({r['runs_with_reported_saves']} after reported saves): "
                      f"{len(r['problems'])} problem(s) {r['problems'][:3]}", flush=True)
                url = None if backend == "sqlite" else server.new_database()
                r = next_latency(tmp / f"next-{backend}", url, n_cases)
                out[f"next_{backend}"] = r
                print(f"{backend}: queue next with {r['cases']} cases: median {r['median_ms']:.1f} ms, "
                      f"p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms", flush=True)
    finally:
        server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    bad = any(out[f"concurrency_{b}"][k] for b in ("sqlite", "postgresql")
              for k in ("double_claims", "lost_events", "lost_versions"))
    bad |= any(out[f"crash_{b}"]["problems"] for b in ("sqlite", "postgresql"))
    bad |= any(out[f"next_{b}"]["p95_ms"] > 50 for b in ("sqlite", "postgresql"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
