"""Facet-joint orientation in the weight-free engine: measured on the input CT (coronal
thoracic joints, sagittal lumbar ones, none on a grid too coarse to show a joint space)
and used by the labelling to tell a rib-less T12 (a missing 12th rib) from L1 where no
cranial anchor is in view. The real-CT check is in test_auto_engines (lidc0001)."""
from __future__ import annotations

from SpineLabelLib import labels as L
from SpineLabelLib.auto.classical import ClassicalEngine
from SpineLabelLib.auto.classical.anchors import SegmentFeatures
from SpineLabelLib.auto.classical.labelling import PITCH_MM, label_segments
from SpineLabelLib.synthetic import make_phantom, phantom_suite
from SpineLabelLib.verse.metrics import evaluate_case


def _spec(name):
    return next(s for s in phantom_suite() if s.name == name)


def _joints(engine: ClassicalEngine) -> dict[str, float | None]:
    """Label name -> probability that its joints with the vertebra above are sagittal."""
    dbg = engine.last_debug
    return {L.name_of(v): f.facet_sagittal for v, f in zip(dbg["values"], dbg["features"])}


# ---------------------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------------------
def test_thoracic_joints_are_coronal_and_lumbar_ones_sagittal():
    eng = ClassicalEngine()
    eng.segment(make_phantom(_spec("default-T10-sacrum")).ct)  # T9..sacrum, 1 mm
    joints = _joints(eng)
    for name in ("T10", "T11", "T12"):
        assert joints[name] is not None and joints[name] < 0.3, (name, joints)
    # the joint above L1 is the transitional T12's lumbar-type inferior processes on L1's
    for name in ("L1", "L2", "L3", "L4", "L5"):
        assert joints[name] is not None and joints[name] > 0.7, (name, joints)


def test_no_measurement_where_the_grid_cannot_show_a_joint_space():
    eng = ClassicalEngine()
    eng.segment(make_phantom(_spec("default-T10-sacrum"), spacing=(3.0, 3.0, 3.0)).ct)
    assert set(_joints(eng).values()) == {None}


# ---------------------------------------------------------------------------------------
# the labelling, on hand-built features
# ---------------------------------------------------------------------------------------
def _feats(names: list[str], ribbed: set[str], last_thoracic: str | None) -> list[SegmentFeatures]:
    """Segments for the true levels ``names`` (head to feet), the ends cut by the view;
    facet joints coronal above the thoracic levels down to ``last_thoracic``, sagittal
    below (None: not measured)."""
    out = []
    thoracic_done = False
    for i, nm in enumerate(names):
        edge = i in (0, len(names) - 1)
        rib = 1.0 if nm in ribbed else 0.0
        f = SegmentFeatures(rib, (rib, rib), 1.0 if nm == "sacrum" else 0.0, None if edge else PITCH_MM[nm],
                            45.0 if nm == "sacrum" else PITCH_MM[nm], (0, 1), edge)
        if last_thoracic is not None and i > 0 and nm != "sacrum":
            f.facet_sagittal = 0.98 if thoracic_done else 0.02
        thoracic_done |= nm == last_thoracic
        out.append(f)
    return out


MISSING_RIB12 = ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3"]  # no sacrum, no cranial anchor


def test_coronal_joints_above_a_ribless_vertebra_make_it_T12():
    ribbed = {"T8", "T9", "T10", "T11"}
    res = label_segments(_feats(MISSING_RIB12, ribbed, "T12"), True, 0.0)
    assert [L.name_of(v) for v in res.values] == MISSING_RIB12
    assert min(res.confidence) >= 0.5
    t12 = res.reasons[MISSING_RIB12.index("T12")]
    assert any("missing 12th rib assumed; its facet joints with T11 are thoracic (coronal)" in r for r in t12), t12
    assert any("between T12 and L1" in n for n in res.notes), res.notes


def test_without_the_joints_a_ribless_vertebra_is_a_guessed_L1():
    # the same image with no facet measurement (a coarse grid): the commonest anatomy
    # (normal ribs, every level one lower) is assumed and every level flagged as a guess
    ribbed = {"T8", "T9", "T10", "T11"}
    res = label_segments(_feats(MISSING_RIB12, ribbed, None), True, 0.0)
    assert [L.name_of(v) for v in res.values] == ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    assert max(res.confidence) < 0.5
    assert all(any("a missing 12th rib would make it" in r for r in rs) for rs in res.reasons)


def test_sagittal_joints_above_a_ribless_vertebra_make_it_L1_of_six_lumbar():
    # six rib-less vertebrae above the sacrum: L6 or a missing 12th rib (T12 rib-less);
    # a lumbar-type joint above the first of them makes it L1 (measured: the missing rib's
    # share 0.27 -> 0.12)
    names = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "sacrum"]
    with_joints = label_segments(_feats(names, {"T11", "T12"}, "T12"), False, 0.0)
    without = label_segments(_feats(names, {"T11", "T12"}, None), False, 0.0)
    for res in (with_joints, without):
        assert [L.name_of(v) for v in res.values] == names
    first_lumbar = names.index("L1")
    assert with_joints.confidence[first_lumbar] >= without.confidence[first_lumbar] + 0.1
    assert any("the thoracolumbar transition" in r for r in with_joints.reasons[first_lumbar])


# ---------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------
def test_engine_tells_a_missing_12th_rib_from_L1_without_a_cranial_anchor():
    ph = make_phantom(_spec("missing-rib12"))  # T8..L3 at 1 mm, T12 without ribs
    eng = ClassicalEngine()
    res = eng.segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0, (m.missing_labels, res.notes)
    t12 = L.value_of("T12")
    assert res.confidence[t12] >= 0.5
    assert any("its facet joints with T11 are thoracic (coronal)" in r for r in res.reasons[t12]), res.reasons[t12]
