"""``spinelabel segment`` and ``spinelabel train``: argument parsing and printing only."""
from __future__ import annotations

import json


def _engine_options(args) -> dict:
    opts = {}
    if args.checkpoint:
        opts["checkpoint"] = args.checkpoint
    if args.device:
        opts["device"] = args.device
    for item in args.option or []:
        key, _, value = item.partition("=")
        try:
            opts[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip()] = value
    return opts


def _cmd_segment(args) -> int:
    from .segment import segment

    items = segment(args.input, args.out, engine=args.engine, engine_options=_engine_options(args),
                    overwrite=args.overwrite, snapshot=not args.no_snapshot, progress=True)
    failed = 0
    for it in items:
        conf = "" if it.case_confidence is None else f" (lowest confidence {it.case_confidence:.2f})"
        labels = f": {', '.join(it.labels)}" if it.labels else ""
        msg = f" - {it.message}" if it.message else ""
        print(f"{it.status:8s} {it.subject}{labels}{conf}{msg}")
        failed += it.status == "failed"
    print(f"{len(items)} input(s): {sum(i.status == 'done' for i in items)} segmented, "
          f"{sum(i.status == 'skipped' for i in items)} skipped, {sum(i.status == 'empty' for i in items)} empty, "
          f"{failed} failed; cases in {args.out}")
    return 1 if failed else 0


def _cmd_train(args) -> int:
    from .train import train
    from tqdm import tqdm

    bar = tqdm(total=args.iterations, desc="train", unit="it")
    last = [0.0]

    def progress(frac, msg):
        bar.set_postfix_str(msg.split(" ", 2)[-1])
        done = int(round(frac * args.iterations))
        bar.update(max(0, done - int(last[0])))
        last[0] = done

    try:
        summary = train(args.dataset, args.out, iterations=args.iterations, spacing_mm=args.spacing,
                        patch=args.patch, batch_size=args.batch_size, lr=args.lr, val_every=args.val_every,
                        resume=args.resume, device=args.device, seed=args.seed, progress=progress)
    finally:
        bar.close()
    print(json.dumps(summary, indent=1))
    print(f"model written to {args.out} (model.json + model.pt + model.ts); log in {args.out}/log.jsonl")
    return 0


def register(subparsers) -> None:
    from .base import DEFAULT_ENGINE, engine_names

    p = subparsers.add_parser("segment", help="automatic vertebra segmentation + labelling -> VerSe cases")
    p.add_argument("input", help="CT file, DICOM series folder, or folder of cases / CT files")
    p.add_argument("--out", required=True, help="dataset folder to write the cases into")
    p.add_argument("--engine", default=DEFAULT_ENGINE,
                   help=f"engine: {', '.join(engine_names())} (default {DEFAULT_ENGINE}, weight-free)")
    p.add_argument("--checkpoint", help="MONAI model folder (model.json + model.pt / model.ts)")
    p.add_argument("--device", help="cpu or cuda (MONAI); cpu/gpu (TotalSegmentator)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="extra engine option (repeatable)")
    p.add_argument("--no-snapshot", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="redo cases that are already segmented")
    p.set_defaults(func=_cmd_segment)

    p = subparsers.add_parser("train", help="train a MONAI segmentation model from a VerSe dataset")
    p.add_argument("dataset", help="VerSe-layout dataset folder (cases with masks)")
    p.add_argument("--out", required=True, help="model folder to write (model.json, model.pt, model.ts, log.jsonl)")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--spacing", type=float, default=2.0, help="working voxel size in mm (default 2)")
    p.add_argument("--patch", type=int, default=64, help="cubic patch size in voxels (default 64)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/train_state.pt")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)
