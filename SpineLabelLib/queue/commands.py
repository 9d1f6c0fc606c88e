"""``spinelabel queue ...`` and ``spinelabel export``: argument parsing and printing only.

Every queue command takes the dataset folder first and ``--store URL`` (default: the
SQLite file in the dataset). Refusals (a case claimed by someone else, a newer store
schema, a read-only folder) raise SpineLabelError subclasses: the main CLI prints one
line and exits 2.
"""
from __future__ import annotations

import json
import sys
import time

from ..errors import SpineLabelError


def _queue(args):
    from .api import Queue

    return Queue(args.dataset, args.store)


def _progress(done, total, name):
    print(f"\r{done}/{total} {name}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _cmd_init(args) -> int:
    from .api import Queue

    queue, report = Queue.init(args.dataset, args.store, args.versions, user=args.user, progress=_progress)
    print(f"{len(report.added)} case(s) added ({len(report.imported)} with an existing mask imported as version 1), "
          f"{report.already} already in the queue; store {queue.store.url}")
    for case_id, problem in report.problems.items():
        print(f"flagged {case_id}: {problem}")
    return 0


def _cmd_auto(args) -> int:
    from .batch import run_auto

    options = {}
    for item in args.engine_option or []:
        if "=" not in item:
            raise SpineLabelError(f"--engine-option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        options[key] = value
    report = run_auto(_queue(args), args.engine, options, workers=args.workers, scheduler=args.scheduler,
                      progress=_progress, limit=args.limit)
    print(f"{len(report.done)} case(s) proposed by {args.engine} in {report.seconds:.1f} s, "
          f"{len(report.failed)} failed, {len(report.skipped)} skipped (no longer new)")
    for case_id, error in report.failed.items():
        print(f"failed {case_id}: {error}")
    return 1 if report.failed else 0


def _cmd_next(args) -> int:
    start = time.perf_counter()
    case = _queue(args).next(args.user, role=args.role, strategy=args.strategy, lease_s=args.lease)
    if case is None:
        print(f"no case to {args.role} for {args.user}", file=sys.stderr)
        return 1
    print(case.case_id)
    if args.verbose:
        print(f"status {case.status}, lease until {time.strftime('%H:%M:%S', time.localtime(case.claim_expires))}, "
              f"answered in {1000 * (time.perf_counter() - start):.0f} ms", file=sys.stderr)
    return 0


def _cmd_claim(args) -> int:
    case = _queue(args).claim(args.case, args.user, take_over=args.take_over, lease_s=args.lease)
    print(f"{case.case_id} claimed by {case.assignee}")
    return 0


def _cmd_renew(args) -> int:
    _queue(args).renew(args.case, args.user, lease_s=args.lease)
    print(f"{args.case}: lease renewed for {args.lease:.0f} s")
    return 0


def _cmd_release(args) -> int:
    _queue(args).release(args.case, args.user)
    print(f"{args.case}: released")
    return 0


def _cmd_submit(args) -> int:
    n = _queue(args).submit(args.case, args.user, args.mask, centroids=args.centroids, seconds=args.seconds,
                            clicks=args.clicks, final=not args.keep)
    print(f"{args.case}: saved as version {n}")
    return 0


def _cmd_edit(args) -> int:
    from .. import labels

    def lab(text):
        return labels.value_of(text)

    q = _queue(args)
    params = {}
    if args.op == "relabel":
        params = {"old": lab(args.label), "new": lab(args.to)}
    elif args.op == "shift":
        params = {"start": lab(args.label), "direction": args.direction}
    elif args.op in ("insert", "remove"):
        params = {"extra": lab(args.label), "side": args.side}
    elif args.op == "merge":
        params = {"keep": lab(args.label), "other": lab(args.to)}
    elif args.op == "delete":
        params = {"value": lab(args.label)}
    session = q.edit_session(args.case, args.user)
    session.apply(args.op, **params)
    n = q.save_session(args.case, args.user, session, final=not args.keep)
    print(f"{args.case}: {args.op} saved as version {n}; labels now {', '.join(map(labels.name_of, session.state.present()))}")
    return 0


def _cmd_approve(args) -> int:
    n = _queue(args).approve(args.case, args.user, seconds=args.seconds)
    print(f"{args.case}: version {n} approved; VerSe derivative written")
    return 0


def _cmd_flag(args) -> int:
    _queue(args).flag(args.case, args.user, args.comment)
    print(f"{args.case}: flagged")
    return 0


def _cmd_history(args) -> int:
    versions, events = _queue(args).history(args.case)
    for v in versions:
        print(f"version {v.n}: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(v.created))} {v.user} {v.source}"
              + (f" ({v.engine} {v.model_version})" if v.engine else "") + f"  {v.mask_file}")
    for e in events:
        extra = "".join(f" {k}={v}" for k, v in (("version", e.version), ("seconds", e.seconds and round(e.seconds, 1)),
                                                  ("clicks", e.clicks), ("engine", e.engine)) if v is not None)
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.at))} {e.user:12s} {e.kind:10s}"
              f"{extra} {json.dumps(e.detail, sort_keys=True)}")
    return 0


def _cmd_revert(args) -> int:
    n = _queue(args).revert(args.case, args.version, args.user)
    print(f"{args.case}: version {args.version} is current again (as version {n})")
    return 0


def _cmd_status(args) -> int:
    summary = _queue(args).status(days=args.days)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{summary['cases']} case(s): " + ", ".join(f"{k} {v}" for k, v in summary["states"].items()))
    t = summary["throughput_per_day"]
    print(f"last {t['days']:g} days, per day: {t['approved']:.1f} approved, {t['submitted']:.1f} submitted, "
          f"{t['automatic']:.1f} automatic")
    for user, e in sorted(summary["effort"].items()):
        print(f"  {user:14s} {e['seconds'] / 3600:.2f} h, {e['clicks']} clicks, {e['submit'] + e['edit']} saves, "
              f"{e['approve']} approvals, {e['flag']} flags")
    for case_id, who in summary["claimed"].items():
        print(f"  claimed: {case_id} by {who}")
    for case_id, comment in summary["flagged"].items():
        print(f"  flagged: {case_id}: {comment}")
    return 0


def _cmd_export(args) -> int:
    from .export import export_dataset

    report = export_dataset(_queue(args), args.out, approved_only=args.approved_only, overwrite=args.overwrite,
                            progress=_progress)
    print(f"{len(report.written)} case(s) exported to {args.out}, {len(report.left_out)} left out")
    for case_id, why in report.left_out.items():
        print(f"  left out {case_id}: {why}")
    return 0


def register(subparsers) -> None:
    from .model import DEFAULT_LEASE_S
    from ..auto.base import engine_names
    from .priorities import strategies

    def common(p):
        p.add_argument("dataset", help="VerSe dataset folder")
        p.add_argument("--store", help="store URL (default: sqlite file DATASET/.spinelabel/queue.sqlite; "
                                       "a team: postgresql://user@host/db)")

    q = subparsers.add_parser("queue", help="human-in-the-loop review queue of a dataset")
    qs = q.add_subparsers(dest="queue_command", required=True)

    p = qs.add_parser("init", help="create or extend the queue of a dataset")
    common(p)
    p.add_argument("--versions", help="folder for label version files (default DATASET/.spinelabel/versions)")
    p.add_argument("--user", default="init")
    p.set_defaults(func=_cmd_init)

    p = qs.add_parser("auto", help="run an automatic engine on every new case (resumable, parallel)")
    common(p)
    p.add_argument("--engine", required=True, help=f"engine name (registered: {', '.join(engine_names()) or 'none'})")
    p.add_argument("--engine-option", action="append", metavar="KEY=VALUE", help="engine option, e.g. folder=labels")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786): run on that cluster")
    p.add_argument("--limit", type=int, help="at most this many cases in this run")
    p.set_defaults(func=_cmd_auto)

    p = qs.add_parser("next", help="claim the next case and print its id")
    common(p)
    p.add_argument("--user", required=True)
    p.add_argument("--role", choices=["annotate", "review"], default="annotate")
    p.add_argument("--strategy", choices=strategies(), help="priority strategy (default: uncertain)")
    p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S, help="claim lease in seconds")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=_cmd_next)

    p = qs.add_parser("claim", help="claim one case (--take-over: take a stale claim)")
    common(p)
    p.add_argument("case")
    p.add_argument("--user", required=True)
    p.add_argument("--take-over", action="store_true")
    p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S)
    p.set_defaults(func=_cmd_claim)

    for name, func, helptext in (("renew", _cmd_renew, "extend your claim"), ("release", _cmd_release, "give a claim back")):
        p = qs.add_parser(name, help=helptext)
        common(p)
        p.add_argument("case")
        p.add_argument("--user", required=True)
        p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S)
        p.set_defaults(func=func)

    p = qs.add_parser("submit", help="save corrected labels as a new version")
    common(p)
    p.add_argument("case")
    p.add_argument("--mask", required=True, help="mask on the CT grid (VerSe values)")
    p.add_argument("--centroids", help="centroid JSON (default: body centroids from the mask)")
    p.add_argument("--user", required=True)
    p.add_argument("--seconds", type=float, help="time spent (default: since the claim)")
    p.add_argument("--clicks", type=int)
    p.add_argument("--keep", action="store_true", help="intermediate save: keep the case in progress and claimed")
    p.set_defaults(func=_cmd_submit)

    p = qs.add_parser("edit", help="one label-sequence edit on the current labels, saved as a new version")
    common(p)
    p.add_argument("case")
    p.add_argument("op", choices=["relabel", "shift", "insert", "remove", "merge", "delete"])
    p.add_argument("label", help="vertebra name (T12, L1, T13, ...)")
    p.add_argument("--to", help="relabel: new name; merge: the label merged into LABEL")
    p.add_argument("--direction", choices=["down", "up"], default="down")
    p.add_argument("--side", choices=["below", "above"], default="below")
    p.add_argument("--user", required=True)
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=_cmd_edit)

    p = qs.add_parser("approve", help="approve the current version and write the VerSe derivative")
    common(p)
    p.add_argument("case")
    p.add_argument("--user", required=True)
    p.add_argument("--seconds", type=float)
    p.set_defaults(func=_cmd_approve)

    p = qs.add_parser("flag", help="flag a case with a comment")
    common(p)
    p.add_argument("case")
    p.add_argument("--user", required=True)
    p.add_argument("--comment", required=True)
    p.set_defaults(func=_cmd_flag)

    p = qs.add_parser("history", help="versions and events of a case")
    common(p)
    p.add_argument("case")
    p.set_defaults(func=_cmd_history)

    p = qs.add_parser("revert", help="make an earlier version current again")
    common(p)
    p.add_argument("case")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--user", default="unknown")
    p.set_defaults(func=_cmd_revert)

    p = qs.add_parser("status", help="counts per state, throughput, effort per annotator")
    common(p)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = subparsers.add_parser("export", help="write a clean VerSe release from the queue's labels")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--approved-only", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)
