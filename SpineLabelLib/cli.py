"""The ``spinelabel`` command: argument parsing and printing only.

Every subcommand calls one library function (usable the same way from Slicer's Python
console) and prints its result. Bad input ends with one clear line on stderr and exit
status 2; nothing is overwritten unless ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import SpineLabelError


def _cmd_demo(args) -> int:
    from .demo import run_demo
    from .verse.metrics import format_case_table

    print("Building a synthetic spine CT (T9..sacrum with a 13th thoracic vertebra) ...", flush=True)
    result = run_demo(args.out, seed=args.seed, overwrite=args.overwrite)
    case = result["case"]
    print(format_case_table(result["metrics"]))
    print()
    print(f"VerSe case written to {result['dataset']}:")
    for name in ("ct", "mask", "centroids", "snapshot"):
        print(f"  {name:10s} {getattr(case, name)}")
    print(f"  metrics    {result['report']}")
    print("Look at the snapshot PNG first; open the CT and mask in 3D Slicer or any NIfTI viewer.")
    return 0


def _cmd_convert(args) -> int:
    from .convert import convert_case

    case = convert_case(
        args.ct, args.out, args.id, mask=args.mask, centroids=args.centroids,
        mask_labels=args.mask_labels, snapshot=not args.no_snapshot, overwrite=args.overwrite,
    )
    for name in ("ct", "mask", "centroids", "snapshot"):
        path = getattr(case, name)
        if path is not None and Path(path).exists():
            print(f"{name:10s} {path}")
    return 0


def _cmd_evaluate(args) -> int:
    from .fileio import write_json_atomic
    from .verse.evaluate import evaluate_paths, metrics_json
    from .verse.metrics import format_case_table, format_summary_table

    results, summary, unmatched_gt, unmatched_pred = evaluate_paths(args.gt, args.pred, progress=True)
    if len(results) == 1:
        print(format_case_table(results[0]))
        print()
    print(format_summary_table(results, summary))
    for c in unmatched_gt:
        print(f"warning: ground-truth case {c.stem} has no prediction", file=sys.stderr)
    for c in unmatched_pred:
        print(f"warning: predicted case {c.stem} has no ground truth", file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, metrics_json(results, summary, unmatched_gt, unmatched_pred), overwrite=args.overwrite)
        print(f"metrics written to {args.json}")
    return 0


def _cmd_snapshot(args) -> int:
    from .convert import load_mask_for
    from .image import load_image
    from .verse.centroids_json import read_centroids
    from .verse.snapshot import save_snapshot

    ct = load_image(args.ct)
    mask = load_mask_for(ct, args.mask, args.mask_labels) if args.mask else None
    if args.centroids:
        centroids_ijk = read_centroids(args.centroids, ct)
    elif mask is not None:
        from .verse.body import body_centroids

        centroids_ijk = body_centroids(mask)
    else:
        centroids_ijk = None
    save_snapshot(args.out, ct, mask, centroids_ijk, overwrite=args.overwrite)
    print(f"snapshot written to {args.out}")
    return 0


def _cmd_validate(args) -> int:
    from .verse.validate import validate_dataset

    problems = validate_dataset(args.dataset, progress=True)
    errors = [p for p in problems if p.severity == "error"]
    by_path: dict[str, list] = {}
    for p in problems:
        by_path.setdefault(p.path, []).append(p)
    for path in sorted(by_path):
        print(path)
        for p in by_path[path]:
            print(f"  {p.severity}: {p.message}")
    print(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s) in {args.dataset}")
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinelabel", description="Vertebra labelling and VerSe dataset tools (SpineLabel)."
    )
    parser.add_argument("--version", action="version", version=f"spinelabel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="make a synthetic spine CT, write it as a VerSe case, evaluate it")
    p.add_argument("--out", default="spinelabel-demo", help="output folder (default: ./spinelabel-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("convert", help="CT (+ mask, centroids) -> VerSe-layout case")
    p.add_argument("--ct", required=True, help="CT file (NIfTI, NRRD, MHA) or DICOM series folder")
    p.add_argument("--mask", help="instance mask on the CT grid")
    p.add_argument("--mask-labels", choices=["verse", "totalseg"], default="verse",
                   help="label ids of --mask: VerSe values (default) or TotalSegmentator v2 ids")
    p.add_argument("--centroids", help="centroid JSON (default: body centroids computed from the mask)")
    p.add_argument("--id", required=True, help="subject id, e.g. verse004")
    p.add_argument("--out", required=True, help="dataset folder to write into")
    p.add_argument("--no-snapshot", action="store_true", help="do not render the snapshot PNG")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("evaluate", help="VerSe metrics of predicted cases against ground truth")
    p.add_argument("gt", help="ground-truth case folder or dataset folder")
    p.add_argument("pred", help="predicted case folder or dataset folder")
    p.add_argument("--json", help="write per-case and summary metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("snapshot", help="render a VerSe-style snapshot PNG")
    p.add_argument("ct", help="CT file or DICOM folder")
    p.add_argument("--mask")
    p.add_argument("--mask-labels", choices=["verse", "totalseg"], default="verse")
    p.add_argument("--centroids")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_snapshot)

    p = sub.add_parser("validate", help="check a VerSe dataset folder and report every problem per file")
    p.add_argument("dataset")
    p.set_defaults(func=_cmd_validate)

    for module_name in FEATURE_COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


#: Feature packages that add subcommands: each has ``register(subparsers)`` adding parsers
#: whose ``func(args) -> int`` calls the library and prints (argument parsing only there too).
FEATURE_COMMANDS = (
    "SpineLabelLib.auto.commands",
    "SpineLabelLib.interactive.commands",
    "SpineLabelLib.queue.commands",
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except SpineLabelError as exc:
        print(f"spinelabel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; files already written are complete, nothing half-written was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
