"""Transverse processes and disc centres in the weight-free engine.

* the reach of each vertebra's transverse processes from the canal, measured on its own
  label (hand-built grid), and used by the labelling against the lumbar pattern L1 < L2 <
  L3 > L4 to place a lumbar view with neither sacrum nor ribs (still flagged as a guess);
* a disc seen on thin slices is placed midway between its two endplate edges, not at the
  weighted centre that leans towards the stronger edge.

The real-CT checks (totalseg_example, lidc0001) are in test_auto_engines."""
from __future__ import annotations

import numpy as np

from SpineLabelLib import labels as L
from SpineLabelLib.auto.classical import ClassicalEngine
from SpineLabelLib.auto.classical.anchors import SegmentFeatures, transverse_reach
from SpineLabelLib.auto.classical.discs import discs_from_centres
from SpineLabelLib.auto.classical.labelling import PITCH_MM, TP_LENGTH_MM, label_segments
from SpineLabelLib.auto.classical.spine import SpineCurves
from SpineLabelLib.synthetic import make_phantom, phantom_suite
from SpineLabelLib.verse.metrics import evaluate_case


# ---------------------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------------------
def _curves(nx: int, ny: int, nz: int, cx: float, cy: float) -> SpineCurves:
    canal = np.tile([cx, cy], (nz, 1)).astype(float)
    return SpineCurves(canal, np.full(nz, cy + 3.0), canal + [0.0, 15.0], 0, nz - 1, np.ones(nz, bool))


def _vertebra(lab: np.ndarray, value: int, cx: int, cy: int, z: slice, right: int, left: int, s: float):
    """A body in front of the canal and transverse processes reaching ``right`` / ``left``
    mm from the canal axis, a little behind it; working axes +R, +A, +S."""
    lab[cx - 12:cx + 13, cy + 8:cy + 30, z] = value  # body: 18 mm half-width at s = 1.5
    lab[cx:cx + int(right / s) + 1, cy - 4:cy, z.start + 3:z.start + 6] = value
    lab[cx - int(left / s):cx + 1, cy - 4:cy, z.start + 3:z.start + 6] = value


def test_reach_of_the_transverse_processes_on_a_hand_built_grid():
    s = 1.5
    lab = np.zeros((120, 80, 40), np.uint8)
    _vertebra(lab, 1, 60, 30, slice(2, 18), 36, 33, s)
    _vertebra(lab, 2, 60, 30, slice(20, 38), 45, 42, s)
    lab[60 - 30:60 + 31, 30 + 25:30 + 30, 20:38] = 2  # bone far in front (no process) is not counted
    reach = transverse_reach(lab, _curves(*lab.shape, 60, 30), s, 3)
    assert abs(reach[0] - 34.5) <= s and abs(reach[1] - 43.5) <= s, reach
    assert np.isnan(reach[2])  # no such label


def test_a_side_out_of_view_is_not_measured():
    s = 1.5
    lab = np.zeros((75, 80, 20), np.uint8)  # the canal 30 mm from the left edge
    _vertebra(lab, 1, 20, 30, slice(2, 18), 40, 25, s)
    reach = transverse_reach(lab, _curves(*lab.shape, 20, 30), s, 1)
    assert abs(reach[0] - 40.0) <= s, reach  # the right side only (its left is cut)


# ---------------------------------------------------------------------------------------
# the labelling, on hand-built features
# ---------------------------------------------------------------------------------------
def _lumbar_view(names: list[str], root_mm: float = 24.0) -> list[SegmentFeatures]:
    """A view without sacrum or ribs: the first and last segments cut by the view (the
    last one still shows its upper half, hence its processes), the others whole; every
    whole pitch the same 36 mm (sizes say nothing), transverse processes ``root_mm`` +
    the level's typical length (L5: as long as L4)."""
    out = []
    for i, nm in enumerate(names):
        first, last = i == 0, i == len(names) - 1
        f = SegmentFeatures(0.0, (0.0, 0.0), 0.0, None if first or last else 36.0, 12.0 if first else 20.0 if last else 36.0,
                            (0, 1), first or last)
        if not first:
            f.tp_reach_mm = root_mm + TP_LENGTH_MM.get(nm, TP_LENGTH_MM["L4"])
        out.append(f)
    return out


def test_transverse_processes_place_an_anchorless_lumbar_view():
    # the three views differ only in their processes (every size the same): each is placed
    for names in (["L1", "L2", "L3", "L4"], ["L2", "L3", "L4", "L5"], ["T12", "L1", "L2", "L3"]):
        res = label_segments(_lumbar_view(names), True, 0.0)
        assert [L.name_of(v) for v in res.values] == names, names
        # still a guess: no sacrum, rib or skull base to count from
        assert max(res.confidence) < 0.5
        assert any("transverse-process lengths" in n for n in res.notes), res.notes


def test_engine_places_the_anchorless_lumbar_phantom():
    ph = make_phantom(next(s for s in phantom_suite() if s.name == "lumbar-0.5mm"))  # L2-L3 whole, 0.5 mm
    res = ClassicalEngine().segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0, (m.missing_labels, res.notes)
    assert max(res.confidence.values()) < 0.5  # flagged: a guess
    assert any("transverse-process lengths" in n for n in res.notes), res.notes


# ---------------------------------------------------------------------------------------
# disc centres
# ---------------------------------------------------------------------------------------
def _bump(n: int, at: float, height: float, width: float = 2.0) -> np.ndarray:
    t = np.arange(n, dtype=float)
    return height * np.exp(-0.5 * ((t - at) / width) ** 2)


def test_disc_midway_between_two_unequal_endplate_edges():
    # body centres at 10 and 46 (1 mm steps; the profile ends before another disc); the
    # disc's upper endplate edge at 21, the lower (stronger) one at 35: its centre is 28,
    # the weighted centre of the edge energy lies near 31
    E = 5.0 + _bump(58, 21, 80.0) + _bump(58, 35, 110.0)
    assert discs_from_centres(E, [10, 46]) == [28]


def test_one_smeared_band_keeps_its_weighted_centre():
    # a thick-slice disc: both endplates in one band (no dip between them)
    E = 5.0 + _bump(58, 26, 100.0, width=4.0) + _bump(58, 30, 60.0, width=4.0)
    (disc,) = discs_from_centres(E, [10, 46])
    assert 26 <= disc <= 29
