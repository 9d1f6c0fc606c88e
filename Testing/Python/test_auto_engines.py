"""Engine interface, registry, TotalSegmentator mapping, weight-free engine (real data,
bad input, orientation) and the segment API/CLI."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import DATA, oblique_affine  # noqa: F401
from SpineLabelLib.auto.base import Engine, EngineResult, EngineUnavailableError, engine_names, get_engine, register_engine
from SpineLabelLib.auto.totalseg_engine import TotalSegmentatorEngine, result_from_totalseg
from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image, load_image, reorient
from SpineLabelLib.labels import name_of, totalseg_to_verse, value_of
from SpineLabelLib.verse.body import body_centroids
from SpineLabelLib.verse.metrics import evaluate_case

TS = DATA / "totalseg_example"


@pytest.fixture(scope="module")
def ts_case():
    ct = load_image(TS / "ct.nii.gz")
    ts = load_image(TS / "seg_totalseg_labels.nii.gz")
    return ct, ts


@pytest.fixture(scope="module")
def classical_ts_run(ts_case):
    """(engine, result): the weight-free engine after segmenting totalseg_example (its
    ``last_debug`` holds the features it labelled from)."""
    eng = get_engine("classical")
    return eng, eng.segment(ts_case[0])


@pytest.fixture(scope="module")
def classical_ts(classical_ts_run):
    return classical_ts_run[1]


def test_registry_names_aliases_and_unknown():
    assert {"classical", "monai", "totalsegmentator"} <= set(engine_names())
    assert get_engine("weight-free").name == "classical"
    with pytest.raises(SpineLabelInputError, match="unknown engine"):
        get_engine("nope")
    with pytest.raises(SpineLabelInputError):
        get_engine("classical", bogus=1)


def test_register_engine_one_line():
    class Const(Engine):
        name = "const-test"

        def segment(self, ct, progress=None):
            return EngineResult(mask=ct.with_array(np.zeros(ct.shape, np.uint8)), notes=["nothing"])

    register_engine("const-test", Const, overwrite=True)
    ct = Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    assert get_engine("const-test").segment(ct).empty
    with pytest.raises(ValueError):
        register_engine("const-test", Const)


def test_totalseg_mapping_on_real_output(ts_case):
    ct, ts = ts_case
    res = result_from_totalseg(ts, ct)
    assert res.mask.same_grid(ct)
    assert set(res.labels) == {18, 19, 20, 21, 22, 23, 24, 26}
    s1 = ts.array == 26
    assert s1.any() and np.all(res.mask.array[s1] == 26)  # S1 joins the sacrum
    organs = (ts.array > 0) & (ts.array < 25)
    assert not res.mask.array[organs].any()
    assert any("S1" in n for n in res.notes)
    assert all(0 <= c <= 1 for c in res.confidence.values())
    assert res.confidence[18] < res.confidence[22]  # T11 is cut by the field of view
    ref = body_centroids(ct.with_array(totalseg_to_verse(ts.array)))
    for v, c in res.centroids_ijk.items():
        assert np.linalg.norm((c - ref[v]) * ct.spacing) < 1.0


def test_totalseg_mapping_dicom_output_in_other_orientation():
    ct = load_image(TS / "dicom")
    ts = load_image(TS / "dicom_seg_totalseg_labels.nii.gz")
    res = result_from_totalseg(ts, ct)
    assert res.mask.same_grid(ct)
    assert {18, 19} & set(res.labels)


def test_totalseg_missing_package_and_weights_messages(ts_case, monkeypatch, tmp_path):
    import SpineLabelLib.auto.totalseg_engine as tse

    eng = TotalSegmentatorEngine()
    real = importlib.util.find_spec
    monkeypatch.setattr(tse.importlib.util, "find_spec", lambda n, *a: None if n == "totalsegmentator" else real(n, *a))
    with pytest.raises(EngineUnavailableError, match="pip install TotalSegmentator"):
        eng.segment(ts_case[0])
    monkeypatch.setattr(tse.importlib.util, "find_spec", lambda n, *a: object())
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    with pytest.raises(EngineUnavailableError, match="no TotalSegmentator weights"):
        eng.check_available()


def test_classical_real_totalseg_example(ts_case, classical_ts):
    ct, ts = ts_case
    gt = ct.with_array(totalseg_to_verse(ts.array))
    res = classical_ts
    assert res.mask.same_grid(ct)
    m = evaluate_case(gt, res.mask, body_centroids(gt), res.centroids_ijk)
    # regression floors just under the measured 1.0 / 0.813 (the benchmark reports the
    # exact figures against the targets)
    assert m.id_rate == 1.0
    assert m.dice_mean >= 0.79
    # T11 shows only its laminae and spinous process in the top 9 mm (its body is out of
    # view): its own label, not flooded into T12, with a low confidence that says why
    t11 = next(r for r in m.per_vertebra if r.name == "T11")
    assert t11.identified and t11.dice >= 0.6
    assert res.confidence[18] < 0.5 and any("posterior elements only" in r for r in res.reasons[18])
    assert all(0 <= c <= 1 for c in res.confidence.values())
    assert all(res.reasons[v] for v in res.labels)
    assert any("sacrum" in r for r in res.reasons[20])


def test_classical_real_transverse_processes_follow_the_lumbar_pattern(classical_ts_run):
    # measured 22, 26, 39, 31 mm from the canal on L1..L4 (3 mm slices): L3's the longest,
    # as in about two thirds of spines; and the labelling's term for it prefers the true
    # labels to the same segments shifted one level either way
    from SpineLabelLib.auto.classical.labelling import Hypothesis, _transverse_score

    dbg = classical_ts_run[0].last_debug
    names = [name_of(v) for v in dbg["values"]]
    reach = {n: f.tp_reach_mm for n, f in zip(names, dbg["features"])}
    assert reach["L1"] < reach["L2"] < reach["L3"] > reach["L4"], reach
    seq = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "sacrum", "x"]
    k = seq.index(names[0])
    truth = _transverse_score(Hypothesis(names, False, False, False), dbg["features"])
    for shift in (-1, 1):
        other = Hypothesis(seq[k + shift:k + shift + len(names)], False, False, False)
        assert _transverse_score(other, dbg["features"]) < truth - 1.0, (shift, other.names)


def test_classical_real_lumbar_view_without_anchor_placed_by_its_transverse_processes(ts_case):
    # totalseg_example cut to L1's lower half .. L4 (3 mm slices): no sacrum, no rib-bearing
    # vertebra. Sizes alone labelled it one level low (L2..L5); the processes (26, 39, 32 mm
    # from the canal on L2..L4) place it; still a guess
    ct, ts = ts_case
    box = (slice(None), slice(None), slice(62, 98))
    crop, gt = ct.crop(box), ct.with_array(totalseg_to_verse(ts.array)).crop(box)
    res = get_engine("classical").segment(crop)
    for v in res.labels:
        under = gt.array[(res.mask.array == v) & (gt.array > 0)]
        assert np.bincount(under).argmax() == v, name_of(v)
    assert [name_of(v) for v in sorted(res.labels)] == ["L1", "L2", "L3", "L4"]
    assert max(res.confidence.values()) < 0.5
    assert any("transverse-process lengths" in n for n in res.notes), res.notes


def test_classical_real_chest_ct_with_thin_discs():
    """LIDC-IDRI-0001 (0.7x0.7x2.5 mm, C5-L3): discs show as bright smeared endplate bands,
    not dips; body centres are found from the endplate-edge profile and labels from the
    ribs attached to each vertebra. Measured id.rate 1.000, Dice 0.756 (was 0.0 / 0.0; the
    contrast-filled aorta against T6 is no longer flooded into the vertebra; 0.596 before
    each vertebra's pedicles and laminae were seeded in its own frame; 0.695 before the
    borders between bodies were placed at the discs on the input grid; 0.944 / 0.719 before
    C5's sliver in the top slice got its own label; 0.753 before the gaps left inside the
    bodies were filled)."""
    ct = load_image(DATA / "lidc0001_chest" / "ct.nii.gz")
    gt = ct.with_array(totalseg_to_verse(load_image(DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz").array))
    eng = get_engine("classical")
    res = eng.segment(ct)
    assert res.mask.same_grid(ct)
    m = evaluate_case(gt, res.mask, body_centroids(gt), res.centroids_ijk)
    assert m.id_rate >= 0.9
    assert m.dice_mean >= 0.74
    # C5's anteroinferior lip above C6's disc in the top slice (99 reference voxels): its
    # own label, at half C6's confidence, with the reason
    c5 = value_of("C5")
    assert c5 in res.labels and res.confidence[c5] <= 0.5 * res.confidence[value_of("C6")] + 1e-9
    assert any("sliver" in r for r in res.reasons[c5])
    assert (res.mask.array == c5).sum() < 1000
    # facet joints on real CT: coronal from T5 to T12, sagittal below (measured 0.01-0.29
    # and 0.67-0.83); above T5 the disc planes tilt through the 2.5 mm slices: not measured
    joints = {name_of(v): f.facet_sagittal for v, f in zip(eng.last_debug["values"], eng.last_debug["features"])}
    assert all(joints[n] is not None and joints[n] < 0.5 for n in ("T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12"))
    assert all(joints[n] is not None and joints[n] > 0.5 for n in ("L1", "L2", "L3"))
    # transverse processes (measured 33, 36, 41 mm from the canal): L1 < L2 < L3
    reach = {name_of(v): f.tp_reach_mm for v, f in zip(eng.last_debug["values"], eng.last_debug["features"])}
    assert reach["L1"] < reach["L2"] < reach["L3"], reach
    # all twelve rib pairs are found (T1's short first rib and T12's thin 12th rib were
    # missed: ribs fused with each other and with the contrast-filled heart and aorta, a
    # joint gap at the 12th), so both ends of the count are anchored and the right labels
    # are no longer a guess (confidence 0.07 -> 0.98 on every level; C5's sliver, half)
    assert "12 rib-bearing vertebrae in view (T1..T12)" in res.notes
    assert all(res.confidence[v] >= 0.5 for v in res.labels if v != c5)


def test_classical_body_centres_on_thick_slice_chest_phantom():
    """Every vertebra of the thick-slice chest phantom (T1-L2 in a 0.7x0.7x2.5 mm LAS grid)
    identified: the endplate-edge chain neither splits nor merges a vertebra."""
    from SpineLabelLib.synthetic import make_phantom, phantom_suite

    spec = next(s for s in phantom_suite() if s.name == "chest-0.7x2.5-LAS")
    ph = make_phantom(spec)
    res = get_engine("classical").segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0
    assert m.dice_mean >= 0.6


def test_classical_whole_spine_phantom_anchored_by_skull_and_sacrum():
    """Whole-spine phantom (C1-sacrum): the top piece of the curve is the skull base
    (dropped, and it anchors C1 below it) and the caudal sacrum is not cut off as an
    extra "vertebra", so 24 vertebrae + sacrum are counted right. Measured id.rate 1.0,
    Dice 0.73 (was 0.20 / 0.20: an occiput "C1" and a sacral sliver shifted every label)."""
    from SpineLabelLib.synthetic import make_phantom, phantom_suite

    spec = next(s for s in phantom_suite() if s.name == "whole-spine-LPS-1.5mm")
    ph = make_phantom(spec)
    res = get_engine("classical").segment(ph.ct)
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate >= 0.95
    assert m.dice_mean >= 0.68
    assert any("skull base" in n for n in res.notes)


def test_classical_cut_osteoporotic_sacrum_centroid_is_its_S1_body():
    """The view ends 20 mm into S1 and the marrow is as dark as muscle: the flood before the
    sacrum's extension held S1's endplate rim and arch, whose centre lay 20.5 mm from the
    S1 body's (not identified); the S1 body cut from the final sacrum (extended, on the
    input grid) lies 11.9 mm from it."""
    from SpineLabelLib.synthetic import make_phantom, phantom_suite

    ph = make_phantom(next(s for s in phantom_suite() if s.name == "osteoporosis"))  # T11..L5, 0.8 mm
    res = get_engine("classical").segment(ph.ct)
    err = np.linalg.norm((res.centroids_ijk[26] - ph.centroids_ijk[26]) * ph.ct.spacing)
    assert err < 15.0, err
    m = evaluate_case(ph.mask, res.mask, ph.centroids_ijk, res.centroids_ijk)
    assert m.id_rate == 1.0, m.missing_labels


def test_classical_bad_inputs():
    eng = get_engine("classical")
    rng = np.random.default_rng(0)
    mr = Image(rng.uniform(0, 120, (40, 40, 40)).astype(np.float32), np.diag([2, 2, 2, 1.0]))
    r = eng.segment(mr)
    assert r.empty and "Hounsfield" in r.notes[0]
    one = Image(rng.normal(0, 300, (64, 64, 1)).astype(np.int16), np.eye(4))
    r = eng.segment(one)
    assert r.empty and "thick" in r.notes[0]
    # water cylinder in air: CT-like, no spine
    x, y = np.mgrid[:80, :80]
    slab = np.where((x - 40) ** 2 + (y - 40) ** 2 < 30 ** 2, 20, -1000).astype(np.int16)
    vol = np.repeat(slab[:, :, None], 60, axis=2)
    vol[10:12, 10:12, 10:12] = 1200
    r = eng.segment(Image(vol, np.diag([2, 2, 2, 1.0])))
    assert r.empty and "no spine" in " ".join(r.notes)
    assert r.mask.shape == vol.shape and not r.mask.array.any()


def test_classical_huge_volume_is_bounded():
    huge = Image(np.broadcast_to(np.int16(-1000), (1024, 1024, 2000)), np.diag([0.5, 0.5, 0.5, 1.0]))
    r = get_engine("classical").segment(huge)
    assert r.empty and r.mask.shape == (1024, 1024, 2000)


def test_classical_answers_on_input_grid_any_orientation(ts_case, classical_ts):
    ct, _ = ts_case
    flipped = reorient(ct, ("P", "I", "L"))
    r2 = get_engine("classical").segment(flipped)
    assert r2.mask.same_grid(flipped)
    back = reorient(r2.mask, ("R", "A", "S"))
    agree = np.mean(back.array[classical_ts.mask.array > 0] == classical_ts.mask.array[classical_ts.mask.array > 0])
    assert agree > 0.8  # measured 0.84: plateau ties in the watershed differ by float rounding (see report)
    for v in set(r2.centroids_ijk) & set(classical_ts.centroids_ijk):
        w1 = ct.index_to_world(classical_ts.centroids_ijk[v])
        w2 = flipped.index_to_world(r2.centroids_ijk[v])
        assert np.linalg.norm(w1 - w2) < 2.0


def test_segment_cli_writes_case_and_skips_on_rerun(tmp_path, capsys):
    from SpineLabelLib.cli import main
    from SpineLabelLib.image import save_nifti
    from SpineLabelLib.synthetic import make_phantom

    ph = make_phantom(first="L1", last="L3", spacing=(2.0, 2.0, 2.0), seed=3)
    src = tmp_path / "case1_ct.nii.gz"
    save_nifti(ph.ct, src)
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out)]) == 0
    mask = out / "derivatives" / "sub-case1" / "sub-case1_seg-vert_msk.nii.gz"
    assert mask.exists() and (out / "derivatives" / "sub-case1" / "sub-case1_seg-vert_auto.json").exists()
    assert load_image(mask).same_grid(ph.ct)
    capsys.readouterr()
    assert main(["segment", str(src), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "--out", str(out)]) == 2
    assert main(["segment", str(src), "--out", str(out), "--engine", "monai"]) == 2
