"""``spinelabel refine``: scripted click corrections (argument parsing and printing only)."""
from __future__ import annotations

import re

from ..errors import SpineLabelInputError

_CLICK = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*(?:,\s*([+-]|pos|neg)\s*)?$")


def parse_click(text: str):
    """``"i,j,k"`` or ``"i,j,k,+"`` (positive) / ``"i,j,k,-"`` (negative) -> ((i, j, k), bool)."""
    m = _CLICK.match(text)
    if not m:
        raise SpineLabelInputError(None, f"--click {text!r}: expected i,j,k or i,j,k,+ or i,j,k,- (voxel indices on the CT grid)")
    sign = m.group(4) or "+"
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))), sign in ("+", "pos")


def parse_box(text: str):
    parts = text.split(",")
    if len(parts) != 6:
        raise SpineLabelInputError(None, f"--box {text!r}: expected i0,j0,k0,i1,j1,k1")
    try:
        v = [int(p) for p in parts]
    except ValueError:
        raise SpineLabelInputError(None, f"--box {text!r}: expected six integers") from None
    return tuple(v[:3]), tuple(v[3:])


def _cmd_refine(args) -> int:
    from .refine_cli import refine_case

    clicks = [parse_click(c) for c in args.click]
    box = parse_box(args.box) if args.box else None
    engine_options = {}
    if args.engine == "sam":
        engine_options = {"checkpoint": args.checkpoint, "model_type": args.model_type, "device": args.device}
    elif args.checkpoint:
        raise SpineLabelInputError(None, "--checkpoint is for --engine sam")
    out = refine_case(args.case, args.label, clicks, mask=args.mask, mask_labels=args.mask_labels, box=box,
                      unlock=args.unlock, engine=args.engine, out=args.out, overwrite=args.overwrite,
                      **engine_options)
    print(f"refined {out['label_name']} with {len(clicks)} click(s) ({args.engine}): "
          f"{out['changed']} voxel(s) changed in box {out['bbox']}; other labels unchanged")
    print(f"corrected mask written to {out['path']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "refine", help="correct one vertebra with clicks and write a new version of the mask",
        description="Correct one vertebra of a mask with clicks (voxel indices on the CT grid). Other "
                    "vertebrae are locked. The corrected mask is written as a new file; the input mask is never "
                    "overwritten.")
    p.add_argument("case", help="a VerSe case folder (CT + *_seg-vert_msk), or a CT file/DICOM folder with --mask")
    p.add_argument("--mask", help="the mask to correct when CASE is a CT (default: the case's vertebra mask)")
    p.add_argument("--mask-labels", choices=["verse", "totalseg"], default="verse")
    p.add_argument("--label", required=True, help="the vertebra to correct: VerSe value (20) or name (L1)")
    p.add_argument("--click", action="append", required=True, metavar="i,j,k[,+|-]",
                   help="a click at voxel (i, j, k); + adds (default), - removes; repeat for several")
    p.add_argument("--box", metavar="i0,j0,k0,i1,j1,k1", help="optional box around the vertebra (upper corner exclusive)")
    p.add_argument("--unlock", action="append", default=[], metavar="LABEL",
                   help="allow the vertebra to take voxels of this other label (locked by default); repeatable")
    p.add_argument("--engine", choices=["classical", "sam"], default="classical")
    p.add_argument("--checkpoint", help="SAM or MedSAM checkpoint (.pth) for --engine sam")
    p.add_argument("--model-type", choices=["vit_b", "vit_l", "vit_h"], help="insist on this SAM architecture")
    p.add_argument("--device", default="auto", help="SAM device: auto (CUDA if available), cpu, cuda, cuda:1")
    p.add_argument("--out", help="where to write the corrected mask (default: a new numbered version "
                                 "in a .versions folder beside the mask)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never the input mask)")
    p.set_defaults(func=_cmd_refine)
