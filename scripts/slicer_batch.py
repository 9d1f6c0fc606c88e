"""SpineLabel batch work inside 3D Slicer (no GUI), through the module's Logic.

    Slicer --no-main-window --python-script scripts/slicer_batch.py -- COMMAND ...

Commands:
  roundtrip DATASET OUT   load every case of a VerSe dataset into the Slicer scene
                          (CT volume, vertebra segments, centroid points) and write it
                          back out through Slicer's labelmap export into OUT
  validate DATASET        report every problem of a VerSe dataset
  evaluate GT PRED        VerSe metrics of PRED against GT (case or dataset folders)
  demo OUT                the synthetic demo case, end to end
  segment INPUT OUT       automatic segmentation + labelling of a CT file, DICOM folder or
                          folder of cases into VerSe cases (--engine, --path, --option)
  queue-init DATASET      create (or extend) the review queue of a dataset
  queue-auto DATASET      engine proposals for every new case of the queue (resumable)
  queue-status DATASET    cases per state and active claims
  export DATASET OUT      a clean VerSe release from the queue's labels

Queue commands take --store URL (default: the SQLite file inside the dataset; a team:
postgresql://user@host/db). Engines needing a path take it as --path (monai: the
checkpoint; reference: the folder of labels).

Exit status: 0 on success, 1 on a failed check or case, 2 on bad input.
"""
import argparse
import sys
import traceback

import slicer


def _progress(done, total, name):
    print(f"{done}/{total} {name}", flush=True)


def _engine_arguments(p):
    p.add_argument("--engine", default="classical", help="automatic engine (default classical, weight-free)")
    p.add_argument("--path", help="monai: checkpoint folder or model file; reference: folder of labels")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="further engine option (repeatable)")


def _engine_options(args):
    from SpineLabelLib.slicer.review import engine_options, parse_options

    options = engine_options(args.engine, args.path)
    options.update(parse_options(args.option))
    return options


def main(argv):
    parser = argparse.ArgumentParser(prog="slicer_batch.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("roundtrip")
    p.add_argument("dataset")
    p.add_argument("out")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-snapshot", action="store_true")
    sub.add_parser("validate").add_argument("dataset")
    p = sub.add_parser("evaluate")
    p.add_argument("gt")
    p.add_argument("pred")
    sub.add_parser("demo").add_argument("out")
    p = sub.add_parser("segment")
    p.add_argument("input")
    p.add_argument("out")
    _engine_arguments(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-snapshot", action="store_true")
    for name in ("queue-init", "queue-auto", "queue-status", "export"):
        p = sub.add_parser(name)
        p.add_argument("dataset")
        p.add_argument("--store", help="store URL (default: DATASET/.spinelabel/queue.sqlite)")
        if name == "queue-init":
            p.add_argument("--user", default="init")
        if name == "queue-auto":
            _engine_arguments(p)
            p.add_argument("--workers", type=int, default=1)
            p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786)")
            p.add_argument("--limit", type=int)
        if name == "export":
            p.add_argument("out")
            p.add_argument("--approved-only", action="store_true")
            p.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    import SpineLabel

    logic = SpineLabel.SpineLabelLogic()
    if args.command == "roundtrip":
        for case in logic.discoverCases(args.dataset):
            slicer.mrmlScene.Clear()
            volume, segmentation, centroids = logic.loadCase(case)
            if segmentation is None:
                print(f"{case.name}: no mask, skipped")
                continue
            written = logic.exportCase(volume, segmentation, centroids, args.out, case.subject,
                                       snapshot=not args.no_snapshot, overwrite=args.overwrite)
            print(f"{case.name} -> {written.mask}")
        return 0
    if args.command == "validate":
        report = logic.validateDataset(args.dataset)
        print(report)
        return 0 if report.splitlines()[-1].startswith("0 error(s)") else 1
    if args.command == "evaluate":
        print(logic.evaluateReport(args.gt, args.pred))
        return 0
    if args.command == "demo":
        result = logic.demo(args.out)
        print(f"id.rate {result['metrics'].id_rate:.3f}, Dice {result['metrics'].dice_mean:.3f}: {result['report']}")
        return 0
    if args.command == "segment":
        options = _engine_options(args)
        logic.checkEngine(args.engine, options, install=False)  # no dialogs in batch
        items = logic.segmentFolder(args.input, args.out, args.engine, options, overwrite=args.overwrite,
                                    snapshot=not args.no_snapshot)
        for it in items:
            conf = "" if it.case_confidence is None else f" (lowest confidence {it.case_confidence:.2f})"
            print(f"{it.status:8s} {it.subject}: {', '.join(it.labels) or '-'}{conf}{' - ' + it.message if it.message else ''}")
        return 1 if any(it.status == "failed" for it in items) else 0
    if args.command == "queue-init":
        print(logic.initQueue(args.dataset, args.store, args.user, _progress))
        return 0
    if args.command == "queue-auto":
        options = _engine_options(args)
        logic.checkEngine(args.engine, options, install=False)  # no dialogs in batch
        report = logic.runQueueAuto(args.dataset, args.store, args.engine, options, _progress, workers=args.workers,
                                    scheduler=args.scheduler, limit=args.limit)
        print(logic.autoReportText(report, args.engine))
        return 1 if report.failed else 0
    if args.command == "queue-status":
        queue = logic.openQueue(args.dataset, args.store)
        try:
            rows, summary = logic.queueRows(queue)
        finally:
            queue.close()
        for row in rows:
            print("  ".join(row["cells"]))
        print(summary)
        return 0
    if args.command == "export":
        from SpineLabelLib.slicer.review import export_report_text

        report = logic.exportQueue(args.dataset, args.store, args.out, approvedOnly=args.approved_only,
                                   overwrite=args.overwrite, progress=_progress)
        print(export_report_text(report, args.out))
        return 0
    return 2


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except SystemExit as exc:  # argparse
        status = exc.code if isinstance(exc.code, int) else 2
    except Exception:
        traceback.print_exc()
        status = 2
    slicer.util.exit(status)
