"""Labelling from anatomical anchors, reconciled into one consistent sequence.

Every hypothesis is a contiguous run of the anatomical sequence C1..C7, T1..T12, [T13],
L1..L5, [L6], sacrum (with or without T13, with or without L6, with or without a missing
12th rib pair), assigned to the detected segments head to feet. Each hypothesis is
scored by the evidence:

* the sacrum anchor (the caudal-most segment, no disc below, iliac wings beside it);
* rib-bearing segments must be thoracic (T1-T12, T13), the others not (a missing 12th rib
  leaves T12 rib-less); rib evidence beside the pelvis is ignored (the iliac crest);
* the skull base above the top segment makes it C1;
* the disc-to-disc pitch of complete segments against typical adult values by level
  (a weak cue, scaled to the patient);
* priors: T13 and L6 each in ~6% of spines, a missing 12th rib in ~4%.

The posterior over hypotheses gives each vertebra's confidence: the probability mass of
the hypotheses that give it the same label. A view without any anchor keeps a spread
posterior, so its labels come out with low confidence ("labelled from sizes: a guess").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import labels as L
from .anchors import SegmentFeatures

#: Typical adult vertebra pitch (body height + disc below, mm) by level name.
PITCH_MM = {
    "C1": 14.0, "C2": 22.0, "C3": 19.0, "C4": 19.0, "C5": 19.0, "C6": 19.5, "C7": 20.0,
    "T1": 20.0, "T2": 21.5, "T3": 22.0, "T4": 23.0, "T5": 23.5, "T6": 24.5, "T7": 25.0, "T8": 25.5,
    "T9": 26.5, "T10": 28.0, "T11": 29.5, "T12": 31.0, "T13": 32.5,
    "L1": 34.0, "L2": 36.0, "L3": 38.0, "L4": 38.0, "L5": 36.0, "L6": 34.0, "sacrum": 40.0,
}
PRIOR_T13, PRIOR_L6, PRIOR_MISSING_RIB12 = 0.06, 0.06, 0.04
SKULL_MM2 = 2500.0
PITCH_SIGMA = 0.14
RIB_WEIGHT = 1.6


class LabellingError(Exception):
    """No label sequence fits the detected segments."""


@dataclass
class Hypothesis:
    names: list[str]
    t13: bool
    l6: bool
    missing_rib12: bool
    score: float = 0.0


@dataclass
class Labelling:
    values: list[int]  # VerSe value per segment (head to feet)
    confidence: list[float]
    reasons: list[list[str]]
    notes: list[str]


def _sequence(t13: bool, l6: bool) -> list[str]:
    names = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)]
    names += ["T13"] if t13 else []
    names += [f"L{n}" for n in range(1, 6)] + (["L6"] if l6 else []) + ["sacrum"]
    return names


def _is_thoracic(name: str) -> bool:
    return name.startswith("T")


def _sacrum_probability(feats: list[SegmentFeatures], last_has_caudal_disc: bool) -> float:
    f = feats[-1]
    if last_has_caudal_disc:
        return 0.02
    if f.ilium >= 0.3 and f.length_mm >= 25.0:
        return 0.95
    if f.ilium >= 0.3:
        return 0.6
    return 0.05


def label_segments(feats: list[SegmentFeatures], last_has_caudal_disc: bool, skull_mm2: float) -> Labelling:
    n = len(feats)
    p_sacrum = _sacrum_probability(feats, last_has_caudal_disc)
    skull = skull_mm2 >= SKULL_MM2
    hyps: list[Hypothesis] = []
    for t13 in (False, True):
        for l6 in (False, True):
            for mr in (False, True):
                seq = _sequence(t13, l6)
                for k0 in range(0, len(seq) - n + 1):
                    names = seq[k0:k0 + n]
                    if mr and "T12" not in names:
                        continue  # a missing rib out of view changes nothing: counted once
                    h = Hypothesis(names, t13, l6, mr)
                    h.score = _score(h, feats, p_sacrum, skull)
                    hyps.append(h)
    if not hyps:
        raise LabellingError(f"{n} segments found along the spine, more than any spine has: disc detection "
                             "over-segmented; no consistent labelling")
    scores = np.array([h.score for h in hyps])
    post = np.exp(scores - scores.max())
    post /= post.sum()
    best = hyps[int(np.argmax(scores))]
    values, conf, reasons = [], [], []
    for i in range(n):
        mass: dict[str, float] = {}
        for h, p in zip(hyps, post):
            mass[h.names[i]] = mass.get(h.names[i], 0.0) + float(p)
        name = best.names[i]
        values.append(L.value_of(name))
        conf.append(mass[name])
        alt = sorted(((m, k) for k, m in mass.items() if k != name), reverse=True)
        why = [f"label probability {mass[name]:.2f}" + (f" (next: {alt[0][1]} {alt[0][0]:.2f})" if alt and alt[0][0] > 0.01 else "")]
        reasons.append(why)
    notes = _explain(best, feats, p_sacrum, skull, reasons)
    return Labelling(values, conf, reasons, notes)


def _score(h: Hypothesis, feats: list[SegmentFeatures], p_sacrum: float, skull: bool) -> float:
    sc = 0.0
    sc += math.log(PRIOR_T13) if h.t13 else math.log(1 - PRIOR_T13)
    sc += math.log(PRIOR_L6) if h.l6 else math.log(1 - PRIOR_L6)
    if "T12" in h.names:
        sc += math.log(PRIOR_MISSING_RIB12) if h.missing_rib12 else math.log(1 - PRIOR_MISSING_RIB12)
    last = h.names[-1]
    sc += math.log(p_sacrum) if last == "sacrum" else math.log(1 - p_sacrum)
    if skull:
        sc += 0.0 if h.names[0] == "C1" else math.log(0.03)
    near_pelvis = feats[-1].ilium >= 0.3
    for i, (name, f) in enumerate(zip(h.names, feats)):
        if name == "sacrum":
            continue
        if f.ilium >= 0.3 or (near_pelvis and i >= len(feats) - 3 and name[0] == "L"):
            continue  # iliac crest beside L4-L6 looks like ribs
        if f.at_fov_edge and f.length_mm < 15.0:
            continue
        expect = _is_thoracic(name) and not (name == "T12" and h.missing_rib12)
        p = f.rib if expect else 1.0 - f.rib
        w = RIB_WEIGHT * (0.5 if name in ("C7", "L1", "T1") else 1.0) * (0.6 if f.at_fov_edge else 1.0)
        sc += w * math.log(0.06 + 0.88 * p)
    # pitch: fit one patient scale, penalise deviations
    obs = [(f.pitch_mm, PITCH_MM[nm]) for nm, f in zip(h.names, feats) if f.pitch_mm and nm != "sacrum"]
    if obs:
        r = np.log([o / e for o, e in obs])
        scale = float(np.clip(np.median(r), -0.25, 0.25))
        sc += -0.5 * float(np.sum(((r - scale) / PITCH_SIGMA) ** 2)) - 0.5 * (scale / 0.12) ** 2
    return sc


def _explain(best: Hypothesis, feats, p_sacrum, skull, reasons) -> list[str]:
    names = best.names
    notes = []
    anchors = []
    if names[-1] == "sacrum" and p_sacrum > 0.5:
        anchors.append("sacrum")
        for r in reasons:
            r.append("labelled by counting up from the sacrum")
    ribbed = [nm for nm, f in zip(names, feats) if f.rib >= 0.5 and nm != "sacrum" and f.ilium < 0.3]
    if ribbed:
        anchors.append("ribs")
        notes.append(f"{len(ribbed)} rib-bearing vertebrae in view ({ribbed[0]}..{ribbed[-1]})")
        for nm, r, f in zip(names, reasons, feats):
            if nm == "T1" and f.rib >= 0.5:
                r.append("first rib-bearing vertebra: T1")
            if nm in ("T12", "T13") and f.rib >= 0.5 and nm == ribbed[-1]:
                r.append(f"last rib-bearing vertebra: {nm}")
    if best.t13:
        notes.append("13 rib-bearing vertebrae: T13 assigned")
        for nm, r in zip(names, reasons):
            if nm == "T13":
                r.append("13 rib-bearing vertebrae: T13 assigned")
    if best.l6:
        notes.append("six lumbar vertebrae above the sacrum: L6 assigned")
        for nm, r in zip(names, reasons):
            if nm == "L6":
                r.append("six non-rib-bearing vertebrae above the sacrum: L6 assigned")
    if best.missing_rib12:
        notes.append("T12 carries no ribs: missing 12th rib assumed")
        for nm, r in zip(names, reasons):
            if nm == "T12":
                r.append("no ribs on this vertebra: missing 12th rib assumed")
    if skull and names[0] == "C1":
        anchors.append("skull base")
        reasons[0].append("skull base directly above: C1")
    if not anchors:
        notes.append("no anatomical anchor in view (no sacrum, ribs or skull base): labels from vertebra sizes only, a guess")
        for r in reasons:
            r.append("no anchor in view: label guessed from vertebra sizes")
    for f, r in zip(feats, reasons):
        if f.at_fov_edge:
            r.append("field of view cut (or no disc found on one side)")
    return notes
