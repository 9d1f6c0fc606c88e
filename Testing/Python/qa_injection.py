"""Inject one labelling error of each QA kind into a phantom's ground-truth mask, and
score the QA checks (recall on injected errors, flag rate on clean cases). Shared by
test_qa.py (a few phantoms) and benchmarks/bench_qa.py (the whole suite)."""
from __future__ import annotations

import dataclasses

import numpy as np

from SpineLabelLib import labels
from SpineLabelLib.image import Image
from SpineLabelLib.qa import check_labels

KINDS = ("duplicate", "fragments", "gap", "order", "size", "spacing", "ribs", "edge")


def _interior(mask: Image) -> list[int]:
    """Mobile vertebrae (not C1/C2/sacrum/coccyx) not touching the grid edge, head to feet."""
    arr = mask.array
    out = []
    for v in labels.sort_anatomical(x for x in np.unique(arr).tolist() if labels.is_vertebra(x)):
        if v in (1, 2, labels.SACRUM, labels.COCCYX):
            continue
        idx = np.argwhere(arr == v)
        if np.any(idx == 0) or np.any(idx == np.array(arr.shape) - 1):
            continue
        out.append(v)
    return out


def _remapped(arr, mapping):
    lut = np.arange(256, dtype=np.uint8)
    for a, b in mapping.items():
        lut[a] = b
    return lut[arr]


def inject(kind: str, phantom) -> tuple[Image, Image, set[int]] | None:
    """(ct, broken mask, labels that must carry a ``kind`` flag - any one suffices) or None
    when the phantom cannot host that error (e.g. no rib-bearing T12 above an L1)."""
    ct, mask = phantom.ct, phantom.mask
    arr = mask.array.copy()
    inner = _interior(mask)
    if len(inner) < 5 and kind != "ribs":
        return None
    i = len(inner) // 2
    v = inner[i]
    if kind == "duplicate":  # the vertebra two levels down also gets this label
        arr[arr == inner[i + 2]] = v
        return ct, mask.with_array(arr), {v}
    if kind == "gap":  # a vertebra's label is lost
        arr[arr == v] = 0
        return ct, mask.with_array(arr), {inner[i - 1], inner[i + 1]}
    if kind == "order":  # two labels swapped
        a, b = v, inner[i + 2]
        return ct, mask.with_array(_remapped(arr, {a: b, b: a})), {a, b}
    if kind == "size":  # the caudal half of a vertebra left unlabelled
        idx = np.argwhere(arr == v)
        z = mask.index_to_world(idx)[:, 2]
        low = idx[z < np.median(z)]
        arr[tuple(low.T)] = 0
        return ct, mask.with_array(arr), {v}
    if kind == "spacing":  # a vertebra missed, the labels above closed the hole
        arr[arr == v] = 0
        above = inner[:i]
        arr = _remapped(arr, {above[n]: (above[n + 1] if n + 1 < len(above) else v) for n in range(len(above))})
        return ct, mask.with_array(arr), {v, inner[i + 1]}
    if kind == "fragments":  # a blob inside the next vertebra's body gets this label
        w = inner[i + 1]
        c = np.asarray(phantom.centroids_ijk[w])
        idx = np.argwhere(arr == w)
        d = np.linalg.norm(mask.index_to_world(idx) - mask.index_to_world(c), axis=1)
        arr[tuple(idx[d < 5.0].T)] = v
        return ct, mask.with_array(arr), {v}
    if kind == "edge":  # the field of view ends in the middle of a vertebra
        axis = int(np.argmax(np.abs(mask.affine[2, :3])))
        c = int(round(float(np.asarray(phantom.centroids_ijk.get(v, np.argwhere(arr == v).mean(0)))[axis])))
        sl = [slice(None)] * 3
        sl[axis] = slice(c, None)
        affine = mask.affine.copy()
        affine[:3, 3] += c * affine[:3, axis]
        return (Image(ct.array[tuple(sl)], affine), Image(arr[tuple(sl)], affine), {v})
    if kind == "ribs":  # the lowest rib-bearing vertebra (T12/T13) called L1, lumbar shifted down
        present = set(np.unique(arr).tolist())
        top = labels.T13 if labels.T13 in present else 19
        if top not in phantom.ribs_ijk or 20 not in inner or top not in inner or labels.L6 in present:
            return None
        chain = [top] + [x for x in (20, 21, 22, 23, 24) if x in present]
        new = [20, 21, 22, 23, 24, labels.L6][: len(chain)]
        return ct, mask.with_array(_remapped(arr, dict(zip(chain, new)))), {20}
    raise ValueError(kind)


def coarse(spec, spacing: float):
    """The spec on a grid no finer than ``spacing`` mm (cervical-only specs: 1.5 mm)."""
    fine = spec.last.startswith("C") or spec.name.startswith("lumbar-0.5")
    s = 1.5 if fine else spacing
    return dataclasses.replace(spec, spacing=tuple(max(float(x), s) for x in np.broadcast_to(spec.spacing, (3,))))


def score(phantoms) -> dict:
    """Recall per kind and the clean-case flag rate over ``phantoms``."""
    hits = {k: 0 for k in KINDS}
    tried = {k: 0 for k in KINDS}
    missed = []
    clean_vertebrae = clean_flagged = clean_flagged_edge = 0
    for p in phantoms:
        flags = check_labels(p.mask, None, p.ct)
        present = [v for v in np.unique(p.mask.array).tolist() if labels.is_vertebra(v)]
        clean_vertebrae += len(present)
        clean_flagged += len({f.label for f in flags if f.kind != "edge"})
        clean_flagged_edge += len({f.label for f in flags})
        for kind in KINDS:
            case = inject(kind, p)
            if case is None:
                continue
            ct, broken, expected = case
            tried[kind] += 1
            got = {f.label for f in check_labels(broken, None, ct) if f.kind == kind}
            if got & expected:
                hits[kind] += 1
            else:
                missed.append((p.spec.name, kind))
    return {
        "recall": {k: (hits[k] / tried[k] if tried[k] else None) for k in KINDS},
        "injected": tried,
        "missed": missed,
        "clean_vertebrae": clean_vertebrae,
        "clean_flag_rate": clean_flagged / max(clean_vertebrae, 1),
        "clean_flag_rate_with_edge": clean_flagged_edge / max(clean_vertebrae, 1),
    }
