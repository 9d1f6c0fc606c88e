"""Rib counting by attachment (auto/classical/anchors.attached_ribs) on hand-built working
grids: 1.5 mm voxels, axes +R (x), +A (y), +S (z); four vertebrae stacked along z, the
top three with a rib on each side, the bottom one (a lumbar vertebra) without."""
import numpy as np
import pytest

from SpineLabelLib.auto.classical import anchors
from SpineLabelLib.auto.classical.spine import SpineCurves

S = 1.5
SHAPE = (160, 70, 68)
CANAL_X = 80
#: z ranges (inclusive start, exclusive stop) of vertebrae 1 (top) .. 4 (bottom)
LEVELS = [(50, 66), (34, 50), (18, 34), (2, 18)]
RIB_Y = slice(14, 18)


def _spine(n_ribbed=3):
    """(bone, labels, curves): vertebra blocks x 68-91, y 8-39, and a rib bar on each side
    (4 x 4 voxels, at mid-height) for the top ``n_ribbed`` vertebrae: right x 92-129
    (reaching 74 mm from the canal), left x 40-67 (60 mm)."""
    lab = np.zeros(SHAPE, np.uint8)
    bone = np.zeros(SHAPE, bool)
    for v, (z0, z1) in enumerate(LEVELS, start=1):
        lab[68:92, 8:40, z0:z1] = v
        if v <= n_ribbed:
            zm = (z0 + z1) // 2
            bone[92:130, RIB_Y, zm - 2:zm + 2] = True
            bone[40:68, RIB_Y, zm - 2:zm + 2] = True
    bone |= lab > 0
    nz = SHAPE[2]
    curves = SpineCurves(canal=np.tile([float(CANAL_X), 20.0], (nz, 1)), canal_front=np.full(nz, 22.0),
                         body=np.tile([float(CANAL_X), 30.0], (nz, 1)), z_lo=0, z_hi=nz - 1,
                         support=np.ones(nz, bool))
    return bone, lab, curves


def _ribs(bone, lab, curves):
    return anchors.attached_ribs(bone, lab, curves, S, len(LEVELS)).astype(int).tolist()


EXPECTED = [[1, 1], [1, 1], [1, 1], [0, 0]]


def test_separate_ribs_each_on_its_vertebra():
    assert _ribs(*_spine()) == EXPECTED


def test_ribs_fused_at_their_ends_count_for_both_vertebrae(monkeypatch):
    """The right ribs of vertebrae 2 and 3 joined laterally (one piece touching both): each
    keeps its rib. Without the split, the piece went to one vertebra only."""
    bone, lab, curves = _spine()
    z2, z3 = (sum(LEVELS[1]) // 2, sum(LEVELS[2]) // 2)
    bone[112:116, RIB_Y, z3 - 2:z2 + 2] = True  # inside the box attached_ribs looks at
    assert _ribs(bone, lab, curves) == EXPECTED
    monkeypatch.setattr(anchors, "SPLIT_FUSED_RIBS", False)
    lost = _ribs(bone, lab, curves)
    assert lost[1][0] + lost[2][0] == 1


def _thick_blob(bone, lab):
    """A contrast-filled vessel beside the spine (the aorta lies against the bodies): an
    ellipsoid of ~63 ml left of and in front of the ribs, joined by thin bridges to the
    left ribs of vertebrae 1-3 and to the body of the rib-less vertebra 4."""
    x, y, z = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    blob = ((x - 52) / 10.0) ** 2 + ((y - 45) / 14.0) ** 2 + ((z - 34) / 32.0) ** 2 <= 1.0
    assert 60 < blob.sum() * S ** 3 / 1000 < 70
    bone |= blob
    for z0, z1 in LEVELS[:3]:
        zm = (z0 + z1) // 2
        bone[51:53, 18:32, zm - 1:zm + 1] = True
    z0, z1 = LEVELS[3]
    bone[50:68, 36:38, z1 - 3:z1 - 1] = True
    assert not (blob & (lab > 0)).any()
    return bone


def test_ribs_joined_by_a_thick_bright_structure(monkeypatch):
    """Ribs joined through a thick structure (a piece far bigger than a rib) are found, and
    the structure gives no rib to the rib-less vertebra it touches: what an opening keeps of
    such a piece is removed before it is split. Without the removal, the split hands the
    rib-less vertebra a part of the structure that passes for a rib."""
    bone, lab, curves = _spine()
    bone = _thick_blob(bone, lab)
    assert _ribs(bone, lab, curves) == EXPECTED
    monkeypatch.setattr(anchors, "THICK_MM", 0.0)
    assert _ribs(bone, lab, curves)[3] == [0, 1]


@pytest.mark.parametrize("gap, found", [(2, True), (8, False)])
def test_rib_with_a_joint_gap(monkeypatch, gap, found):
    """A thin rib separated from its vertebra by a joint space: 2 voxels (3 mm) joins it,
    8 voxels (12 mm) does not; without the near-contact rule neither does."""
    bone, lab, curves = _spine()
    bone[92:92 + gap] = lab[92:92 + gap] > 0  # cut the first voxels of every right rib
    got = _ribs(bone, lab, curves)
    assert [right for right, _left in got] == ([1, 1, 1, 0] if found else [0, 0, 0, 0])
    assert [left for _right, left in got] == [1, 1, 1, 0]
    monkeypatch.setattr(anchors, "NEAR_RIB_MM", 0.0)
    assert [right for right, _left in _ribs(bone, lab, curves)] == [0, 0, 0, 0]
