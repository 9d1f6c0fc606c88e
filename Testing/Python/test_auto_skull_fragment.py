"""A fragment of the skull base at the top of a cervical view.

A view that starts just above C1 cuts the occiput: the body curve runs into it and its
top piece looks like one more vertebra. Too small (cut) to be dropped by its size alone
(``SKULL_PIECE_MM2``), it was labelled C1 and every label below it shifted one level up,
at confidence up to 1.00, against the ribs (T1's read as C7's)."""
from __future__ import annotations

import numpy as np

from SpineLabelLib import labels as L
from SpineLabelLib.auto.classical import ClassicalEngine
from SpineLabelLib.auto.classical.anchors import SegmentFeatures
from SpineLabelLib.auto.classical.labelling import PITCH_MM, label_segments
from SpineLabelLib.synthetic import PhantomSpec, make_phantom
from SpineLabelLib.verse.metrics import evaluate_case


def _cervicothoracic(top_ratio: float) -> list[SegmentFeatures]:
    """A top piece cut by the view (midline bone ``top_ratio`` times the next piece's), then
    C1..T4 with ribs on T1..T4 (the last cut by the view)."""
    names = [f"C{n}" for n in range(1, 8)] + ["T1", "T2", "T3", "T4"]
    top = SegmentFeatures(0.0, (0.0, 0.0), 0.0, None, 25.0, (0, 1), True)
    top.top_bone_ratio = top_ratio
    out = [top]
    for i, nm in enumerate(names):
        edge = i == len(names) - 1
        rib = 1.0 if nm.startswith("T") else 0.0
        out.append(SegmentFeatures(rib, (rib, rib), 0.0, None if edge or nm == "C1" else PITCH_MM[nm],
                                   PITCH_MM[nm], (0, 1), edge))
    return out


def test_a_big_top_piece_above_c1_is_skull_and_the_ribs_place_t1():
    res = label_segments(_cervicothoracic(3.0), True, 0.0)
    assert res.values[0] == 0  # not a vertebra
    assert [L.name_of(v) for v in res.values[1:]] == [f"C{n}" for n in range(1, 8)] + ["T1", "T2", "T3", "T4"]
    assert any("fragment of the skull base" in n for n in res.notes)


def test_a_top_piece_like_the_next_one_stays_a_vertebra():
    # the same pieces where the top one is as big as the next: it is a vertebra (C1 would
    # then be one more level up, which the sequence does not have, so the count shifts)
    res = label_segments(_cervicothoracic(1.0), True, 0.0)
    assert res.values[0] != 0


def test_engine_drops_a_cut_occiput_at_the_top_of_a_cervical_view():
    # C2..C7 in view, 20 mm above: C1 and a piece of the occiput, cut at the sides
    ph = make_phantom(PhantomSpec(first="C2", last="C7", spacing=(1.0, 1.0, 1.0), axcodes=("L", "A", "S"), seed=1200))
    res = ClassicalEngine().segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0, res.notes
    assert set(res.labels) <= set(np.unique(ph.mask.array).tolist()), res.labels
