"""Evaluate predicted VerSe cases against ground truth: pair cases, run the metrics.

``GT`` and ``PRED`` may each be one case folder or a dataset folder; cases are matched by
their stem (subject id plus any ``split-``/``dir-`` entities), falling back to the subject
id when the stems differ.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SpineLabelInputError


def pair_cases(gt_root: str | os.PathLike, pred_root: str | os.PathLike):
    """Return ``(pairs, unmatched_gt, unmatched_pred)``; pairs are (gt_case, pred_case)."""
    from .layout import discover_cases

    gt_cases = [c for c in discover_cases(gt_root) if c.mask is not None]
    pred_cases = [c for c in discover_cases(pred_root) if c.mask is not None]
    if not gt_cases:
        raise SpineLabelInputError(gt_root, "contains no VerSe case with a mask")
    if not pred_cases:
        raise SpineLabelInputError(pred_root, "contains no VerSe case with a mask")
    if len(gt_cases) == 1 and len(pred_cases) == 1:
        return [(gt_cases[0], pred_cases[0])], [], []  # two single cases: compare them whatever their names
    by_stem = {c.stem: c for c in pred_cases}
    by_subject: dict[str, list] = {}
    for c in pred_cases:
        by_subject.setdefault(c.subject, []).append(c)
    pairs, unmatched_gt, used = [], [], set()
    for g in gt_cases:
        p = by_stem.get(g.stem)
        if p is None and len(by_subject.get(g.subject, [])) == 1:
            p = by_subject[g.subject][0]
        if p is None or id(p) in used:
            unmatched_gt.append(g)
            continue
        used.add(id(p))
        pairs.append((g, p))
    unmatched_pred = [c for c in pred_cases if id(c) not in used]
    return pairs, unmatched_gt, unmatched_pred


def evaluate_paths(gt_root, pred_root, progress: bool = False):
    """Evaluate every matched case. Returns ``(case_metrics, summary, unmatched_gt, unmatched_pred)``.

    Centroids come from each case's JSON when present, else from its mask (body centres).
    """
    from .layout import load_case
    from .metrics import evaluate_case, summarize

    pairs, unmatched_gt, unmatched_pred = pair_cases(gt_root, pred_root)
    results = []
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="evaluate", unit="case")
    for gt_case, pred_case in iterator:
        gt = load_case(gt_case, require_mask=True)
        pred = load_case(pred_case, require_mask=True)
        results.append(
            evaluate_case(gt.mask, pred.mask, gt.centroids_ijk, pred.centroids_ijk, subject=gt_case.stem)
        )
    return results, summarize(results), unmatched_gt, unmatched_pred


def metrics_json(results, summary, unmatched_gt=(), unmatched_pred=()) -> dict:
    """The JSON written by ``spinelabel evaluate --json``."""
    return {
        "cases": {r.subject: r.to_dict() for r in results},
        "mean": summary["mean"],
        "median": summary["median"],
        "n_cases": summary["n_cases"],
        "unmatched_gt": [c.stem for c in unmatched_gt],
        "unmatched_pred": [c.stem for c in unmatched_pred],
    }
