"""The simulated annotator of interactive-segmentation papers, and corrupted start states.

Protocol: after each result, the next click goes to the interior point (largest distance,
in mm, to the region's border) of the largest error region of the target; positive if the
region was missed (false negative), negative if it leaked (false positive). Reported:
NoC@85 / NoC@90 (clicks needed to reach that Dice, capped at 20; 0 when the start state is
already there), the Dice after 1, 3 and 5 clicks, and the share of harmful clicks (Dice
fell by more than HARMFUL_DROP after them).

Start states (``corrupt``) mimic how automatic output fails: merged with a neighbour,
missing, leaking into a rib or a disc, cut in half. All arrays are (i, j, k) on the CT grid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import labels as L
from ..image import Image
from ..masks import nonzero_bbox
from .base import AIR_HU, Click, label_bbox

CORRUPTIONS = ("merged", "missing", "leak_rib", "leak_disc", "cut_half")
#: A click that lowers the target's Dice by more than this counts as harmful.
HARMFUL_DROP = 0.05


@dataclass
class AnnotatorRun:
    """Dice after each click (``dice[0]`` = start state) and what it cost."""

    label: int
    start: str
    dice: list[float]
    clicks: list[Click] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    other_labels_changed: int = 0
    error: str | None = None

    def noc(self, threshold: float, cap: int = 20) -> int:
        for n, d in enumerate(self.dice[: cap + 1]):
            if d >= threshold:
                return n
        return cap

    def dice_after(self, n: int) -> float:
        return self.dice[min(n, len(self.dice) - 1)]

    def harmful_clicks(self, drop: float = HARMFUL_DROP) -> int:
        """The clicks after which the target's Dice fell by more than ``drop``: a click the
        annotator must undo or fight, whatever the run reached in the end."""
        return int(sum(b < a - drop for a, b in zip(self.dice[:-1], self.dice[1:])))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if s == 0 else 2.0 * int(np.count_nonzero(a & b)) / s


def _roi(gt: np.ndarray, pred: np.ndarray, pad: int = 2):
    boxes = [bb for bb in (nonzero_bbox(gt), nonzero_bbox(pred)) if bb is not None]
    lo = np.maximum(np.min([b[0] for b in boxes], axis=0) - pad, 0)
    hi = np.minimum(np.max([b[1] for b in boxes], axis=0) + pad, gt.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def next_click(gt: np.ndarray, pred: np.ndarray, spacing, clickable: np.ndarray | None = None) -> Click | None:
    """The simulated annotator's next click, or None when there is no error left.

    gt, pred: bool (i, j, k) masks of the target; clickable: where a click is allowed
    (not on a locked vertebra, not on air)."""
    from scipy import ndimage

    roi = _roi(gt, pred)
    g, p = gt[roi], pred[roi]
    ok = clickable[roi] if clickable is not None else np.ones(g.shape, bool)
    best = None
    for positive, err in ((True, g & ~p & ok), (False, p & ~g & ok)):
        if not err.any():
            continue
        comp, n = ndimage.label(err)
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), positive, comp == k)
    if best is None:
        return None
    _, positive, region = best
    dist = ndimage.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    at = np.unravel_index(int(np.argmax(dist)), dist.shape)
    ijk = tuple(int(a + s.start) for a, s in zip(at, roi))
    return Click(ijk, positive)  # type: ignore[arg-type]


def simulate(session, gt_labelmap: np.ndarray, label: int, start: str = "", max_clicks: int = 20,
             stop_at: float | None = None) -> AnnotatorRun:
    """Run the annotator on ``session`` (already holding the start state) for ``label``.

    gt_labelmap: the reference labelmap (i, j, k) on the session's CT grid. Stops after
    ``max_clicks`` clicks, or once Dice >= ``stop_at`` when given. Counts the voxels of
    other labels that changed over the whole run (must stay 0)."""
    gt = gt_labelmap == label
    start_map = session.labelmap
    others_before = (start_map != label) & (start_map != 0)
    spacing = session.ct.spacing
    not_air = session.ct.array >= AIR_HU
    run = AnnotatorRun(label, start, [dice(gt, start_map == label)])
    current = start_map
    for _ in range(max_clicks):
        if stop_at is not None and run.dice[-1] >= stop_at:
            break
        clickable = not_air & ((current == 0) | (current == label))
        click = next_click(gt, current == label, spacing, clickable)
        if click is None:
            break
        t0 = time.perf_counter()
        current = session.refine(label=label, clicks=[(click.ijk, click.positive)])
        run.seconds.append(time.perf_counter() - t0)
        run.clicks.append(click)
        run.dice.append(dice(gt, current == label))
    run.other_labels_changed = int(np.count_nonzero(current[others_before] != start_map[others_before]))
    return run


# ----------------------------------------------------------------------------------
# start states
# ----------------------------------------------------------------------------------
def corrupt(labelmap: np.ndarray, ct: Image, label: int, kind: str) -> np.ndarray | None:
    """A copy of ``labelmap`` (i, j, k, on ct's grid) with ``label`` corrupted as ``kind``
    (one of CORRUPTIONS); None when that corruption does not apply (e.g. no neighbour,
    no rib)."""
    from scipy import ndimage

    out = labelmap.copy()
    target = labelmap == label
    if not target.any():
        return None
    present = [int(v) for v in np.unique(labelmap) if L.is_vertebra(int(v))]
    up, down = L.neighbours(label, present)
    spacing = ct.spacing
    bb = label_bbox(labelmap, label)
    pad = np.ceil(25.0 / spacing).astype(int)
    box = tuple(slice(int(max(a - p, 0)), int(min(b + p, s))) for a, b, p, s in zip(bb[0], bb[1], pad, labelmap.shape))
    lab, hu, tgt = labelmap[box], ct.array[box], target[box]
    if kind == "merged":
        nb = down if down is not None else up
        if nb is None:
            return None
        out[labelmap == nb] = label
        return out
    if kind == "missing":
        out[target] = 0
        return out
    dist_t = ndimage.distance_transform_edt(~tgt, sampling=spacing)
    if kind == "leak_rib":
        bone = (lab == 0) & (hu > 200) & (dist_t <= 25.0)
        comp, n = ndimage.label(bone)
        touching = np.unique(comp[(dist_t > 0) & (dist_t <= 2.5 * float(np.max(spacing))) & (comp > 0)])
        leak = np.isin(comp, touching[touching > 0])
        # ribs run laterally: keep components that reach beyond the vertebra's lateral extent
        if leak.sum() < 0.03 * tgt.sum():
            return None
    elif kind == "leak_disc":
        nbs = [v for v in (up, down) if v is not None]
        if not nbs:
            return None
        # the disc space: voxels lying between the target and a neighbour (the two distances
        # add up to at most 14 mm), disc-dense, on the target's side: the largest such piece
        leak = np.zeros(lab.shape, bool)
        for v in nbs:
            dist_n = ndimage.distance_transform_edt(lab != v, sampling=spacing)
            total = dist_t + dist_n
            between = (lab == 0) & (total <= 14.0) & (hu > 60) & (hu < 400) & (dist_t <= dist_n + 1.0)
            comp, n = ndimage.label(ndimage.binary_closing(between) & (lab == 0))
            if n:
                sizes = np.bincount(comp.ravel())
                sizes[0] = 0
                leak |= comp == int(np.argmax(sizes))  # the disc, not every pocket around the joints
        if leak.sum() < 0.03 * tgt.sum():
            return None
    elif kind == "cut_half":
        idx = np.argwhere(tgt)
        world = ct.index_to_world(idx + [s.start for s in box])
        axis = _spine_axis(labelmap, ct, label, up, down)
        t = world @ axis
        drop = idx[t > np.median(t)]
        sub = out[box]
        sub[tuple(drop.T)] = 0
        return out
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose one of {CORRUPTIONS}")
    sub = out[box]
    sub[leak] = label
    return out


def match_to_reference(proposal: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``proposal`` (an automatic engine's labelmap, (i, j, k)) with each of its labels
    renamed to the reference label it overlaps most (0 when it overlaps none): the label
    sequence an annotator fixes first (shift, insert, ...) before correcting voxels, so that
    click-to-correct is measured on the voxels alone."""
    proposal = np.asarray(proposal)
    if proposal.shape != reference.shape:
        raise ValueError(f"proposal {proposal.shape} and reference {reference.shape} are not on one grid")
    out = np.zeros_like(reference)
    for v in np.unique(proposal):
        if v == 0:
            continue
        m = proposal == v
        hits = np.bincount(reference[m].astype(np.int64).ravel())
        hits[0] = 0
        if hits.any():
            out[m] = int(np.argmax(hits))
    return out


def start_from_proposal(reference: np.ndarray, matched: np.ndarray, label: int) -> np.ndarray | None:
    """Start state for correcting ``label``: the reference labelmap with that vertebra
    replaced by the automatic engine's voxels for it (``matched``: its output after
    ``match_to_reference``); the other vertebrae are taken as already corrected (they are
    locked while this one is). None when the engine produced nothing for it."""
    mine = matched == label
    if not mine.any():
        return None
    out = reference.copy()
    out[reference == label] = 0
    out[mine & ((reference == 0) | (reference == label))] = label
    return out


def _spine_axis(labelmap, ct: Image, label, up, down) -> np.ndarray:
    """Unit world vector along the spine at ``label`` (towards the head), from neighbours."""
    centre = lambda v: ct.index_to_world(np.argwhere(labelmap == v).mean(axis=0))  # noqa: E731
    pts = [centre(v) for v in (up, label, down) if v is not None]
    if len(pts) >= 2:
        axis = pts[0] - pts[-1]
        if np.linalg.norm(axis) > 1e-6:
            return axis / np.linalg.norm(axis)
    return np.array([0.0, 0.0, 1.0])


def summarize(runs: list[AnnotatorRun]) -> dict:
    ok = [r for r in runs if r.error is None]
    if not ok:
        return {"n": 0}
    return {
        "n": len(ok),
        "noc85": float(np.mean([r.noc(0.85) for r in ok])),
        "noc90": float(np.mean([r.noc(0.90) for r in ok])),
        "dice0": float(np.mean([r.dice_after(0) for r in ok])),
        "dice1": float(np.mean([r.dice_after(1) for r in ok])),
        "dice3": float(np.mean([r.dice_after(3) for r in ok])),
        "dice5": float(np.mean([r.dice_after(5) for r in ok])),
        "other_labels_changed": int(sum(r.other_labels_changed for r in ok)),
        "failed_noc90": int(sum(r.noc(0.90) >= 20 for r in ok)),
        # share of all clicks that lowered Dice by more than HARMFUL_DROP ("every click counts")
        "harmful_clicks": float(sum(r.harmful_clicks() for r in ok) / max(1, sum(len(r.dice) - 1 for r in ok))),
    }
