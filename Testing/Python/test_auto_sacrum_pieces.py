"""A sacrum cut into pieces, and labellings the image contradicts.

The sacrum is five fused vertebrae. Where its marrow is as dark as soft tissue
(osteoporosis, fatty marrow), the spinal canal is tracked deep into it. The remnants of
its fused discs then show as weak edges, and the separation cut it into "vertebrae" that
took lumbar labels. And because hypotheses are only scored against each other, such a
labelling came with confidence 0.98."""
from __future__ import annotations

import numpy as np
import pytest

from SpineLabelLib import labels as L
from SpineLabelLib.auto.classical import ClassicalEngine
from SpineLabelLib.auto.classical.anchors import SegmentFeatures
from SpineLabelLib.auto.classical.discs import disc_strengths, drop_fused_remnants
from SpineLabelLib.auto.classical.labelling import GUESS_MAX, PITCH_MM, label_segments
from SpineLabelLib.synthetic import make_phantom, phantom_suite
from SpineLabelLib.verse.metrics import evaluate_case


def _edge_profile(peaks: list[float], pitch: int = 30) -> tuple[np.ndarray, list[int]]:
    """An edge-energy profile with a calm body centre every ``pitch`` samples and an edge of
    height ``peaks[k]`` (a Gaussian bump) between centres k and k+1; and the centres."""
    n = pitch * (len(peaks) + 1)
    t = np.arange(n, dtype=float)
    E = np.full(n, 2.0)
    centres = [pitch // 2 + k * pitch for k in range(len(peaks) + 1)]
    for k, h in enumerate(peaks):
        E += h * np.exp(-0.5 * ((t - (centres[k] + pitch / 2)) / 3.0) ** 2)
    return E, centres


def test_weak_edges_at_the_chain_end_are_fused_remnants_and_dropped():
    E, centres = _edge_profile([30, 32, 29, 31, 30, 12, 9, 10])
    # the centre below the last real disc (S1) stays; those below the remnants go
    assert drop_fused_remnants(E, centres) == centres[:6]


def test_a_weak_disc_above_strong_ones_stays_a_disc():
    # a weak edge between vertebrae (a narrowed disc, a thick slice) is not at the end
    E, centres = _edge_profile([30, 32, 29, 31, 12, 30, 31])
    assert drop_fused_remnants(E, centres) == centres
    # nor is a disc the view cuts that is weaker only moderately (0.72 of those above)
    E, centres = _edge_profile([30, 32, 29, 31, 22])
    assert drop_fused_remnants(E, centres) == centres


def test_disc_strengths_are_relative_to_the_discs_above():
    E, centres = _edge_profile([30, 30, 30, 30, 30, 12])
    discs = [(a + b) // 2 for a, b in zip(centres[:-1], centres[1:])]
    st = disc_strengths(E, discs)
    assert set(st) == set(discs[2:])  # the first two have fewer than two discs above them
    assert st[discs[4]] == pytest.approx(1.0, abs=0.02)
    assert 0.35 < st[discs[5]] < 0.5


# ---------------------------------------------------------------------------------------
# labelling: how many pieces the sacrum spans, and labellings the image contradicts
# ---------------------------------------------------------------------------------------
def _feats(names: list[str], ribbed: set[str], sacral_strength: float | None = None,
           narrow: bool = True) -> list[SegmentFeatures]:
    """Segments for the true levels ``names``; "S2" is a second sacral piece below "sacrum"
    whose edge above has relative strength ``sacral_strength``. In a ``narrow`` field of
    view the iliac wings are cut (no ilium seen) and show in the rib window beside the
    sacral pieces; else they are seen beside them. Every other disc is as strong as those
    above it."""
    out = []
    for i, nm in enumerate(names):
        edge = i in (0, len(names) - 1)
        sacral = nm in ("sacrum", "S2")
        rib = 1.0 if (nm in ribbed or (sacral and narrow)) else 0.0
        pitch = None if (edge or sacral) else PITCH_MM[nm]
        ilium = 1.0 if (sacral and not narrow) else 0.0
        f = SegmentFeatures(rib, (rib, rib), ilium, pitch, 40.0 if sacral else PITCH_MM[nm], (0, 1), edge)
        f.disc_above_strength = None if i < 3 else (sacral_strength if nm == "S2" else 1.0)
        out.append(f)
    return out


def _seq(first: str) -> list[str]:
    names = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)]
    return names[names.index(first):] + ["sacrum"]


def test_a_sacrum_cut_at_a_weak_edge_spans_both_pieces():
    names = _seq("C6") + ["S2"]
    thoracic = {n for n in names if n.startswith("T")}
    res = label_segments(_feats(names, thoracic, sacral_strength=0.35), False, 0.0)
    got = [L.name_of(v) for v in res.values]
    assert got == _seq("C6") + ["sacrum"], got
    assert min(res.confidence) >= 0.5


def test_a_strong_edge_below_s1_is_not_taken_for_a_fused_one():
    # the same pieces with a real disc's edge: the piece stays a vertebra of its own
    names = _seq("C6") + ["S2"]
    thoracic = {n for n in names if n.startswith("T")}
    res = label_segments(_feats(names, thoracic, sacral_strength=1.0), False, 0.0)
    assert [L.name_of(v) for v in res.values][-2:] != ["sacrum", "sacrum"]


def test_a_piece_half_a_vertebra_high_holds_every_label_below_half():
    # a split L3 (two pieces of half its pitch): an extra piece the count absorbs as L6
    names = _seq("C6")
    feats = _feats(names, {n for n in names if n.startswith("T")})
    i = names.index("L3")
    half = SegmentFeatures(0.0, (0.0, 0.0), 0.0, PITCH_MM["L3"] / 2, PITCH_MM["L3"] / 2, (0, 1), False)
    feats[i].pitch_mm = feats[i].length_mm = PITCH_MM["L3"] / 2
    feats.insert(i + 1, half)
    res = label_segments(feats, False, 0.0)
    assert max(res.confidence) <= GUESS_MAX
    assert any("no labelling fits" in n and "pitch" in n for n in res.notes), res.notes


def test_one_contradicted_rib_holds_only_its_own_label():
    names = _seq("C6")
    feats = _feats(names, {n for n in names if n.startswith("T") and n != "T5"}, narrow=False)  # T5's ribs missed
    res = label_segments(feats, False, 0.0)
    got = [L.name_of(v) for v in res.values]
    assert got == names
    i = names.index("T5")
    assert res.confidence[i] <= GUESS_MAX and any("contradicts" in r for r in res.reasons[i])
    assert all(c >= 0.5 for k, c in enumerate(res.confidence) if k != i)
    assert not any("no labelling fits" in n for n in res.notes)


# ---------------------------------------------------------------------------------------
# the engine on osteoporotic sacra in narrow fields of view
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["osteoporotic-sacrum-L1", "l6-osteoporotic-sacrum-T12"])
def test_engine_keeps_an_osteoporotic_sacrum_whole(name):
    ph = make_phantom(next(s for s in phantom_suite() if s.name == name))
    res = ClassicalEngine().segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0, (name, res.notes)
    assert set(res.labels) <= set(np.unique(ph.mask.array).tolist()), res.labels  # no extra L6 / T13
    # no piece of the sacrum carries a vertebra's label (they took L5 / L6 when it was cut)
    ref = ph.mask.array == L.value_of("sacrum")
    got = res.mask.array[ref]
    assert np.mean((got > 0) & (got != L.value_of("sacrum"))) < 0.02
