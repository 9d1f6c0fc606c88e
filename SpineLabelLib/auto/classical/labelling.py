"""Labelling from anatomical anchors, reconciled into one consistent sequence.

Every hypothesis is a contiguous run of the anatomical sequence C1..C7, T1..T12, [T13],
L1..L5, [L6], sacrum (with or without T13, with or without L6, with or without a missing
12th rib pair), assigned to the detected segments head to feet. Each hypothesis is
scored by the evidence:

* the sacrum anchor (the caudal-most segment, no disc below, iliac wings beside it);
* rib-bearing segments must be thoracic (T1-T12, T13), the others not (a missing 12th rib
  leaves T12 rib-less); rib evidence beside the pelvis is ignored (the iliac crest);
* the skull base above the top segment makes it C1;
* the facet joints above each segment: coronal (thoracic) up to the last thoracic
  vertebra, sagittal (lumbar) below it (:mod:`.facets`; what tells a rib-less T12 from
  L1 when no cranial anchor is in view);
* the disc-to-disc pitch of complete segments against typical adult values by level
  (a weak cue, scaled to the patient);
* how far the transverse processes of rib-less segments reach from the canal, against
  the lumbar pattern L1 < L2 < L3 > L4 (a weak cue, offset to the patient; what places a
  lumbar view with neither sacrum nor ribs in it, still as a guess);
* priors: T13 and L6 each in ~6% of spines, a missing 12th rib in ~4%;
* the sacrum may span the last one to three pieces: the separation cuts a sacrum whose
  marrow is dark at the remnants of its fused discs, edges much weaker than the discs
  above them (``discs.disc_strengths``);
* the top piece, where the view cuts it, may be a fragment of the skull base above C1
  (its midline bone against the next piece's, ``top_bone_ratio``).

The labels are those of the best hypothesis (evidence and priors). The posterior over
hypotheses gives each vertebra's confidence: the probability mass of the hypotheses that
give it the same label. The hypotheses are only compared with each other, so the best one
may still fit badly (vertebrae split or merged by the separation): the observations it
contradicts (:func:`contradictions`) hold the labels concerned, or all of them, below 0.5.

Saying when it is guessing: the anatomical variants are only told apart by counting from
BOTH ends, a cranial anchor (the skull base above C1, or the cervicothoracic transition:
the first rib-bearing vertebra below non-rib-bearing ones is T1) and a caudal one (the
sacrum, or the last rib-bearing vertebra). A T13 spine seen from T9 to the sacrum shows
exactly what a normal spine seen from T8 shows; there the priors alone pick "normal". So a
second, image-only posterior (the variants at even odds, i.e. without the population
priors) is computed; a level whose label the image alone does not settle (< 67% of that
posterior: odds under 2:1) is a guess: its confidence is held below 0.5 and its reasons
say which variant cannot be excluded. A view without any anchor is a guess throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ... import labels as L
from .anchors import SegmentFeatures
from .discs import REMNANT_FRACTION

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
#: Probability that the facet joints above a vertebra are sagittal (lumbar type), from
#: Singer et al. 1988 (CT of 214 thoracolumbar junctions): the joints turn from coronal to
#: sagittal abruptly at T12 (29 %), at T11 (16 %) or at L1 (0.5 %), or gradually over
#: the T11 and T12 joints (54 %). So the joint above the first lumbar vertebra is sagittal
#: in 99 %; above the last thoracic one (T12, or T13 when present) in about a third, above
#: the one before it in a tenth; higher thoracic joints are coronal. The joints above
#: C1..T1 (cervical facets are oblique) and the lumbosacral one (often oblique) are left out.
FACET_SAGITTAL = {"thoracic": 0.03, "before last thoracic": 0.1, "last thoracic": 0.35, "lumbar": 0.99}
#: A level is decided by the image when the hypotheses giving it its label hold at least
#: this share of the image-only posterior (anatomical variants at even odds; 2:1 odds)
IMAGE_DECIDES = 0.67
#: ...otherwise its label rests on the priors (the commonest anatomy): a guess, reported
#: with at most this confidence (below 0.5, so a reviewer filtering on 0.5 sees it).
GUESS_MAX = 0.45


class LabellingError(Exception):
    """No label sequence fits the detected segments."""


@dataclass
class Hypothesis:
    names: list[str]
    t13: bool
    l6: bool
    missing_rib12: bool
    #: how many caudal pieces the sacrum spans (S1 cut from the rest at a fused disc's remnant)
    sacrum_pieces: int = 1
    image: float = 0.0  # log-likelihood of the image evidence
    prior: float = 0.0  # log prior of the anatomical variant

    @property
    def score(self) -> float:
        return self.image + self.prior

    def variant(self) -> list[str]:
        return (["T13"] if self.t13 else []) + (["L6"] if self.l6 else []) + \
            (["a missing 12th rib"] if self.missing_rib12 else [])


@dataclass
class Labelling:
    values: list[int]  # VerSe value per segment (head to feet)
    confidence: list[float]
    reasons: list[list[str]]
    notes: list[str]
    #: observations that speak against the chosen labelling (:func:`contradictions`)
    contradicted: list[str] = field(default_factory=list)


def _sequence(t13: bool, l6: bool) -> list[str]:
    names = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)]
    names += ["T13"] if t13 else []
    names += [f"L{n}" for n in range(1, 6)] + (["L6"] if l6 else []) + ["sacrum"]
    return names


def _is_thoracic(name: str) -> bool:
    return name.startswith("T")


#: Bound of the log-likelihood ratios of the piece cues below (a top piece taken for skull,
#: an edge taken for a fused disc): one cue alone does not overrule the anchors' count.
LLR_MAX = 4.0
#: The name a hypothesis gives a top piece it takes for a fragment of the skull base (the
#: occiput cut by the view above C1): not a vertebra, dropped from the mask.
SKULL_PIECE = "skull"
#: Names that are not vertebrae with their own evidence (ribs, facet joints, pitch).
NOT_SCORED = ("sacrum", SKULL_PIECE)
#: Prior probability that a top piece cut by the view is a fragment of the skull base. Its
#: evidence: its midline bone area against the next piece's (``top_bone_ratio``), measured:
#: 0.8-1.45 for a vertebra at the top of phantoms' and lidc0001's views, 1.8-6 for a cut occiput.
PRIOR_SKULL_TOP = 0.1
SKULL_RATIO_MID, SKULL_LLR_PER_LOG = 1.6, 4.0


def _skull_top_llr(ratio: float | None) -> float:
    """Log-likelihood ratio that the top piece, ``ratio`` times the next one's bone area, is
    skull rather than a vertebra."""
    if ratio is None or ratio <= 0:
        return -LLR_MAX
    return float(np.clip(SKULL_LLR_PER_LOG * math.log(ratio / SKULL_RATIO_MID), -LLR_MAX, LLR_MAX))


#: The sacrum may span up to this many caudal pieces: the separation cut S1 off the rest of
#: it (or the rest into two) at the remnant of a fused disc.
MAX_SACRUM_PIECES = 3
#: Log-likelihood ratio (fused remnant against disc) of an edge per unit of relative
#: strength below REMNANT_FRACTION (``discs.disc_strengths``), bounded by LLR_MAX. Measured
#: (44 phantoms, both real CTs): discs between two bodies >= 0.72 of the discs above them,
#: a disc the view cuts 0.5-0.94, an osteoporotic sacrum's remnants 0.27-0.56.
FUSED_PER_UNIT = 10.0
#: Prior probability, per extra piece, that the chain cut the sacrum (its remnant edges are
#: mostly caught before: ``discs.drop_fused_remnants``); an edge of unknown strength
#: (fewer than two discs above it) adds no evidence either way.
PRIOR_SACRUM_CUT = 0.05
#: What a vertebra's own evidence (ribs, facet joints, pitch) costs when it fits: charged for
#: each extra piece the sacrum takes in, whose evidence is then left out.
FITTING_VERTEBRA_LOGL = -0.9


def _fused_llr(strength: float | None) -> float:
    """Log-likelihood ratio that an edge of relative ``strength`` is a fused remnant, not a disc."""
    if strength is None:
        return 0.0
    return float(np.clip(FUSED_PER_UNIT * (REMNANT_FRACTION - strength), -LLR_MAX, LLR_MAX))


def _sacrum_probabilities(feats: list[SegmentFeatures], last_has_caudal_disc: bool) -> dict[int, float]:
    """k -> probability that the last k pieces together are the sacrum, from the merged
    piece's iliac wings and length."""
    return {k: _sacrum_probability(max(f.ilium for f in feats[-k:]), sum(f.length_mm for f in feats[-k:]),
                                   last_has_caudal_disc)
            for k in range(1, min(MAX_SACRUM_PIECES, len(feats)) + 1)}


def _piece_options(feats: list[SegmentFeatures], max_sacrum_pieces: int):
    """(sacrum pieces, 1 if the top piece is taken for skull else 0) for every hypothesis family."""
    tops = (0, 1) if feats[0].top_bone_ratio is not None and len(feats) >= 3 else (0,)
    return [(pieces, top) for pieces in range(1, max_sacrum_pieces + 1) for top in tops
            if len(feats) - pieces - top >= 0]


def _sacrum_probability(ilium: float, length_mm: float, last_has_caudal_disc: bool) -> float:
    """Probability that the caudal-most piece (iliac wings beside it ``ilium``, 0..1; its
    length along the curve ``length_mm``) is the sacrum."""
    if last_has_caudal_disc:
        # a long piece flanked by the iliac wings with an edge below it is the sacrum cut
        # at an intra-sacral (S1/S2) edge as often as L5 beside the iliac crest
        return 0.4 if ilium >= 0.3 and length_mm >= 25.0 else 0.02
    if ilium >= 0.3 and length_mm >= 25.0:
        return 0.95
    if ilium >= 0.3:
        return 0.6
    return 0.05


def label_segments(feats: list[SegmentFeatures], last_has_caudal_disc: bool, skull_mm2: float) -> Labelling:
    """Labels, confidences and reasons for the segments ``feats`` (head to feet), given
    whether the caudal-most one has a disc below it and the bone area above the top one."""
    n = len(feats)
    p_sacrum = _sacrum_probabilities(feats, last_has_caudal_disc)
    skull = skull_mm2 >= SKULL_MM2
    hyps: list[Hypothesis] = []
    for t13 in (False, True):
        for l6 in (False, True):
            for mr in (False, True):
                seq = _sequence(t13, l6)
                for pieces, top in _piece_options(feats, len(p_sacrum)):
                    m = n - pieces + 1 - top  # labelled pieces, the sacrum counted once
                    for k0 in range(0, len(seq) - m + 1):
                        names = seq[k0:k0 + m]
                        if (pieces > 1 and names[-1] != "sacrum") or (top and k0 > 0):
                            continue
                        names = [SKULL_PIECE] * top + names + ["sacrum"] * (pieces - 1)
                        if mr and "T12" not in names:
                            continue  # a missing rib out of view changes nothing: counted once
                        h = Hypothesis(names, t13, l6, mr, pieces)
                        h.image = _image_score(h, feats, p_sacrum, skull)
                        h.prior = _prior_score(h)
                        hyps.append(h)
    if not hyps:
        raise LabellingError(f"{n} segments found along the spine, more than any spine has: disc detection "
                             "over-segmented; no consistent labelling")
    post = _normalised([h.score for h in hyps])
    post_image = _normalised([h.image for h in hyps])  # the variants at even odds
    best = hyps[int(np.argmax(post))]
    anchored = _anchors_in_view(best, feats, p_sacrum[best.sacrum_pieces], skull)
    cranial = _cranial_anchor(feats, skull or best.names[0] == SKULL_PIECE)
    values, conf, reasons, guessed = [], [], [], []
    for i in range(n):
        name = best.names[i]
        mass = _label_mass(hyps, post, i)
        mass_image = _label_mass(hyps, post_image, i)
        values.append(0 if name == SKULL_PIECE else L.value_of(name))
        c, why = mass[name], []
        if not anchored:
            c = min(c, mass_image[name], GUESS_MAX)  # _explain says why: no anchor at all
        elif mass_image[name] < IMAGE_DECIDES:
            c = min(c, mass_image[name], GUESS_MAX)
            guessed.append(i)
            why.append(_guess_reason(best, hyps, post_image, i, cranial))
        alt = sorted(((m, k) for k, m in mass.items() if k != name), reverse=True)
        head = f"label probability {c:.2f}"
        if c < mass[name] - 0.005:
            head += f" (a guess; {mass[name]:.2f} with the population priors)"
        elif alt and alt[0][0] > 0.01:
            head += f" (next: {alt[0][1]} {alt[0][0]:.2f})"
        conf.append(c)
        reasons.append([head] + why)
    notes = _explain(best, feats, p_sacrum[best.sacrum_pieces], skull, reasons, cranial)
    against = contradictions(best, feats)
    _hold_contradicted(best, against, conf, reasons, notes)
    guessed = [i for i in guessed if best.names[i] != SKULL_PIECE]
    if guessed:
        notes.append(f"{_runs([best.names[i] for i in guessed], guessed)} labelled by a guess (confidence < 0.5): " +
                     ("no cranial anchor in view (skull base or cervicothoracic transition), so "
                      "T13 / a missing 12th rib / L6 cannot be excluded" if not cranial else
                      "the image does not settle the count"))
    return Labelling(values, conf, reasons, notes, [f"{best.names[i]}: {what}" for i, what in against])


#: With this many contradicting observations, or one pitch (a piece half or twice a
#: vertebra's height), the labelling as a whole is in doubt.
MISFIT_CONTRADICTIONS = 2


def _hold_contradicted(best: Hypothesis, against: list[tuple[int, str]], conf: list[float],
                       reasons: list[list[str]], notes: list[str]) -> None:
    """Confidence held below 0.5 where the image contradicts the chosen labels, in place: a
    contradicted vertebra's own label; with MISFIT_CONTRADICTIONS or more, or a pitch far off,
    every label: a split or merged vertebra adds or takes away a piece, the labelling absorbs
    it as a variant (an L6, a T13) or a shift, and the count through it is in doubt."""
    if not against:
        return

    def hold(i: int) -> None:
        if conf[i] > GUESS_MAX:
            reasons[i][0] = f"label probability {GUESS_MAX:.2f}, held below 0.5 (from the anchors: {reasons[i][0]})"
            conf[i] = GUESS_MAX

    for i, what in against:
        hold(i)
        reasons[i].append(f"the image contradicts this label ({what})")
    if len(against) >= MISFIT_CONTRADICTIONS or any(what.startswith("pitch") for _, what in against):
        for i in range(len(conf)):
            hold(i)
        listed = "; ".join(f"{best.names[i]}: {what}" for i, what in against)
        notes.append(f"no labelling fits the vertebrae found ({listed}): vertebrae may be split or merged; "
                     "every label is held below confidence 0.5")
        for r in reasons:
            r.append("the labels as a whole contradict the image: a guess")


def _runs(names: list[str], idx: list[int]) -> str:
    """"T7..T12, sacrum": consecutive segments joined into ranges."""
    parts, start = [], 0
    for k in range(1, len(idx) + 1):
        if k == len(idx) or idx[k] != idx[k - 1] + 1:
            parts.append(names[start] if k - 1 == start else f"{names[start]}..{names[k - 1]}")
            start = k
    return ", ".join(parts)


def _normalised(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    p = np.exp(s - s.max())
    return p / p.sum()


def _label_mass(hyps: list[Hypothesis], post: np.ndarray, i: int) -> dict[str, float]:
    """Probability of each label for segment ``i``: the mass of the hypotheses giving it."""
    mass: dict[str, float] = {}
    for h, p in zip(hyps, post):
        mass[h.names[i]] = mass.get(h.names[i], 0.0) + float(p)
    return mass


def _anchors_in_view(best: Hypothesis, feats, p_sacrum: float, skull: bool) -> bool:
    """Sacrum, a rib-bearing vertebra or the skull base: something to count from."""
    if (best.names[-1] == "sacrum" and p_sacrum > 0.5) or (skull and best.names[0] == "C1") or \
            best.names[0] == SKULL_PIECE:
        return True
    return any(f.rib >= 0.5 and f.ilium < 0.3 and nm not in NOT_SCORED for nm, f in zip(best.names, feats))


def _cranial_anchor(feats: list[SegmentFeatures], skull: bool) -> str | None:
    """The skull base, or the cervicothoracic transition: the first rib-bearing segment
    below a whole segment without ribs (T1 under C7)."""
    if skull:
        return "skull base"
    for i, f in enumerate(feats):
        if f.rib >= 0.5 and f.ilium < 0.3:
            above = feats[i - 1] if i > 0 else None
            if above is not None and above.rib < 0.5 and not above.at_fov_edge:
                return "cervicothoracic transition"
            return None
    return None


def _guess_reason(best: Hypothesis, hyps, post_image, i: int, cranial: str | None) -> str:
    """Why the image does not settle segment ``i``: the likeliest (image only) hypothesis
    that labels it differently, named by its anatomical variant."""
    j = max((k for k, h in enumerate(hyps) if h.names[i] != best.names[i]), key=lambda k: post_image[k],
            default=None)
    if j is None:
        return "the image does not settle this level; a guess"
    alt = hyps[j]
    differs = [v for v in alt.variant() if v not in best.variant()] or \
              [f"no {v}" for v in best.variant() if v not in alt.variant()]
    what = (" or ".join(differs) + " would make it " + alt.names[i]) if differs else \
        f"the count could start one level off ({alt.names[i]})"
    if cranial is None:
        return f"no cranial anchor in view (skull base or cervicothoracic transition): {what}; a guess"
    return f"the image does not settle this level: {what}; a guess"


def _prior_score(h: Hypothesis) -> float:
    sc = math.log(PRIOR_T13) if h.t13 else math.log(1 - PRIOR_T13)
    sc += math.log(PRIOR_L6) if h.l6 else math.log(1 - PRIOR_L6)
    if "T12" in h.names:
        sc += math.log(PRIOR_MISSING_RIB12) if h.missing_rib12 else math.log(1 - PRIOR_MISSING_RIB12)
    return sc


def _image_score(h: Hypothesis, feats: list[SegmentFeatures], p_sacrum: dict[int, float], skull: bool) -> float:
    sc = 0.0
    last = h.names[-1]
    sc += math.log(p_sacrum[h.sacrum_pieces]) if last == "sacrum" else math.log(1 - p_sacrum[1])
    # the edges inside a sacrum of several pieces are fused remnants, not discs
    for f in feats[len(feats) - h.sacrum_pieces + 1:]:
        sc += _fused_llr(f.disc_above_strength) + FITTING_VERTEBRA_LOGL + math.log(PRIOR_SACRUM_CUT)
    if skull:
        sc += 0.0 if h.names[0] in ("C1", SKULL_PIECE) else math.log(0.03)
    if feats[0].top_bone_ratio is not None:
        if h.names[0] == SKULL_PIECE:
            sc += math.log(PRIOR_SKULL_TOP) + _skull_top_llr(feats[0].top_bone_ratio) + FITTING_VERTEBRA_LOGL
        else:
            sc += math.log(1.0 - PRIOR_SKULL_TOP)
    sc += sum(w * _evidence(p) for _, _, p, w in _observations(h, feats))
    residuals, scale = _pitch_residuals(h, feats)
    if residuals:
        r = np.array([x for _, x in residuals])
        sc += -0.5 * float(np.sum((r / PITCH_SIGMA) ** 2)) - 0.5 * (scale / 0.12) ** 2
    return sc + _transverse_score(h, feats)


def _observations(h: Hypothesis, feats: list[SegmentFeatures]):
    """The rib and facet-joint observations ``h`` is scored on: (segment index, what,
    probability that the observation fits ``h``'s label, weight)."""
    near_pelvis = feats[-1].ilium >= 0.3
    for i, (name, f) in enumerate(zip(h.names, feats)):
        if name in NOT_SCORED:
            continue
        if f.ilium >= 0.3 or (near_pelvis and i >= len(feats) - 3 and name[0] == "L"):
            continue  # iliac crest beside L4-L6 looks like ribs
        if f.at_fov_edge and f.length_mm < 15.0:
            continue
        expect = _is_thoracic(name) and not (name == "T12" and h.missing_rib12)
        p = f.rib if expect else 1.0 - f.rib
        # the short first rib (often merged with its neighbours on real scans) and L1's
        # long transverse processes are the least reliable rib evidence; a rib attached
        # to C7 (a cervical rib, ~0.5% of people) is rare, so a rib-bearing vertebra
        # under non-rib-bearing ones is T1 with full weight: the cervicothoracic anchor
        w = RIB_WEIGHT * (0.5 if name in ("L1", "T1") else 1.0) * (0.6 if f.at_fov_edge else 1.0)
        yield i, "ribs" if f.rib >= 0.5 else "no ribs", p, w
    last_thoracic = "T13" if h.t13 else "T12"
    for i, (name, f) in enumerate(zip(h.names, feats)):
        q = _facet_sagittal_prior(name, last_thoracic)
        if q is None or f.facet_sagittal is None:
            continue
        p = f.facet_sagittal
        what = "sagittal (lumbar) facet joints" if p >= 0.5 else "coronal (thoracic) facet joints"
        yield i, what, q * p + (1.0 - q) * (1.0 - p), RIB_WEIGHT  # both sides, like a rib pair


def _pitch_residuals(h: Hypothesis, feats: list[SegmentFeatures]) -> tuple[list[tuple[int, float]], float]:
    """([(segment index, log(pitch / typical pitch of its label) - scale)], scale): the disc-to-disc
    pitches of complete segments against the typical adult ones, after fitting one patient
    scale (clipped to +-0.25). C1 has no body and no disc below it (the atlanto-axial joint):
    its "pitch" is not comparable, left out; so is the sacrum's."""
    obs = [(i, f.pitch_mm / PITCH_MM[nm]) for i, (nm, f) in enumerate(zip(h.names, feats))
           if f.pitch_mm and nm not in NOT_SCORED + ("C1",)]
    if not obs:
        return [], 0.0
    r = np.log([x for _, x in obs])
    scale = float(np.clip(np.median(r), -0.25, 0.25))
    return [(i, float(x - scale)) for (i, _), x in zip(obs, r)], scale


#: An observation contradicts a labelling when it fits it with less than this probability...
CONTRADICTS = 0.2
#: ...and a pitch does when it is this many PITCH_SIGMA off its label's typical pitch (after
#: the patient's scale): 3 sigma, a vertebra 50 % taller or a third shorter than expected.
PITCH_CONTRADICTS_SIGMA = 3.0


def contradictions(h: Hypothesis, feats: list[SegmentFeatures]) -> list[tuple[int, str]]:
    """(segment index, what) for each observation that speaks clearly against labelling
    ``feats`` as ``h`` does, e.g. (7, "ribs"), (8, "pitch 24 mm (36 mm expected)"). The
    hypotheses are scored against each other, so the best one can fit badly and still take
    the whole posterior: when the separation has split or merged vertebrae, no labelling
    fits, and this list says so."""
    out = [(i, what) for i, what, p, _ in _observations(h, feats) if p < CONTRADICTS]
    residuals, scale = _pitch_residuals(h, feats)
    for i, x in residuals:
        if abs(x) > PITCH_CONTRADICTS_SIGMA * PITCH_SIGMA:
            out.append((i, f"pitch {feats[i].pitch_mm:.0f} mm ({PITCH_MM[h.names[i]] * math.exp(scale):.0f} mm expected)"))
    return sorted(out)


#: Typical length (mm) of the lumbar transverse processes from their root, L1-L4, from
#: Li et al. 2003 (CT of 200 lumbar transverse processes): L1 the shortest (~10), L2 and L4
#: ~15, L3 the longest (~19). L5's (thick, joined to the body, beside the iliac crest) and
#: those of a transitional L6 or T12 are left out.
TP_LENGTH_MM = {"L1": 10.0, "L2": 15.0, "L3": 19.0, "L4": 15.0}
#: Spread (mm) of one measured reach about the spine's own pattern: ~3.5 mm between people
#: (L3's processes are the longest in about two thirds of spines, Raedel & Paton 2024,
#: which three independent lengths 4 mm apart with this spread reproduce), plus the voxel.
TP_SIGMA_MM = 3.8
#: A reach beyond this (mm from the canal axis) is a rib or a rib-like process, not a
#: lumbar transverse process.
TP_MAX_REACH_MM = 55.0


def _tp_measured(f: SegmentFeatures) -> bool:
    """A transverse-process reach to use: measured, no rib, not beside the iliac wings."""
    return f.tp_reach_mm is not None and f.tp_reach_mm < TP_MAX_REACH_MM and f.rib < 0.5 and f.ilium < 0.3


def _transverse_score(h: Hypothesis, feats: list[SegmentFeatures]) -> float:
    """Log-likelihood of the measured transverse-process reaches under ``h``.

    Reach = a patient's own root distance from the canal + the level's length, so the
    differences between levels carry the information: the pattern (L1 < L2 < L3 > L4) is
    fitted with one free offset and scored with ``TP_SIGMA_MM``. Every hypothesis scores
    the same measured segments: one its labels leave out of the model (a T12, L5,
    sacrum) costs the chi-square a fitted one costs on average (1), so leaving levels
    out neither pays nor costs."""
    meas = [(i, f.tp_reach_mm) for i, f in enumerate(feats) if _tp_measured(f)]
    if len(meas) < 2:
        return 0.0
    d = np.array([r - TP_LENGTH_MM[h.names[i]] for i, r in meas if h.names[i] in TP_LENGTH_MM])
    if d.size < 2:
        return -0.5 * len(meas)
    chi2 = float(np.sum(((d - d.mean()) / TP_SIGMA_MM) ** 2))
    return -0.5 * (chi2 + 1 + len(meas) - d.size)


def _transverse_pattern(h: Hypothesis, feats: list[SegmentFeatures]) -> str:
    """"L2 38 mm, L3 43 mm, L4 41 mm": the reaches that ``h``'s labels put in the
    transverse-process model, or "" when fewer than two."""
    used = [f"{nm} {f.tp_reach_mm:.0f} mm" for nm, f in zip(h.names, feats) if nm in TP_LENGTH_MM and _tp_measured(f)]
    return ", ".join(used) + " from the canal" if len(used) >= 2 else ""


def _facet_sagittal_prior(name: str, last_thoracic: str) -> float | None:
    """Probability that the facet joints above vertebra ``name`` are sagittal; None for
    the levels left out (C1..T1, the sacrum)."""
    if name[0] == "C" or name in ("T1",) + NOT_SCORED:
        return None
    if name[0] == "L":
        return FACET_SAGITTAL["lumbar"]
    if name == last_thoracic:
        return FACET_SAGITTAL["last thoracic"]
    if int(name[1:]) == int(last_thoracic[1:]) - 1:
        return FACET_SAGITTAL["before last thoracic"]
    return FACET_SAGITTAL["thoracic"]


def _facet_transition(feats: list[SegmentFeatures]) -> tuple[int, int] | None:
    """(i, j): the last segment whose joints above are coronal and the first below it
    whose joints above are sagittal, with every clear measurement (probability under 0.3
    or over 0.7) above i coronal and every one from j down sagittal; None when the clear
    measurements show no single turn."""
    measured = [(i, f.facet_sagittal > 0.7) for i, f in enumerate(feats)
                if f.facet_sagittal is not None and not 0.3 <= f.facet_sagittal <= 0.7]
    turns = [k for k in range(1, len(measured)) if measured[k][1] != measured[k - 1][1]]
    if len(turns) != 1 or measured[turns[0]][1] is False:
        return None
    k = turns[0]
    return measured[k - 1][0], measured[k][0]


def _evidence(p: float) -> float:
    """Log-likelihood of an anchor observation that fits the hypothesis with probability
    ``p``; the floor (0.06) is the chance that the measurement itself failed."""
    return math.log(0.06 + 0.88 * p)


def _explain(best: Hypothesis, feats, p_sacrum, skull, reasons, cranial: str | None = None) -> list[str]:
    names = best.names
    notes = []
    anchors = []
    if names[-1] == "sacrum" and p_sacrum > 0.5:
        anchors.append("sacrum")
        for r in reasons:
            r.append("labelled by counting up from the sacrum" +
                     (f" and down from the {cranial}" if cranial else ""))
    elif cranial:
        for r in reasons:
            r.append(f"labelled by counting down from the {cranial}")
    ribbed = [nm for nm, f in zip(names, feats) if f.rib >= 0.5 and nm not in NOT_SCORED and f.ilium < 0.3]
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
    transition = _facet_transition(feats)
    if transition is not None:
        above, below = names[transition[0]], names[transition[1]]
        notes.append(f"facet joints turn from coronal (thoracic) to sagittal (lumbar) between {above} and {below}")
        reasons[transition[1]].append(f"its facet joints with {names[transition[1] - 1]} are sagittal (lumbar type), "
                                      f"those of {above} and above coronal: the thoracolumbar transition")
    if best.missing_rib12:
        notes.append("T12 carries no ribs: missing 12th rib assumed")
        for nm, r, f in zip(names, reasons, feats):
            if nm == "T12":
                r.append("no ribs on this vertebra: missing 12th rib assumed" +
                         ("; its facet joints with T11 are thoracic (coronal)"
                          if f.facet_sagittal is not None and f.facet_sagittal < 0.5 else ""))
    if skull and names[0] == "C1":
        anchors.append("skull base")
        reasons[0].append("skull base directly above: C1")
    if names[0] == SKULL_PIECE:
        anchors.append("skull base")
        notes.append(f"top piece taken for a fragment of the skull base cut by the view (its midline bone "
                     f"{feats[0].top_bone_ratio:.1f} times the next piece's): not a vertebra; C1 below it")
        reasons[1].append("skull base fragment directly above: C1")
    if not anchors:
        tps = _transverse_pattern(best, feats)
        cues = "vertebra sizes and transverse-process lengths" if tps else "vertebra sizes"
        detail = f" ({tps}; L3's are the longest in about two thirds of spines)" if tps else " only"
        notes.append(f"no anatomical anchor in view (no sacrum, ribs or skull base): labels from {cues}{detail}, a guess")
        for r in reasons:
            r.append(f"no anchor in view: label guessed from {cues}")
    for f, r in zip(feats, reasons):
        if f.at_fov_edge:
            r.append("field of view cut (or no disc found on one side)")
    return notes
