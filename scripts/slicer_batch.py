"""SpineLabel batch work inside 3D Slicer (no GUI), through the module's Logic.

    Slicer --no-main-window --python-script scripts/slicer_batch.py -- COMMAND ...

Commands:
  roundtrip DATASET OUT   load every case of a VerSe dataset into the Slicer scene
                          (CT volume, vertebra segments, centroid points) and write it
                          back out through Slicer's labelmap export into OUT
  validate DATASET        report every problem of a VerSe dataset
  evaluate GT PRED        VerSe metrics of PRED against GT (case or dataset folders)
  demo OUT                the synthetic demo case, end to end

Exit status: 0 on success, 1 on a failed check, 2 on bad input.
"""
import argparse
import sys
import traceback

import slicer


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
