"""The concurrency and crash checks shared by the tests (small) and the benchmarks (full size)."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "queue_fixtures.py"


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    return env


def run_concurrency(dataset: Path, store: str | None, processes: int, cycles: int) -> dict:
    """``processes`` annotators x ``cycles`` claim/edit/submit cycles on one store. Returns
    double claims, lost events and lost versions (all must be 0) and timings."""
    from SpineLabelLib.queue import Queue

    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(WORKER), "cycle", str(dataset), store or "-", f"user{p}", str(cycles)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for p in range(processes)]
    reported = []
    for p, proc in enumerate(procs):
        out, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"worker {p} failed: {err[-2000:]}")
        reported.append([json.loads(line) for line in out.splitlines() if line.strip()])
    seconds = time.perf_counter() - start
    q = Queue(dataset, store)
    claims = Counter(r["claim"] for lines in reported for r in lines if "claim" in r)
    saved = [tuple(r["saved"]) for lines in reported for r in lines if "saved" in r]
    events = q.store.events()
    ev_claims = Counter(e.case_id for e in events if e.kind == "claim")
    ev_saves = {(e.case_id, e.version) for e in events if e.kind == "submit"}
    lost_versions = 0
    for case_id, n in saved:
        try:
            q.labels(case_id, n)
        except Exception:
            lost_versions += 1
    result = {
        "processes": processes, "cycles_each": cycles, "cycles_done": sum(claims.values()),
        "double_claims": sum(c - 1 for c in claims.values() if c > 1),
        "lost_events": sum(1 for k in saved if k not in ev_saves) + sum(max(0, claims[c] - ev_claims[c]) for c in claims),
        "lost_versions": lost_versions, "seconds": seconds,
    }
    q.close()
    return result


def run_crashes(dataset: Path, store: str | None, case_id: str, runs: int, seed: int = 0,
                max_delay_s: float = 2.0) -> dict:
    """Kill a saving/approving process with SIGKILL at random moments ``runs`` times; after
    each kill reopen the store and check that every reported version and approval is there."""
    from SpineLabelLib.image import load_image
    from SpineLabelLib.queue import Queue

    rng = random.Random(seed)
    problems = []
    killed_mid = 0
    for run in range(runs):
        proc = subprocess.Popen([sys.executable, str(WORKER), "crash", str(dataset), store or "-", case_id, "1000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        first = proc.stdout.readline()  # {"ready": true}: imports done, store open
        time.sleep(rng.uniform(0.0, max_delay_s))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if "ready" not in first:
            problems.append(f"run {run}: worker did not start: {first!r}")
        lines = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        killed_mid += bool(lines)
        try:
            q = Queue(dataset, store)  # the store must open cleanly
            if q.store.url.startswith("sqlite"):
                ok = q.store.conn.execute("PRAGMA integrity_check").fetchone()[0]
                if ok != "ok":
                    problems.append(f"run {run}: integrity_check {ok}")
            versions = {v.n for v in q.store.versions(case_id)}
            approvals = {e.version for e in q.store.events(case_id) if e.kind == "approve"}
            for line in lines:
                if "saved" in line:
                    if line["saved"] not in versions:
                        problems.append(f"run {run}: reported version {line['saved']} missing")
                    else:
                        q.labels(case_id, line["saved"])  # readable
                if "approved" in line and line["approved"] not in approvals:
                    problems.append(f"run {run}: reported approval of version {line['approved']} missing")
            case = q.case(case_id)
            if case.status == "approved":  # the derivative on disk is the approved version
                mask, _ = q.labels(case_id, case.approved_version)
                der = load_image(q.dataset / case.mask_path)
                if not (der.array == mask.array).all():
                    problems.append(f"run {run}: derivative differs from approved version {case.approved_version}")
            q.close()
        except Exception as exc:
            problems.append(f"run {run}: {type(exc).__name__}: {exc}")
    return {"runs": runs, "runs_with_reported_saves": killed_mid, "problems": problems}
